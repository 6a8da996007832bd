"""GeoFlora's domain errors and the one table that maps them to HTTP status codes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class GeoFloraError(Exception):
    """Base of every error a client may cause or see."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(GeoFloraError):
    """A layer, run, species or habitat that does not exist."""


class InvalidInput(GeoFloraError):
    """Input that is well-formed JSON/HTTP but says something impossible."""


class BadRequest(GeoFloraError):
    """A body that cannot be read at all (not JSON)."""


class NotReady(GeoFloraError):
    """A report still being computed, or whose computation failed."""


class NoLiveRun(GeoFloraError):
    """Nothing has been computed yet: no run is live."""


class Forbidden(GeoFloraError):
    """An admin action without a valid token."""


class TooLarge(GeoFloraError):
    """A request beyond the configured limits (image size, area, body size)."""


STATUS_CODES: dict[type[GeoFloraError], int] = {
    NotFound: 404,
    InvalidInput: 422,
    BadRequest: 400,
    NotReady: 409,
    NoLiveRun: 503,
    Forbidden: 403,
    TooLarge: 413,
}


def status_for(exc: GeoFloraError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 400


def add_exception_handlers(app: FastAPI) -> None:
    async def handler(_request: Request, exc: GeoFloraError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=status_for(exc))

    app.add_exception_handler(GeoFloraError, handler)
