"""The one table that maps GeoFlora's errors (backend/core/errors.py) to HTTP status codes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backend.core.errors import (
    AssemblageError,
    BadRequest,
    CheckpointError,
    DataFormatError,
    Forbidden,
    GeoFloraError,
    GridError,
    InvalidInput,
    NoLiveRun,
    NotFound,
    NotReady,
    RegionError,
    RunError,
    TooLarge,
)

STATUS_CODES: dict[type[GeoFloraError], int] = {
    NotFound: 404,
    InvalidInput: 422,
    BadRequest: 400,
    NotReady: 409,
    NoLiveRun: 503,
    Forbidden: 403,
    TooLarge: 413,
    GridError: 422,
    RunError: 409,
    # the server's own files or models are wrong: not the client's doing
    RegionError: 500,
    DataFormatError: 500,
    AssemblageError: 500,
    CheckpointError: 500,
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
