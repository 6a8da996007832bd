"""Atomic file writing: the one way GeoFlora writes a file that anyone may read while it is written.

Every writer goes through :func:`atomic_path`: the content goes to a hidden temporary file beside
the target (``.<name>.<random>.tmp``, so a crash leaves only such files, which writers may sweep),
which is renamed onto the target when, and only when, the whole content is there. A reader sees
the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_GLOB = ".*.tmp"  # what a killed writer can leave behind


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on any
    error it is removed. For writers that want a path of their own (GDAL, torch.save, sqlite)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)  # mkstemp's 0600 would hide the file from a server running as another user
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing (``mode`` "w" or "wb"); renamed onto ``path`` on close."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, **dumps: Any) -> Path:
    """``obj`` as JSON (``dumps`` keywords as for :func:`json.dumps`, e.g. ``indent=2``)."""
    return write_text(path, json.dumps(obj, **dumps))


def sweep_temporaries(folder: Path, pattern: str = TEMP_GLOB) -> int:
    """Remove what killed writers left in ``folder`` (never a finished file); returns the count."""
    count = 0
    if folder.is_dir():
        for tmp in folder.glob(pattern):
            tmp.unlink(missing_ok=True)
            count += 1
    return count


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]],
              delimiter: str = ",") -> Path:
    """A CSV (or, with ``delimiter="\t"``, TSV) file: the header, then the rows, atomically."""
    with atomic_open(path, newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return Path(path)
