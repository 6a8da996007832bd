"""GeoFlora's error hierarchy, free of any web framework: domain code raises these, the web layer
(backend/http_errors.py) maps them to HTTP statuses and the command line to its own messages."""

from __future__ import annotations

import os
from typing import Any


class GeoFloraError(Exception):
    """Base of every error GeoFlora raises on purpose: its message is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# What a client may cause or see
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


# What the data, the models and the runs may cause
class RunError(GeoFloraError, RuntimeError):
    """A run that cannot proceed (unknown, incomplete, or its region or models are missing)."""


class RegionError(GeoFloraError, RuntimeError):
    """A region folder that cannot be read (missing, incomplete, or of an unknown version)."""


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a value quoted in an error message)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Found(str):
    """A description of what was found (shown as is), as opposed to a raw value (shown quoted)."""


class DataFormatError(GeoFloraError, ValueError):
    """An input file (raster, species list, plot table) that does not follow its documented format.

    Attributes: ``file`` (the path as given), ``line`` (1-based physical line, header = 1, or
    None), ``field`` (column / key / attribute name, or None), ``expected`` (what the reader
    expected, in words) and ``got`` (what it found, or None).
    """

    def __init__(self, file: str | os.PathLike, expected: str, *, line: int | None = None, field: str | None = None,
                 got: Any = None) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.expected = expected
        self.got = got
        where = self.file
        if line is not None:
            where += f" line {line}"
        if field is not None:
            where += f", field {field!r}"
        msg = f"{where}: expected {expected}"
        if got is not None:
            msg += f", got {got if isinstance(got, Found) else short(got)}"
        super().__init__(msg)

    def __reduce__(self):  # picklable (Celery, multiprocessing) despite keyword-only arguments
        return (_rebuild_data_format_error, (self.file, self.expected, self.line, self.field, self.got))


def _rebuild_data_format_error(file, expected, line, field, got) -> DataFormatError:
    return DataFormatError(file, expected, line=line, field=field, got=got)


class GridError(GeoFloraError, ValueError):
    """A cell or meta-tile outside the 50 m grid, or an id that names none."""


class AssemblageError(GeoFloraError, ValueError):
    """An assemblage store that is missing, truncated or of another layout."""


class CheckpointError(GeoFloraError, ValueError):
    """A model file that is missing, of another kind, or of a version this code cannot read."""



class CheckpointMissing(CheckpointError, FileNotFoundError):
    """No model file where one was expected."""
