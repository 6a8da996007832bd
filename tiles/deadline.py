"""Per-request deadlines for CPU-heavy work (tiles, GetMap, point values, statistics, reports).

The server's deadline middleware (backend/middleware.py) sets the deadline of a request in a
context variable, which follows the request into the worker thread that renders it; the renderer
calls :func:`check` between its steps, so work whose client has already been answered with a 503
stops at the next step instead of running on.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

_deadline: ContextVar[float | None] = ContextVar("geoflora_deadline", default=None)


class DeadlineExceeded(Exception):
    """The request ran past its deadline; answered with 503 and ``Retry-After``."""

    def __init__(self, seconds: float | None = None) -> None:
        super().__init__(f"the request took longer than its {seconds:g} s limit" if seconds else
                         "the request ran past its time limit")
        self.seconds = seconds


def start(seconds: float) -> Token:
    """Set the deadline of the current context ``seconds`` from now (returns the reset token)."""
    return _deadline.set(time.monotonic() + seconds)


def reset(token: Token) -> None:
    _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (None: no deadline)."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def check() -> None:
    """Raise DeadlineExceeded when the current context's deadline has passed."""
    at = _deadline.get()
    if at is not None and time.monotonic() > at:
        raise DeadlineExceeded()
