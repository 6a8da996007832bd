"""The one loop over the records of a delimited text file that every table reader shares (the
readers of :mod:`inference.data.readers`, the EUNIS list): blank lines skipped, each record with
its first physical line, as many fields as the header, and a :class:`DataFormatError` naming the
line for undecodable text, broken CSV syntax or a wrong field count. It imports no torch, so the
EUNIS table can use it."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator

from backend.core.errors import DataFormatError
from backend.core.errors import Found as _D

DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, tolerating a byte-order mark (Excel exports)
SEPARATOR_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}


def records(path: str, *, header: Callable[[list[str], int, str], None], empty: str, delimiter: str = ",",
            encoding: str = DEFAULT_ENCODING, what: str = "CSV") -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of every record after the header of the file at ``path``.

    ``header(names, line, first_raw_cell)`` checks the stripped header names (raising
    :class:`DataFormatError`); ``empty`` is what a file without a header line was expected to
    hold. Fields are returned as read (not stripped)."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    sep_name = SEPARATOR_NAMES.get(delimiter, repr(delimiter))
    ncol = header_line = prev = 0
    with open(path, encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            for row in reader:
                start, prev = prev + 1, reader.line_num
                if not row or (len(row) == 1 and row[0].strip() == ""):
                    continue
                if not ncol:
                    header([h.strip() for h in row], start, row[0])
                    ncol, header_line = len(row), start
                    continue
                if len(row) != ncol:
                    raise DataFormatError(path, f"{ncol} {sep_name}-separated fields as in the header (line "
                                                f"{header_line})", line=start, got=_D(f"{len(row)} fields"))
                yield start, row
        except UnicodeDecodeError as exc:
            # the decoder works on blocks: find the offending line in the raw bytes
            line, bad = prev + 1, exc.object[exc.start:exc.end]
            with open(path, "rb") as raw_fh:
                raw = raw_fh.read()
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc2:
                line, bad = raw.count(b"\n", 0, exc2.start) + 1, raw[exc2.start:exc2.end]
            raise DataFormatError(path, f"text in encoding {encoding!r} (pass encoding=... for another)", line=line,
                                  got=_D(f"undecodable bytes {bytes(bad)!r} ({exc.reason})")) from exc
        except csv.Error as exc:
            raise DataFormatError(path, f"well-formed {what}", line=prev + 1, got=_D(f"{exc}")) from exc
    if not ncol:
        raise DataFormatError(path, empty, line=1, got=_D("empty file"))
