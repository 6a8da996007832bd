"""Readers (and a few writers) for the real GeoPlant / GeoPl@ntNet data formats.

Users bring their own data in these formats; every reader validates what it reads and raises
:class:`DataFormatError` naming the file, the line (1-based, header = line 1) or field, and what
was expected, e.g. ``pa.csv line 14, field 'lat': expected a number in [-90, 90], got 'abc'``.

Formats (checked against the real samples in ``shared/reference``; see PROVENANCE.md there):

* GeoPlant presence-absence surveys, long CSV, one row per (survey, species):
  ``lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId``
  -> :func:`read_geoplant_pa` / :func:`write_geoplant_pa`.
* GeoPlant presence-only occurrences, one row per record:
  ``publisher,year,month,day,lat,lon,geoUncertaintyInM,taxonRank,date,dayOfYear,speciesId,surveyId``
  -> :func:`read_geoplant_po` (streamed: the real file has millions of rows).
* Climate cube ``.pt`` float tensor [4, 19, 12] -> :func:`read_climate_cube`.
* Landsat cube ``.pt`` float tensor [6, 4, 21] -> :func:`read_landsat_cube`.
* Sentinel-2 patches: GLC24 RGB + NIR JPEGs (uint8 128 x 128) -> :func:`read_s2_glc24`;
  GLC25 4-band GeoTIFF -> :func:`read_s2_glc25`, and :func:`glc25_to_glc24_uint8` to bring
  GLC25 reflectances to the GLC24 uint8 convention.
* EUNIS 2021 code list ``Code,Name`` -> :func:`read_eunis_codes`.
* Habitats Directive / invasive species lists matched to the GBIF backbone ->
  :func:`read_species_list`.
* PlantTraitNet training CSV -> :func:`read_planttraitnet_csv` / :func:`write_planttraitnet_csv`.
* Pl@ntBERT ``Observations`` TSV -> :func:`read_plantbert_observations` /
  :func:`write_plantbert_observations`.

Only numpy, torch, rasterio, Pillow and the standard library are used.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from PIL import Image, UnidentifiedImageError
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from backend.core.atomic import write_csv
from backend.core.errors import DataFormatError
from backend.core.errors import Found as _D
from inference.data import eunis as _eunis
from inference.data.eunis import code_ancestors, code_level, code_parent
from inference.data.tables import DEFAULT_ENCODING, SEPARATOR_NAMES, records

PathLike = str | os.PathLike

__all__ = [
    "DataFormatError",
    # PA surveys
    "PA_COLUMNS",
    "PASurvey",
    "PASurveys",
    "read_geoplant_pa",
    "write_geoplant_pa",
    # PO occurrences
    "PO_COLUMNS",
    "PORecords",
    "read_geoplant_po",
    # cubes
    "CLIMATE_CUBE_SHAPE",
    "CLIMATE_VARIABLES",
    "LANDSAT_CUBE_SHAPE",
    "LANDSAT_BANDS",
    "read_climate_cube",
    "read_landsat_cube",
    # Sentinel-2
    "S2_BANDS",
    "glc24_patch_path",
    "read_s2_glc24",
    "read_s2_glc25",
    "glc25_to_glc24_uint8",
    "GLC24_PATCH_SIZE",
    "S2_REFLECTANCE_CAP",
    "S2_GAMMA",
    # EUNIS
    "EunisHabitat",
    "eunis_level",
    "eunis_parent",
    "eunis_ancestors",
    "is_plantbert_habitat_class",
    "read_eunis_codes",
    # species lists
    "ListedSpecies",
    "read_species_list",
    # PlantTraitNet
    "TRAITS",
    "TRAIT_STATS",
    "TraitTable",
    "read_planttraitnet_csv",
    "write_planttraitnet_csv",
    # Pl@ntBERT
    "OBSERVATIONS_COLUMN",
    "read_plantbert_observations",
    "write_plantbert_observations",
]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------



# --------------------------------------------------------------------------------------------
# Delimited text helpers
# --------------------------------------------------------------------------------------------

_DEFAULT_ENCODING = DEFAULT_ENCODING


@dataclass
class _Table:
    """Columns of a delimited file as raw (stripped) strings, with the line of each record."""

    path: str
    header: list[str]
    columns: dict[str, list[str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.lines)


def _read_table(
    path: PathLike,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
    delimiter: str = ",",
    encoding: str = _DEFAULT_ENCODING,
    what: str = "CSV",
    keep_all: bool = False,
) -> _Table:
    """Read a delimited file with a header; keep the required and optional columns.

    Blank lines are skipped. Every record must have as many fields as the header. Values are
    stripped of surrounding whitespace. Column names are matched exactly after stripping.
    """
    p = str(path)
    wanted = list(dict.fromkeys([*required, *optional]))
    sep_name = SEPARATOR_NAMES.get(delimiter, repr(delimiter))
    found: dict[str, Any] = {}

    def check(header: list[str], line: int, first: str) -> None:
        if len(header) == 1 and len(wanted) > 1:
            for other, name in ((";", "semicolon"), ("\t", "tab"), (",", "comma")):
                if other != delimiter and other in header[0]:
                    raise DataFormatError(p, f"a {sep_name}-separated header ({what}); this header looks "
                                             f"{name}-separated", line=line, got=first)
        dups = sorted({h for h in header if header.count(h) > 1 and h})
        if dups:
            raise DataFormatError(p, "unique column names in the header", line=line, field=dups[0],
                                  got=_D(f"column {dups[0]!r} {header.count(dups[0])} times"))
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(p, f"a column {missing[0]!r} in the header (required: "
                                     f"{', '.join(map(repr, required))})", line=line, field=missing[0],
                                  got=_D(f"columns {', '.join(map(repr, header))}"))
        keep = list(dict.fromkeys([*wanted, *(h for h in header if h)])) if keep_all else wanted
        found["header"] = header
        found["index"] = {c: header.index(c) for c in keep if c in header}

    rows, lines = [], []
    for line, row in records(p, header=check, delimiter=delimiter, encoding=encoding, what=what,
                             empty=f"a header line with column(s) {', '.join(map(repr, required))}"):
        rows.append(row)
        lines.append(line)
    columns = {c: [r[i].strip() for r in rows] for c, i in found["index"].items()}
    return _Table(p, found["header"], columns, lines)


def _bad(table: _Table, i: int, column: str, expected: str) -> DataFormatError:
    return DataFormatError(
        table.path, expected, line=table.lines[i], field=column, got=table.columns[column][i]
    )


def _float_column(
    table: _Table,
    column: str,
    *,
    allow_empty: bool = False,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    what: str | None = None,
) -> np.ndarray:
    """Parse a column as float64. Empty (and only empty) cells become NaN when allowed."""
    values = table.columns.get(column)
    n = len(table)
    if values is None:  # optional column absent
        return np.full(n, np.nan)
    rng = ""
    if lo is not None and hi is not None:
        rng = f" in [{_fmt(lo)}, {_fmt(hi)}]"
    elif lo is not None:
        rng = f" > {_fmt(lo)}" if lo_open else f" >= {_fmt(lo)}"
    expected = what or ("a number" + rng + (" or an empty field" if allow_empty else ""))
    empty = np.fromiter((v == "" for v in values), dtype=bool, count=n)
    if empty.any() and not allow_empty:
        raise _bad(table, int(np.argmax(empty)), column, expected)
    try:
        arr = np.asarray(["nan" if e else v for v, e in zip(values, empty)] if empty.any() else values, dtype=np.float64)
    except ValueError:
        arr = np.empty(n)
        for i, v in enumerate(values):
            if empty[i]:
                arr[i] = np.nan
                continue
            try:
                arr[i] = float(v)
            except ValueError:
                raise _bad(table, i, column, expected) from None
    if n == 0:
        return arr
    ok = np.isfinite(arr) | empty
    if lo is not None:
        ok &= (arr > lo if lo_open else arr >= lo) | empty
    if hi is not None:
        ok &= (arr <= hi) | empty
    if not ok.all():
        raise _bad(table, int(np.argmin(ok)), column, expected)
    return arr


def _int_column(
    table: _Table,
    column: str,
    *,
    allow_empty: bool = False,
    lo: int | None = None,
    hi: int | None = None,
    what: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of integers (``"12"`` or an integral float such as ``"12.0"``).

    Returns (values int64, empty mask); empty cells are 0 in values and True in the mask.
    """
    values = table.columns[column]
    n = len(table)
    expected = what or (
        "an integer" + (f" >= {lo}" if lo is not None else "") + (" or an empty field" if allow_empty else "")
    )
    empty = np.fromiter((v == "" for v in values), dtype=bool, count=n)
    if empty.any() and not allow_empty:
        raise _bad(table, int(np.argmax(empty)), column, expected)
    filled = ["0" if e else v for v, e in zip(values, empty)] if empty.any() else values
    try:
        arr = np.asarray(filled, dtype=np.int64)
    except (ValueError, OverflowError):
        arr = None
    if arr is None:
        # Integral floats ("6874.0", as pandas writes an int column holding NaN) are accepted.
        try:
            f = np.asarray(filled, dtype=np.float64)
            if np.all(np.isfinite(f) & (f == np.trunc(f)) & (np.abs(f) < 2**53)):
                arr = f.astype(np.int64)
        except ValueError:
            pass
    if arr is None:
        arr = np.empty(n, dtype=np.int64)
        for i, v in enumerate(filled):
            try:
                arr[i] = int(v)
                continue
            except ValueError:
                pass
            try:
                f = float(v)
            except ValueError:
                raise _bad(table, i, column, expected) from None
            if not (math.isfinite(f) and f.is_integer() and abs(f) < 2**53):
                raise _bad(table, i, column, expected)
            arr[i] = int(f)
    if (lo is not None or hi is not None) and n:
        ok = np.ones(n, dtype=bool)
        if lo is not None:
            ok &= arr >= lo
        if hi is not None:
            ok &= arr <= hi
        ok |= empty
        if not ok.all():
            raise _bad(table, int(np.argmin(ok)), column, expected)
    return arr, empty


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _fmt_float(x: float) -> str:
    """Shortest text that reads back to the same float; NaN -> empty field."""
    x = float(x)
    return "" if math.isnan(x) else repr(x)


def _write_rows(path: PathLike, header: Sequence[str], rows: Iterable[Sequence[str]], delimiter: str = ",") -> None:
    write_csv(path, header, rows, delimiter)


# --------------------------------------------------------------------------------------------
# GeoPlant presence-absence surveys
# --------------------------------------------------------------------------------------------

PA_COLUMNS = (
    "lon",
    "lat",
    "year",
    "geoUncertaintyInM",
    "areaInM2",
    "region",
    "country",
    "speciesId",
    "surveyId",
)
_PA_REQUIRED = ("lon", "lat", "year", "surveyId")
_PA_OPTIONAL = ("geoUncertaintyInM", "areaInM2", "region", "country", "speciesId")


@dataclass(frozen=True)
class PASurvey:
    """One presence-absence survey: where, when, and the species recorded present."""

    survey_id: int
    lon: float
    lat: float
    year: int
    species_ids: tuple[int, ...] = ()
    geo_uncertainty_m: float = math.nan
    area_m2: float = math.nan
    region: str = ""
    country: str = ""


@dataclass(eq=False)
class PASurveys:
    """Surveys of a GeoPlant PA file, as vectorised per-survey arrays plus CSR species lists.

    Survey ``i`` (in order of first appearance in the file) has id ``survey_ids[i]``, position
    ``lon[i], lat[i]`` (WGS84 degrees), ``year[i]``, ``geo_uncertainty_m[i]`` and ``area_m2[i]``
    (NaN where the file leaves them empty), ``region[i]``, ``country[i]`` and the species ids
    ``species_ids[species_indptr[i]:species_indptr[i + 1]]`` in file order, without duplicates.
    A survey with no species (only empty ``speciesId`` cells, or a file without that column,
    like the GLC test split) has an empty slice.
    """

    survey_ids: np.ndarray  # int64 [S]
    lon: np.ndarray  # float64 [S]
    lat: np.ndarray  # float64 [S]
    year: np.ndarray  # int32 [S]
    geo_uncertainty_m: np.ndarray  # float64 [S], NaN = missing
    area_m2: np.ndarray  # float64 [S], NaN = missing
    region: np.ndarray  # str [S]
    country: np.ndarray  # str [S]
    species_indptr: np.ndarray  # int64 [S + 1]
    species_ids: np.ndarray  # int64 [total species records]
    _index: dict[int, int] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.survey_ids.shape[0])

    def index_of(self, survey_id: int) -> int:
        """Row index of a survey id (KeyError if absent)."""
        if self._index is None:
            self._index = {int(s): i for i, s in enumerate(self.survey_ids.tolist())}
        return self._index[int(survey_id)]

    def species_of(self, i: int) -> np.ndarray:
        """Species ids of the survey at row ``i``."""
        return self.species_ids[self.species_indptr[i] : self.species_indptr[i + 1]]

    def survey(self, i: int) -> PASurvey:
        return PASurvey(
            survey_id=int(self.survey_ids[i]),
            lon=float(self.lon[i]),
            lat=float(self.lat[i]),
            year=int(self.year[i]),
            species_ids=tuple(int(s) for s in self.species_of(i)),
            geo_uncertainty_m=float(self.geo_uncertainty_m[i]),
            area_m2=float(self.area_m2[i]),
            region=str(self.region[i]),
            country=str(self.country[i]),
        )

    def __getitem__(self, survey_id: int) -> PASurvey:
        """The survey with this id."""
        return self.survey(self.index_of(survey_id))

    def __iter__(self) -> Iterator[PASurvey]:
        for i in range(len(self)):
            yield self.survey(i)

    @property
    def surveys(self) -> dict[int, PASurvey]:
        """survey id -> :class:`PASurvey` (built on each call; use the arrays for bulk work)."""
        return {s.survey_id: s for s in self}

    @property
    def n_species_records(self) -> np.ndarray:
        return np.diff(self.species_indptr)

    def multi_hot(self, n_species: int | None = None) -> np.ndarray:
        """bool [S, n_species] presence matrix (``n_species`` defaults to max id + 1)."""
        if n_species is None:
            n_species = int(self.species_ids.max()) + 1 if self.species_ids.size else 0
        if self.species_ids.size and int(self.species_ids.max()) >= n_species:
            raise ValueError(f"species id {int(self.species_ids.max())} >= n_species={n_species}")
        out = np.zeros((len(self), n_species), dtype=bool)
        rows = np.repeat(np.arange(len(self)), self.n_species_records)
        out[rows, self.species_ids] = True
        return out

    @classmethod
    def from_surveys(cls, surveys: Iterable[PASurvey]) -> PASurveys:
        """Build the vectorised form from :class:`PASurvey` objects (ids must be unique)."""
        items = list(surveys)
        ids = [int(s.survey_id) for s in items]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"survey id {dup} appears more than once")
        species: list[int] = []
        indptr = [0]
        for s in items:
            species.extend(dict.fromkeys(int(x) for x in s.species_ids))
            indptr.append(len(species))
        return cls(
            survey_ids=np.asarray(ids, dtype=np.int64),
            lon=np.asarray([s.lon for s in items], dtype=np.float64),
            lat=np.asarray([s.lat for s in items], dtype=np.float64),
            year=np.asarray([s.year for s in items], dtype=np.int32),
            geo_uncertainty_m=np.asarray([s.geo_uncertainty_m for s in items], dtype=np.float64),
            area_m2=np.asarray([s.area_m2 for s in items], dtype=np.float64),
            region=np.asarray([s.region for s in items], dtype=str),
            country=np.asarray([s.country for s in items], dtype=str),
            species_indptr=np.asarray(indptr, dtype=np.int64),
            species_ids=np.asarray(species, dtype=np.int64),
        )


def read_geoplant_pa(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> PASurveys:
    """Read a GeoPlant presence-absence CSV (long format, one row per survey x species).

    Columns (any order, extra columns ignored): ``lon``, ``lat``, ``year`` and ``surveyId`` are
    required; ``geoUncertaintyInM``, ``areaInM2``, ``region``, ``country`` and ``speciesId``
    may be absent or empty. ``speciesId``, ``surveyId`` and ``year`` accept integral floats
    (``6874.0``) as pandas writes them. All rows of one survey must agree on lon, lat, year,
    uncertainty, area, region and country. Duplicate (survey, species) rows are merged.
    """
    t = _read_table(path, required=_PA_REQUIRED, optional=_PA_OPTIONAL, encoding=encoding, what="GeoPlant PA CSV")
    n = len(t)
    lon = _float_column(t, "lon", lo=-180, hi=180)
    lat = _float_column(t, "lat", lo=-90, hi=90)
    year, _ = _int_column(t, "year", lo=0, hi=9999, what="a year (integer in [0, 9999])")
    unc = _float_column(t, "geoUncertaintyInM", allow_empty=True, lo=0)
    area = _float_column(t, "areaInM2", allow_empty=True, lo=0)
    sid, _ = _int_column(t, "surveyId", lo=0, what="a survey id (integer >= 0)")
    if "speciesId" in t.columns:
        spid, sp_empty = _int_column(
            t, "speciesId", allow_empty=True, lo=0, what="a species id (integer >= 0) or an empty field"
        )
    else:
        spid, sp_empty = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    region = np.asarray(t.columns.get("region", [""] * n), dtype=str)
    country = np.asarray(t.columns.get("country", [""] * n), dtype=str)

    if n == 0:
        e = np.zeros(0)
        return PASurveys(
            np.zeros(0, np.int64), e, e.copy(), np.zeros(0, np.int32), e.copy(), e.copy(),
            np.zeros(0, dtype=str), np.zeros(0, dtype=str), np.zeros(1, np.int64), np.zeros(0, np.int64),
        )

    uniq, first, inverse = np.unique(sid, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # surveys in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    sidx = rank[inverse]  # row -> survey index
    first_row = first[order]  # survey index -> first row
    fr = first_row[sidx]  # row -> first row of its survey

    for name, arr in (
        ("lon", lon), ("lat", lat), ("year", year), ("geoUncertaintyInM", unc),
        ("areaInM2", area), ("region", region), ("country", country),
    ):
        if name not in t.columns:
            continue
        ref = arr[fr]
        if arr.dtype.kind == "f":
            diff = ~((arr == ref) | (np.isnan(arr) & np.isnan(ref)))
        else:
            diff = arr != ref
        if diff.any():
            i = int(np.argmax(diff))
            raise DataFormatError(
                t.path,
                f"the same {name} on every row of survey {int(sid[i])} (line {t.lines[int(fr[i])]} has "
                f"{t.columns[name][int(fr[i])]!r})",
                line=t.lines[i], field=name, got=t.columns[name][i],
            )

    # species per survey: file order, duplicates merged
    rows = np.flatnonzero(~sp_empty)
    rows = rows[np.argsort(sidx[rows], kind="stable")]
    s_of = sidx[rows].astype(np.int64)
    sp = spid[rows]
    if rows.size:
        key = s_of * (int(sp.max()) + 1) + sp
        _, keep = np.unique(key, return_index=True)
        keep.sort()
        s_of, sp = s_of[keep], sp[keep]
    counts = np.bincount(s_of, minlength=uniq.size)
    indptr = np.zeros(uniq.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])

    return PASurveys(
        survey_ids=sid[first_row].astype(np.int64),
        lon=lon[first_row],
        lat=lat[first_row],
        year=year[first_row].astype(np.int32),
        geo_uncertainty_m=unc[first_row],
        area_m2=area[first_row],
        region=region[first_row],
        country=country[first_row],
        species_indptr=indptr,
        species_ids=sp.astype(np.int64),
    )


def write_geoplant_pa(path: PathLike, surveys: PASurveys | Iterable[PASurvey]) -> None:
    """Write surveys as a GeoPlant PA CSV that :func:`read_geoplant_pa` reads back unchanged.

    ``surveys`` is a :class:`PASurveys` or any iterable of :class:`PASurvey`. One row per
    (survey, species), columns in :data:`PA_COLUMNS` order; a survey without species gets one
    row with an empty ``speciesId``; NaN uncertainty / area are written as empty fields. Floats
    are written with ``repr`` so they read back bit-identical. The file is written to a temporary
    name and renamed into place.
    """
    s = surveys if isinstance(surveys, PASurveys) else PASurveys.from_surveys(surveys)
    for i in range(len(s)):
        if not (-180 <= s.lon[i] <= 180 and -90 <= s.lat[i] <= 90):
            raise ValueError(f"survey {int(s.survey_ids[i])}: lon/lat ({s.lon[i]}, {s.lat[i]}) out of range")
        if s.survey_ids[i] < 0 or (s.species_of(i) < 0).any():
            raise ValueError(f"survey {int(s.survey_ids[i])}: ids must be >= 0")
        for txt in (s.region[i], s.country[i]):
            if "\n" in txt or "\r" in txt:
                raise ValueError(f"survey {int(s.survey_ids[i])}: region/country contains a newline")

    def rows() -> Iterator[list[str]]:
        for i in range(len(s)):
            common = [
                _fmt_float(s.lon[i]),
                _fmt_float(s.lat[i]),
                str(int(s.year[i])),
                _fmt_float(s.geo_uncertainty_m[i]),
                _fmt_float(s.area_m2[i]),
                str(s.region[i]),
                str(s.country[i]),
            ]
            species = s.species_of(i)
            if species.size == 0:
                yield [*common, "", str(int(s.survey_ids[i]))]
            for sp in species.tolist():
                yield [*common, str(sp), str(int(s.survey_ids[i]))]

    _write_rows(path, PA_COLUMNS, rows())


# --------------------------------------------------------------------------------------------
# GeoPlant presence-only occurrences
# --------------------------------------------------------------------------------------------

PO_COLUMNS = (
    "publisher", "year", "month", "day", "lat", "lon", "geoUncertaintyInM", "taxonRank", "date", "dayOfYear",
    "speciesId", "surveyId",
)
_PO_REQUIRED = ("lon", "lat", "speciesId", "surveyId")


@dataclass(eq=False)
class PORecords:
    """Records of a GeoPlant presence-only file, one per row, in file order.

    Record ``i`` is species ``species_ids[i]`` seen at ``lon[i], lat[i]`` (WGS84 degrees); its
    inputs (S2 patch, cubes) are filed under ``survey_ids[i]``; ``lines[i]`` is its line in
    ``path`` (1-based, header = 1), for messages about that record.
    """

    path: str
    survey_ids: np.ndarray  # int64 [N]
    lon: np.ndarray  # float64 [N]
    lat: np.ndarray  # float64 [N]
    species_ids: np.ndarray  # int64 [N]
    lines: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return int(self.survey_ids.shape[0])


def read_geoplant_po(path: PathLike, *, encoding: str = _DEFAULT_ENCODING, chunk_rows: int = 200_000) -> PORecords:
    """Read a GeoPlant (GLC24 / GLC25) presence-only CSV, one row per record.

    ``lon``, ``lat``, ``speciesId`` and ``surveyId`` are required and must be filled (ids accept
    integral floats such as ``6874.0``); other columns (:data:`PO_COLUMNS`) are ignored. The file
    is streamed in chunks of ``chunk_rows`` records, keeping only those four columns, so the
    real file (millions of rows) fits in memory. Errors are :class:`DataFormatError` naming the
    line and field, as for :func:`read_geoplant_pa`.
    """
    p = str(path)
    parts: dict[str, list[np.ndarray]] = {"lon": [], "lat": [], "speciesId": [], "surveyId": [], "lines": []}
    header: list[str] | None = None
    index: list[int] = []
    cols: list[list[str]] = [[] for _ in _PO_REQUIRED]
    lines: list[int] = []

    def flush() -> None:
        t = _Table(p, header or [], {c: v for c, v in zip(_PO_REQUIRED, cols)}, lines)
        parts["lon"].append(_float_column(t, "lon", lo=-180, hi=180))
        parts["lat"].append(_float_column(t, "lat", lo=-90, hi=90))
        parts["speciesId"].append(_int_column(t, "speciesId", lo=0, what="a species id (integer >= 0)")[0])
        parts["surveyId"].append(_int_column(t, "surveyId", lo=0, what="a survey id (integer >= 0)")[0])
        parts["lines"].append(np.asarray(lines, np.int64))
        for c in cols:
            c.clear()
        lines.clear()

    def check(names: list[str], line: int, first: str) -> None:
        nonlocal header, index
        header = names
        missing = [c for c in _PO_REQUIRED if c not in header]
        if missing:
            sep = next((name for ch, name in ((";", "semicolon"), ("\t", "tab")) if ch in first), None)
            raise DataFormatError(
                p, f"a column {missing[0]!r} in the header (required: "
                   f"{', '.join(map(repr, _PO_REQUIRED))}; comma-separated)",
                line=line, field=missing[0],
                got=_D(f"a {sep}-separated header" if sep and len(header) == 1 else
                       f"columns {', '.join(map(repr, header))}"),
            )
        dups = [c for c in _PO_REQUIRED if header.count(c) > 1]
        if dups:
            raise DataFormatError(p, "unique column names in the header", line=line, field=dups[0],
                                  got=_D(f"column {dups[0]!r} {header.count(dups[0])} times"))
        index = [header.index(c) for c in _PO_REQUIRED]

    for line, row in records(p, header=check, encoding=encoding, what="GeoPlant PO CSV",
                             empty=f"a header line with column(s) {', '.join(map(repr, _PO_REQUIRED))}"):
        for c, i in zip(cols, index):
            c.append(row[i].strip())
        lines.append(line)
        if len(lines) >= chunk_rows:
            flush()
    if lines or not parts["lines"]:
        flush()
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return PORecords(p, cat["surveyId"].astype(np.int64), cat["lon"], cat["lat"],
                     cat["speciesId"].astype(np.int64), cat["lines"])


# --------------------------------------------------------------------------------------------
# Climate and Landsat cubes
# --------------------------------------------------------------------------------------------

CLIMATE_CUBE_SHAPE = (4, 19, 12)
#: Variable order of GLC24 climate cubes as found in the real sample (1322301): band 0 is
#: precipitation (CHELSA ``pr``), then mean, maximum and minimum near-surface air temperature
#: (``tas``, ``tasmax``, ``tasmin``, in 0.1 K: values ~2700-3000). In that sample band 2 >= band 1
#: >= band 3 in every month, which fixes the temperature order; x years 2000-2018 x months 1-12.
CLIMATE_VARIABLES = ("pr", "tas", "tasmax", "tasmin")
LANDSAT_CUBE_SHAPE = (6, 4, 21)
#: Landsat cube bands x quarter (4) x year (21, 2000-2020).
LANDSAT_BANDS = ("red", "green", "blue", "nir", "swir1", "swir2")


def _read_cube(path: PathLike, shape: tuple[int, ...], what: str, fill_nan: float | None) -> torch.Tensor:
    p = str(path)
    if not os.path.exists(p):
        raise FileNotFoundError(p)
    if os.path.getsize(p) == 0:
        raise DataFormatError(p, f"a torch-saved {what} tensor of shape {list(shape)}", got=_D("empty file"))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of every kind
        raise DataFormatError(
            p, f"a torch-saved {what} tensor of shape {list(shape)} (torch.save)",
            got=_D(f"unreadable: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"),
        ) from exc
    if not isinstance(obj, torch.Tensor):
        raise DataFormatError(p, f"a {what} tensor of shape {list(shape)}", got=_D(f"{type(obj).__name__}"))
    if tuple(obj.shape) != shape:
        raise DataFormatError(p, f"a {what} tensor of shape {list(shape)}", field="shape", got=_D(f"shape {list(obj.shape)}"))
    if not obj.is_floating_point():
        raise DataFormatError(p, f"a floating-point {what} tensor (float32)", field="dtype", got=_D(f"{obj.dtype}"))
    t = obj.detach().to(torch.float32).contiguous().clone()
    if fill_nan is not None:
        t = torch.nan_to_num(t, nan=float(fill_nan), posinf=math.inf, neginf=-math.inf)
    bad = ~torch.isfinite(t)
    if bad.any():
        idx = [int(v) for v in torch.nonzero(bad)[0]]
        hint = "" if fill_nan is not None else " (pass fill_nan=0.0 to replace NaN as the GLC baselines do)"
        raise DataFormatError(
            p, f"finite values{hint}", field=f"value{idx}", got=_D(f"{t[tuple(idx)].item()}")
        )
    return t


def read_climate_cube(path: PathLike, *, fill_nan: float | None = None) -> torch.Tensor:
    """Read a GeoPlant / GLC climate cube: float32 tensor [4, 19, 12] (variable x year x month).

    Variable order :data:`CLIMATE_VARIABLES`. The dtype must be floating point (returned as a
    contiguous float32 copy), the shape exact and every value finite. Real GLC cubes can hold NaN
    where the source raster has no data; the reference (malpolon) loaders replace it by 0 with
    ``torch.nan_to_num``. Pass ``fill_nan=0.0`` to do the same; by default NaN is an error.
    """
    return _read_cube(path, CLIMATE_CUBE_SHAPE, "climate cube", fill_nan)


def read_landsat_cube(path: PathLike, *, fill_nan: float | None = None) -> torch.Tensor:
    """Read a GeoPlant / GLC Landsat cube: float32 tensor [6, 4, 21] (band x quarter x year).

    Band order :data:`LANDSAT_BANDS`. Same validation and ``fill_nan`` as
    :func:`read_climate_cube`.
    """
    return _read_cube(path, LANDSAT_CUBE_SHAPE, "Landsat cube", fill_nan)


# --------------------------------------------------------------------------------------------
# Sentinel-2 patches
# --------------------------------------------------------------------------------------------

S2_BANDS = ("red", "green", "blue", "nir")
GLC24_PATCH_SIZE = 128
#: GLC24 preprocessing of Sentinel-2 reflectance to uint8 (see :func:`glc25_to_glc24_uint8`).
S2_REFLECTANCE_CAP = 10_000
S2_GAMMA = 2.5


def glc24_patch_path(folder: PathLike, survey_id: int | str, ext: str = "jpeg") -> Path:
    """``folder/{id[-2:]}/{id[-4:-2]}/{id}.{ext}``, the GLC24 (jpeg) and GLC25 (tiff) layout.

    Built exactly as the reference loader does, also for ids shorter than 4 digits.
    """
    sid = str(survey_id)
    return Path(os.path.join(str(folder), sid[-2:], sid[-4:-2], f"{sid}.{ext}"))


def _find_band_dir(root: Path, band: str) -> Path | None:
    """Sub-folder of ``root`` for ``band`` ('rgb' or 'nir'): exact name first, then a unique
    sub-folder whose name contains it (e.g. ``pa_train_patches_rgb``), case-insensitive."""
    exact = [d for d in root.iterdir() if d.is_dir() and d.name.lower() == band]
    if exact:
        return exact[0]
    cands = [d for d in root.iterdir() if d.is_dir() and band in d.name.lower()]
    return cands[0] if len(cands) == 1 else None


def _load_jpeg(path: Path, mode: str, size: int | None, what: str) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(str(path))
    channels = {"RGB": "3-channel (RGB)", "L": "single-channel (greyscale)"}[mode]
    expected = f"a complete {channels} {what} JPEG" + (f" of {size} x {size} px" if size else "")
    data = path.read_bytes()
    if not data:
        raise DataFormatError(path, expected, got=_D("empty file"))

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            got_mode, got_size = im.mode, im.size
            arr = np.asarray(im)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataFormatError(path, expected, got=_D(f"unreadable image: {exc}")) from exc
    if got_mode != mode:
        raise DataFormatError(path, expected, field="mode", got=_D(f"mode {got_mode}"))
    if size is not None and got_size != (size, size):
        raise DataFormatError(path, expected, field="size", got=_D(f"{got_size[0]} x {got_size[1]} px"))
    if arr.dtype != np.uint8:
        raise DataFormatError(path, expected + " (uint8)", field="dtype", got=_D(f"{arr.dtype}"))
    return arr


def read_s2_glc24(
    root: PathLike,
    survey_id: int | str,
    *,
    rgb_dir: PathLike | None = None,
    nir_dir: PathLike | None = None,
    size: int | None = GLC24_PATCH_SIZE,
) -> np.ndarray:
    """Read a GLC24 Sentinel-2 patch: uint8 array [4, H, W] = R, G, B (from the RGB JPEG) + NIR.

    The RGB and NIR JPEGs lie at ``{id[-2:]}/{id[-4:-2]}/{id}.jpeg`` under an RGB folder and an
    NIR folder. The folders are ``rgb_dir`` / ``nir_dir`` when given; otherwise sub-folders of
    ``root`` named ``rgb`` / ``nir`` (or the one sub-folder whose name contains ``rgb`` / ``nir``,
    as in the GLC24 archives ``pa_train_patches_rgb`` / ``pa_train_patches_nir``); otherwise, if
    ``root`` itself is the RGB folder, the NIR folder is ``root`` with ``rgb``->``nir`` and
    ``RGB``->``NIR`` (the reference loader's rule). ``size`` (default 128) is checked unless None.
    """
    root = Path(root)
    if rgb_dir is None or nir_dir is None:
        found_rgb = found_nir = None
        if root.is_dir():
            found_rgb, found_nir = _find_band_dir(root, "rgb"), _find_band_dir(root, "nir")
        if (found_rgb is None or found_nir is None) and ("rgb" in root.name.lower()):
            found_rgb = root
            found_nir = Path(str(root).replace("rgb", "nir").replace("RGB", "NIR"))
        rgb_dir = rgb_dir if rgb_dir is not None else found_rgb
        nir_dir = nir_dir if nir_dir is not None else found_nir
        if rgb_dir is None or nir_dir is None:
            raise FileNotFoundError(
                f"{root}: expected an RGB folder and a NIR folder (sub-folders 'rgb' and 'nir', or "
                f"rgb_dir=/nir_dir=)"
            )
    rgb = _load_jpeg(glc24_patch_path(rgb_dir, survey_id), "RGB", size, "Sentinel-2 RGB")
    nir = _load_jpeg(glc24_patch_path(nir_dir, survey_id), "L", size, "Sentinel-2 NIR")
    if nir.shape != rgb.shape[:2]:
        raise DataFormatError(
            glc24_patch_path(nir_dir, survey_id),
            f"the size of the RGB patch ({rgb.shape[1]} x {rgb.shape[0]} px)",
            field="size", got=_D(f"{nir.shape[1]} x {nir.shape[0]} px"),
        )
    out = np.empty((4, *rgb.shape[:2]), dtype=np.uint8)
    out[:3] = np.moveaxis(rgb, -1, 0)
    out[3] = nir
    return out


def _is_epsg3035_equivalent(crs: Any) -> bool:
    try:
        ref = CRS.from_epsg(3035).to_dict()
        got = crs.to_dict()
    except Exception:
        return False
    keys = ("proj", "lat_0", "lon_0", "x_0", "y_0", "ellps", "units")
    return all(got.get(k) == ref.get(k) for k in keys)


def read_s2_glc25(path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a GLC25 Sentinel-2 patch GeoTIFF: (uint16 array [4, H, W] R, G, B, NIR; profile).

    Bands must be 4, in the order red, green, blue, nir (checked against the band descriptions
    when the file has them, as the real GLC25 files do). Real GLC25 patches are **int16** with
    nodata -1 (the format description says uint16): negative values and nodata pixels become 0
    in the returned uint16 array, and the returned profile (a plain dict from rasterio's profile)
    then says ``dtype='uint16'``, ``nodata=0``. A CRS that is EPSG:3035 written without its code
    (as in the real files: an unnamed LAEA on GRS80 with the 3035 parameters) is replaced by
    ``EPSG:3035`` in the profile. Use :func:`glc25_to_glc24_uint8` to feed the GLC24 model.
    """
    p = str(path)
    if not os.path.exists(p):
        raise FileNotFoundError(p)
    expected = "a 4-band (red, green, blue, nir) uint16/int16 GeoTIFF"
    if os.path.getsize(p) == 0:
        raise DataFormatError(p, expected, got=_D("empty file"))
    try:
        with rasterio.open(p) as ds:
            profile = dict(ds.profile)
            if ds.count != 4:
                raise DataFormatError(p, expected, field="count", got=_D(f"{ds.count} bands"))
            descs = [(d or "").strip().lower() for d in ds.descriptions]
            if any(descs):
                aliases = {"r": "red", "g": "green", "b": "blue", "b4": "red", "b3": "green", "b2": "blue", "b8": "nir"}
                norm = tuple(aliases.get(d, d) for d in descs)
                if norm != S2_BANDS:
                    raise DataFormatError(p, f"bands in the order {', '.join(S2_BANDS)}", field="descriptions", got=_D(f"{', '.join(descs)}"))
            if ds.dtypes[0] not in ("uint16", "int16") or len(set(ds.dtypes)) != 1:
                raise DataFormatError(p, expected, field="dtype", got=_D(f"{', '.join(ds.dtypes)}"))
            raw = ds.read()
            nodata = ds.nodata
    except DataFormatError:
        raise
    except (RasterioIOError, OSError) as exc:
        raise DataFormatError(p, expected, got=_D(f"unreadable: {exc}")) from exc
    invalid = np.zeros(raw.shape, dtype=bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        invalid |= raw == nodata
    if raw.dtype == np.int16:
        invalid |= raw < 0
    arr = np.where(invalid, 0, raw).astype(np.uint16)
    profile.update(dtype="uint16", nodata=0 if (nodata is not None or invalid.any()) else None)
    crs = profile.get("crs")
    if crs is not None and crs.to_epsg() is None and _is_epsg3035_equivalent(crs):
        profile["crs"] = CRS.from_epsg(3035)
    return arr, profile


def glc25_to_glc24_uint8(reflectance: np.ndarray, *, nodata: float | None = None) -> np.ndarray:
    """Convert Sentinel-2 reflectance (GLC25 GeoTIFF values, scaled by 10,000) to the GLC24 uint8
    convention, so that the model sees a single convention.

    GLC24 patches were made by capping values at 10,000, applying a gamma of 1/2.5 and scaling to
    0-255::

        out = round(255 * (clip(x, 0, 10000) / 10000) ** (1 / 2.5))

    (values <= 0, NaN and ``nodata`` give 0; the rounding is to nearest, a choice: GLC24 does not
    document it). Works on any shape and numeric dtype; returns uint8 of the same shape.
    """
    x = np.asarray(reflectance, dtype=np.float64)
    bad = ~np.isfinite(x)
    if nodata is not None:
        bad |= x == nodata
    x = np.clip(np.where(bad, 0.0, x), 0.0, S2_REFLECTANCE_CAP) / S2_REFLECTANCE_CAP
    return np.rint(255.0 * np.power(x, 1.0 / S2_GAMMA)).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# EUNIS 2021 habitat codes
# --------------------------------------------------------------------------------------------

# The hierarchy rule lives with the built-in EUNIS list; the readers use the same one.
eunis_level = code_level
eunis_parent = code_parent
eunis_ancestors = code_ancestors


def is_plantbert_habitat_class(code: str) -> bool:
    """Whether Pl@ntBERT classifies into this code: the level-3 codes outside ``MA2`` plus the
    level-5 littoral codes ``MA2xx`` (its ``keep_habitat_types`` rule: 3 characters, or 5
    characters starting with ``MA2``)."""
    level = eunis_level(code)
    return level == 5 if code.startswith("MA2") else level == 3


# The EUNIS Code,Name list reader and its habitat record live with the habitat table
# (inference.data.eunis, torch-free, so that eunis.load_list can use it); re-exported here.
EunisHabitat = _eunis.EunisHabitat
read_eunis_codes = _eunis.read_eunis_codes


# --------------------------------------------------------------------------------------------
# Species lists (Habitats Directive Art. 17, invasive alien species of Union concern)
# --------------------------------------------------------------------------------------------

_SPECIES_LIST_KINDS = ("habitats_directive", "invasive")
_GBIF_REQUIRED = ("verbatimScientificName", "scientificName", "key", "kingdom", "canonicalName")
_GBIF_OPTIONAL = (
    "matchType", "confidence", "status", "rank", "phylum", "class", "order", "family", "genus",
    "species", "authorship", "usageKey", "acceptedUsageKey",
)


@dataclass(frozen=True)
class ListedSpecies:
    """One row of a GBIF-matched species list."""

    verbatim_name: str  # the name as on the legal list
    scientific_name: str  # GBIF name with authorship
    canonical_name: str  # GBIF name without authorship (of the matched usage, maybe a synonym)
    gbif_key: int  # the matched GBIF usage key
    accepted_key: int  # acceptedUsageKey for synonyms, else gbif_key
    accepted_species: str  # GBIF 'species' (accepted species name; '' above species rank)
    rank: str
    status: str  # ACCEPTED / SYNONYM / DOUBTFUL
    match_type: str  # EXACT / FUZZY / HIGHERRANK
    confidence: int | None
    kingdom: str
    family: str
    genus: str
    annex: str | None  # Habitats Directive annex(es) when the file has such a column, else None
    kind: str  # 'habitats_directive' or 'invasive'


def read_species_list(
    path: PathLike,
    kind: str,
    *,
    kingdom: str | None = "Plantae",
    encoding: str = _DEFAULT_ENCODING,
) -> list[ListedSpecies]:
    """Read a GBIF-matched species list and return its rows of one kingdom (default Plantae).

    ``kind`` is ``'habitats_directive'`` (Art. 17 checklist) or ``'invasive'`` (IAS of Union
    concern). The files are GBIF species-match exports with columns ``occurrenceId,
    verbatimScientificName, scientificName, key, matchType, confidence, status, rank, kingdom,
    phylum, class, order, family, genus, species, canonicalName, authorship, usageKey,
    acceptedUsageKey``. Rows GBIF could not match (``matchType`` NONE, empty ``kingdom``) fall
    outside every kingdom and are skipped (``kingdom=None`` keeps all rows, these included, with
    key 0). Rows of the kingdom must have an integer ``key``. The real Art. 17 file has no annex
    column; an ``annex``/``annexes`` column (any case) is read into ``annex`` when present.
    Duplicate keys are kept (the Art. 17 list has "Hedlundia teodori s.l." and "s.str.", both
    GBIF 9502874).
    """
    if kind not in _SPECIES_LIST_KINDS:
        raise ValueError(f"kind must be one of {_SPECIES_LIST_KINDS}, got {kind!r}")
    t = _read_table(
        path, required=_GBIF_REQUIRED, optional=_GBIF_OPTIONAL, encoding=encoding,
        what="GBIF-matched species CSV", keep_all=True,
    )
    # An annex column, whatever its case (the real Art. 17 file has none).
    annex_col = next((h for h in t.header if h.lower() in ("annex", "annexes")), None)
    col = t.columns
    n = len(t)

    def get(name: str, i: int) -> str:
        c = col.get(name)
        return c[i] if c is not None else ""

    out: list[ListedSpecies] = []
    for i in range(n):
        k = col["kingdom"][i]
        if kingdom is not None and k != kingdom:
            continue
        key_txt = col["key"][i]
        if key_txt == "" and kingdom is None:
            key = 0
        else:
            try:
                key = int(key_txt)
            except ValueError:
                raise _bad(t, i, "key", "a GBIF usage key (integer)") from None
        acc_txt = get("acceptedUsageKey", i)
        try:
            accepted = int(acc_txt) if acc_txt else key
        except ValueError:
            raise _bad(t, i, "acceptedUsageKey", "a GBIF usage key (integer) or an empty field") from None
        conf_txt = get("confidence", i)
        try:
            conf = int(conf_txt) if conf_txt else None
        except ValueError:
            raise _bad(t, i, "confidence", "an integer confidence or an empty field") from None
        if kingdom is not None and not col["canonicalName"][i]:
            raise _bad(t, i, "canonicalName", "a canonical name for a matched row")
        out.append(
            ListedSpecies(
                verbatim_name=col["verbatimScientificName"][i],
                scientific_name=col["scientificName"][i],
                canonical_name=col["canonicalName"][i],
                gbif_key=key,
                accepted_key=accepted,
                accepted_species=get("species", i),
                rank=get("rank", i),
                status=get("status", i),
                match_type=get("matchType", i),
                confidence=conf,
                kingdom=k,
                family=get("family", i),
                genus=get("genus", i),
                annex=(get(annex_col, i) or None) if annex_col else None,
                kind=kind,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# PlantTraitNet training CSV
# --------------------------------------------------------------------------------------------

TRAITS = ("Height", "LeafArea", "SLA", "Leaf_N")
TRAIT_STATS = ("median", "sd", "lowerbound", "upperbound")
_PTN_BASE = ("Image", "Longitude", "Latitude", "PFT")


@dataclass(eq=False)
class TraitTable:
    """PlantTraitNet training rows: one image each, with species-level trait distributions.

    ``median``, ``sd``, ``lowerbound``, ``upperbound`` are float64 [N, len(traits)] (NaN where
    the file leaves a cell empty); column j is trait ``traits[j]``.
    """

    image: np.ndarray  # str [N], path relative to the data folder
    longitude: np.ndarray  # float64 [N]
    latitude: np.ndarray  # float64 [N]
    pft: np.ndarray  # str [N], plant functional type (Grass / Shrub / Tree in PlantTraitNet)
    median: np.ndarray
    sd: np.ndarray
    lowerbound: np.ndarray
    upperbound: np.ndarray
    traits: tuple[str, ...] = TRAITS

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def column(self, name: str) -> np.ndarray:
        """A column by its CSV name, e.g. ``'SLA_median'`` or ``'Latitude'``."""
        base = {"Image": self.image, "Longitude": self.longitude, "Latitude": self.latitude, "PFT": self.pft}
        if name in base:
            return base[name]
        for stat in TRAIT_STATS:
            suffix = "_" + stat
            if name.endswith(suffix) and name[: -len(suffix)] in self.traits:
                return getattr(self, stat)[:, self.traits.index(name[: -len(suffix)])]
        raise KeyError(name)


def read_planttraitnet_csv(
    path: PathLike, *, traits: Sequence[str] = TRAITS, encoding: str = _DEFAULT_ENCODING
) -> TraitTable:
    """Read a PlantTraitNet training CSV.

    Required columns: ``Image, Longitude, Latitude, PFT`` and ``{trait}_{stat}`` for every trait
    in ``traits`` (default Height, LeafArea, SLA, Leaf_N) and stat in median, sd, lowerbound,
    upperbound; extra columns are ignored. Image must be non-empty; longitude in [-180, 180],
    latitude in [-90, 90]; trait cells are numbers or empty (NaN: PlantTraitNet itself tolerates
    a missing sd); sd >= 0; lowerbound <= upperbound where both are given.
    """
    traits = tuple(traits)
    cols = [f"{t}_{s}" for t in traits for s in TRAIT_STATS]
    t = _read_table(path, required=(*_PTN_BASE, *cols), encoding=encoding, what="PlantTraitNet CSV")
    n = len(t)
    for i, v in enumerate(t.columns["Image"]):
        if not v:
            raise _bad(t, i, "Image", "an image path")
    lon = _float_column(t, "Longitude", lo=-180, hi=180)
    lat = _float_column(t, "Latitude", lo=-90, hi=90)
    stats: dict[str, np.ndarray] = {s: np.empty((n, len(traits))) for s in TRAIT_STATS}
    for j, tr in enumerate(traits):
        for s in TRAIT_STATS:
            stats[s][:, j] = _float_column(t, f"{tr}_{s}", allow_empty=True, lo=0 if s == "sd" else None)
        lo_, hi_ = stats["lowerbound"][:, j], stats["upperbound"][:, j]
        wrong = lo_ > hi_  # False where either is NaN
        if wrong.any():
            i = int(np.argmax(wrong))
            raise _bad(t, i, f"{tr}_upperbound", f"an upper bound >= {tr}_lowerbound ({t.columns[f'{tr}_lowerbound'][i]})")
    return TraitTable(
        image=np.asarray(t.columns["Image"], dtype=str),
        longitude=lon,
        latitude=lat,
        pft=np.asarray(t.columns["PFT"], dtype=str),
        median=stats["median"],
        sd=stats["sd"],
        lowerbound=stats["lowerbound"],
        upperbound=stats["upperbound"],
        traits=traits,
    )


def write_planttraitnet_csv(path: PathLike, table: TraitTable) -> None:
    """Write a :class:`TraitTable` as a PlantTraitNet training CSV (columns ``Image, Longitude,
    Latitude, PFT`` then ``{trait}_median, _sd, _lowerbound, _upperbound`` per trait, in
    ``table.traits`` order); NaN is written as an empty field. Reads back unchanged with
    :func:`read_planttraitnet_csv` (``traits=table.traits``)."""
    n = len(table)
    shape = (n, len(table.traits))
    for s in TRAIT_STATS:
        if getattr(table, s).shape != shape:
            raise ValueError(f"TraitTable.{s} has shape {getattr(table, s).shape}, expected {shape}")
    for name in ("longitude", "latitude", "pft"):
        if len(getattr(table, name)) != n:
            raise ValueError(f"TraitTable.{name} has {len(getattr(table, name))} rows, expected {n}")
    header = [*_PTN_BASE, *(f"{t}_{s}" for t in table.traits for s in TRAIT_STATS)]

    def rows() -> Iterator[list[str]]:
        for i in range(n):
            row = [str(table.image[i]), _fmt_float(table.longitude[i]), _fmt_float(table.latitude[i]), str(table.pft[i])]
            for j in range(len(table.traits)):
                row.extend(_fmt_float(getattr(table, s)[i, j]) for s in TRAIT_STATS)
            yield row

    _write_rows(path, header, rows())


# --------------------------------------------------------------------------------------------
# Pl@ntBERT Observations TSV
# --------------------------------------------------------------------------------------------

OBSERVATIONS_COLUMN = "Observations"


def read_plantbert_observations(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> list[list[str]]:
    """Read a Pl@ntBERT input TSV: one column ``Observations`` (other columns, such as the
    predictions Pl@ntBERT appends, are ignored); each row is a comma-separated list of species
    names ordered by decreasing cover (``Rumex acetosa, Dactylis glomerata, ...``).

    Returns one list of names per row, each name stripped. A row without names or with an empty
    name (``a, , b``) is an error. Blank lines are skipped.
    """
    t = _read_table(path, required=(OBSERVATIONS_COLUMN,), delimiter="\t", encoding=encoding, what="Pl@ntBERT Observations TSV")
    out: list[list[str]] = []
    for i, text in enumerate(t.columns[OBSERVATIONS_COLUMN]):
        if not text:
            raise _bad(t, i, OBSERVATIONS_COLUMN, "at least one species name")
        names = [s.strip() for s in text.split(",")]
        if any(not s for s in names):
            k = names.index("")
            raise _bad(t, i, OBSERVATIONS_COLUMN, f"comma-separated species names (name {k + 1} is empty)")
        out.append(names)
    return out


def write_plantbert_observations(path: PathLike, lists: Iterable[Sequence[str]]) -> None:
    """Write species lists as a Pl@ntBERT ``Observations`` TSV (names joined by ``", "``, in
    the given order, which should be decreasing cover / probability). Names must be non-empty
    and contain no comma, tab or newline."""

    def rows() -> Iterator[list[str]]:
        for r, names in enumerate(lists):
            if isinstance(names, str):
                raise ValueError(f"list {r}: expected a sequence of names, got a string")
            clean = []
            for name in names:
                s = str(name).strip()
                if not s or any(c in s for c in ",\t\r\n"):
                    raise ValueError(f"list {r}: species name {name!r} is empty or contains a comma, tab or newline")
                clean.append(s)
            if not clean:
                raise ValueError(f"list {r}: expected at least one species name")
            yield [", ".join(clean)]

    _write_rows(path, [OBSERVATIONS_COLUMN], rows(), delimiter="\t")
