"""ASGI middleware of the server process: body size limit, OWS dispatch, per-request deadlines."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiles import deadline
from tiles.mapproxy_app import OWSError, exception_document, ows_exception_document

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Reject request bodies above ``limit`` bytes with 413 before reading them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                resp = JSONResponse(
                    {"detail": f"request body too large: at most {self.limit} bytes are accepted"}, 413
                )
                await resp(scope, receive, send)
                return
            received = 0

            async def limited_receive():
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
                return message

            try:
                await self.app(scope, limited_receive, send)
            except _BodyTooLarge:
                resp = JSONResponse(
                    {"detail": f"request body too large: at most {self.limit} bytes are accepted"}, 413
                )
                await resp(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


OWS_PREFIXES = ("/wms", "/wmts", "/service")


class OWSDispatch:
    """Send ``/wms``, ``/wmts`` and ``/service`` (with or without a trailing path) to MapProxy."""

    def __init__(self, app: ASGIApp, ows_app: ASGIApp) -> None:
        self.app, self.ows_app = app, ows_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix in OWS_PREFIXES:
                if path == prefix or path.startswith(prefix + "/"):
                    await self.ows_app(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class RenderDeadline:
    """A time limit and a concurrency limit on CPU-heavy requests.

    Tiles, WMS / WMTS, TiTiler's point and statistics routes (``render_s``) and report requests
    (``report_s``) run as a task the middleware waits for. A request not answered in time gets a
    503 with ``Retry-After``; the work goes on in its thread only until the renderer's next
    :func:`tiles.deadline.check` (a report goes on to completion and is stored, so the retry is
    answered from the store). At most ``slots`` renders run at once per process: a render that
    cannot get a slot before its deadline gets the same 503, so abandoned work cannot pile up
    and the rest of the server (health, API) keeps its threads.
    """

    RENDER_PREFIXES = ("/tiles", "/wms", "/wmts", "/service")
    REPORT_PREFIX = "/api/reports"

    def __init__(self, app: ASGIApp, render_s: float, report_s: float, slots: int, retry_after_s: int) -> None:
        self.app, self.render_s, self.report_s = app, render_s, report_s
        self.retry_after = str(retry_after_s)
        self.slots = slots
        self._slots = threading.BoundedSemaphore(slots)  # not an asyncio one: test clients run several loops

    def limit_for(self, scope: Scope) -> tuple[float | None, bool]:
        """(seconds, takes a render slot) for a request."""
        path = scope["path"]
        if any(path == p or path.startswith(p + "/") for p in self.RENDER_PREFIXES):
            return self.render_s, True
        if path == self.REPORT_PREFIX or path.startswith(self.REPORT_PREFIX + "/"):
            return self.report_s, False
        return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seconds, slot = self.limit_for(scope)
        if seconds is None:
            await self.app(scope, receive, send)
            return
        t0 = time.monotonic()
        if slot and not await self._acquire(t0 + seconds):
            await self._unavailable(scope, send, f"the server is busy: {self.slots} renders are "
                                                 f"running; retry in {self.retry_after} s")
            return
        started = abandoned = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if abandoned:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        token = deadline.start(seconds)
        try:
            task = asyncio.ensure_future(self.app(scope, receive, guarded_send))  # copies the deadline
        finally:
            deadline.reset(token)
        task.add_done_callback(self._finished(slot, scope))
        done, _ = await asyncio.wait({task}, timeout=max(0.0, t0 + seconds - time.monotonic()))
        if task in done:
            task.result()
            return
        if started:  # the answer is on its way (a long body): let it finish
            await task
            return
        abandoned = True
        log.warning("%s %s: no answer after %.3g s, 503 sent", scope["method"], scope["path"], seconds)
        await self._unavailable(scope, send, f"the request took longer than its {seconds:g} s limit; retry in "
                                             f"{self.retry_after} s")

    async def _acquire(self, until: float) -> bool:
        while not self._slots.acquire(blocking=False):
            if time.monotonic() >= until:
                return False
            await asyncio.sleep(0.005)
        return True

    def _finished(self, slot: bool, scope: Scope):
        def done(task: asyncio.Task) -> None:
            if slot:
                self._slots.release()
            if not task.cancelled() and task.exception() is not None and not isinstance(
                    task.exception(), deadline.DeadlineExceeded):
                log.debug("%s %s failed after its deadline: %r", scope["method"], scope["path"], task.exception())
        return done

    async def _unavailable(self, scope: Scope, send: Send, message: str) -> None:
        headers = [(b"retry-after", self.retry_after.encode())]
        path = scope["path"]
        if path.startswith("/wmts"):  # OGC clients read an exception report
            body, ctype = ows_exception_document(OWSError(message, "", 503))
        elif path.startswith(("/wms", "/service")):
            body, ctype = exception_document(OWSError(message, "", 503), "1.3.0")
        else:
            body, ctype = json.dumps({"detail": message}).encode(), "application/json"
        await send({"type": "http.response.start", "status": 503,
                    "headers": headers + [(b"content-type", ctype.encode()),
                                          (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
