"""Vegetation plots in the European Vegetation Archive's standard export, as Pl@ntBERT training
plots.

EVA exports two tables, tab- or comma-separated (the delimiter is read off the header line: tab
if it has one, else ``;`` if it has more of them than commas, else comma):

* the **header table**, one row per plot: ``PlotObservationID``, the plot's EUNIS habitat (the
  first column found of ``Expert System``, ``EUNIS``, ``EUNIS code``, ``EUNIS habitat``, ``ESy``,
  ``Habitat``), ``Longitude`` / ``Latitude`` (WGS84 degrees; also ``Lon`` / ``Lat``) and
  optionally the plot area (``Releve area (m²)``, ``Relevé area (m²)``, ``Plot area``, ``Area``);
* the **species table**, one row per (plot, taxon, layer): ``PlotObservationID``, the taxon name
  (the first of ``Matched concept``, ``Taxon name``, ``Turboveg2 concept``, ``Species``,
  ``Original species``, ``Taxon``) and ``Cover %``.

Column names are matched ignoring case, spaces and punctuation. :func:`find_eva_tables` finds
the two files in a folder: ``header.{csv,tsv,txt}`` and ``species.{csv,tsv,txt}``, else the one
file whose name contains ``header`` (``species``) with one of those extensions.

:func:`read_eva` joins the tables into one species list per plot:

* **Species.** Names go onto the region's species table (the Pl@ntBERT vocabulary) by
  :func:`~inference.data.species_table.name_key` of their canonical name (authors, ``agg.``,
  ``s.l.`` ... ignored); an infraspecific name the table lacks falls back to its species
  (``Festuca rubra subsp. juncea`` -> ``Festuca rubra``). Other names are left out of the lists
  and counted per name in the report. Rows of one species in a plot (several layers, synonyms,
  a subspecies and its species) are merged: cover ``1 - prod(1 - c_i / 100)`` (layers as
  independent, the usual rule), each ``c_i`` capped at 100.
* **Order.** Each plot's species by decreasing cover, ties by the table's species name.
* **Labels.** Pl@ntBERT classifies at EUNIS level 3, so the code is read as follows: upper-cased;
  empty, ``?``, ``~``, ``-``, ``NA``, ``none`` -> no code; several codes (separated by ``,``
  ``;`` ``+`` ``/`` ``|`` ``&``, as the expert system writes a plot fitting several types) -> the
  plot is ambiguous and dropped; a suffix after a code (``T1E!``, ``R22*``, ``T1E-2``) is cut off
  and counted; the code must be known to :mod:`inference.data.eunis` (load the real EUNIS list
  first, :func:`inference.data.eunis.load_list`); a code below level 3 (``MA221``) stands for its
  level-3 ancestor (``MA2``), counted; a level-1 or level-2 code (``T1``) cannot train level 3 and
  the plot is dropped.
* **Dropped plots**, each counted under the first reason that applies, in this order:
  ``no species rows``, ``no EUNIS code``, ``several EUNIS codes``, ``unknown EUNIS code``,
  ``EUNIS level 1-2 only``, ``no coordinates`` (empty longitude or latitude), ``no known species``.

A :class:`~backend.core.errors.DataFormatError` names the file, line and field of a missing
column, a bad number (a cover that is not a number >= 0, a longitude outside [-180, 180], a
latitude outside [-90, 90], an area that is not > 0), an empty or repeated ``PlotObservationID``
in the header table, or a species row whose plot the header table does not have.

The result (:class:`EvaPlots`) holds the plots as the :class:`~inference.habitat.corpus.Lists`
the trainer takes (EPSG:3035 coordinates, so the spatial TRAIN / CAL / TEST blocks of
:mod:`inference.splits` apply: :func:`inference.habitat.corpus.plot_splits`), their label list
and the :class:`EvaReport`.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyproj import Transformer

from backend.core.errors import DataFormatError
from backend.core.errors import Found as _D
from inference.data import eunis
from inference.data.readers import _DEFAULT_ENCODING, PathLike, _bad, _float_column, _read_table
from inference.data.species_table import _norm_header, canonical_name, name_key

from .corpus import Lists
from .plantbert import N_SPECIAL, Vocab, lists_to_matrix

PLOT_ID = "PlotObservationID"
EUNIS_COLUMNS = ("Expert System", "EUNIS", "EUNIS code", "EUNIS habitat", "ESy", "Habitat")
LON_COLUMNS = ("Longitude", "Lon", "Long")
LAT_COLUMNS = ("Latitude", "Lat")
AREA_COLUMNS = ("Releve area (m²)", "Relevé area (m²)", "Releve area", "Relevé area", "Plot area", "Area")
NAME_COLUMNS = ("Matched concept", "Taxon name", "Turboveg2 concept", "Species", "Original species", "Taxon")
COVER_COLUMNS = ("Cover %", "Cover percentage", "Cover")
EXTENSIONS = (".csv", ".tsv", ".txt")

DROP_REASONS = ("no species rows", "no EUNIS code", "several EUNIS codes", "unknown EUNIS code",
                "EUNIS level 1-2 only", "no coordinates", "no known species")
_NO_CODE = {"", "NA", "N/A", "NAN", "NONE", "NULL"}
_CODE_SPLIT = re.compile(r"[,;+/|&]")
_CODE_RE = re.compile(r"([A-Z][A-Z0-9]*(?:\.[A-Z0-9]+)?)(.*)$")
_TO_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)


# ---------------------------------------------------------------------------------------------
# the report and the result

@dataclass
class EvaReport:
    """What :func:`read_eva` read, kept and left out."""

    header: str  # the two files
    species: str
    header_plots: int = 0  # rows of the header table
    species_rows: int = 0  # rows of the species table
    plots: int = 0  # plots kept
    unknown_names: dict[str, int] = field(default_factory=dict)  # name as written -> rows, most rows first
    unknown_rows: int = 0  # species rows whose name is not in the species table
    species_level_rows: int = 0  # infraspecific names matched to their species
    merged_rows: int = 0  # rows merged into a species already in the plot (layers, synonyms)
    dropped: dict[str, int] = field(default_factory=dict)  # reason (DROP_REASONS) -> plots
    unknown_codes: dict[str, int] = field(default_factory=dict)  # EUNIS code -> plots, most first
    suffix_cut: int = 0  # plots whose code carried a suffix, cut off
    cut_to_level3: int = 0  # plots whose code was below level 3, read as its level-3 ancestor
    label_counts: dict[str, int] = field(default_factory=dict)  # level-3 code -> plots kept

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def format(self, limit: int = 10) -> str:
        """A readable summary; at most ``limit`` names and codes listed."""
        lines = [f"EVA plots: {self.header} ({self.header_plots} plots), {self.species} ({self.species_rows} rows)",
                 f"{self.plots} plots kept with {len(self.label_counts)} level-3 habitats, {self.n_dropped} dropped"]
        for reason in DROP_REASONS:
            if self.dropped.get(reason):
                lines.append(f"  dropped, {reason}: {self.dropped[reason]}")
        if self.unknown_codes:
            lines.append("  unknown EUNIS codes (plots): " + _few(self.unknown_codes, limit)
                         + " (load the EUNIS list that has them: --eunis FILE)")
        if self.suffix_cut or self.cut_to_level3:
            lines.append(f"  codes read with a suffix cut off: {self.suffix_cut}; below level 3, read at level 3: "
                         f"{self.cut_to_level3}")
        lines.append(f"species rows: {self.unknown_rows} of {self.species_rows} with a name not in the species "
                     f"table ({len(self.unknown_names)} name{'' if len(self.unknown_names) == 1 else 's'}), "
                     f"{self.species_level_rows} infraspecific names "
                     f"matched to their species, {self.merged_rows} merged into a species of the same plot")
        if self.unknown_names:
            lines.append("  unknown names (rows): " + _few(self.unknown_names, limit))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _few(counts: dict[str, int], limit: int) -> str:
    items = [f"{k or '(empty)'} ({v})" for k, v in list(counts.items())[:limit]]
    more = len(counts) - limit
    return ", ".join(items) + (f", ... {more} more" if more > 0 else "")


@dataclass
class EvaPlots:
    """Plots read from an EVA export: ``lists`` (label = index into ``labels``, the level-3 codes
    found, sorted), per plot its id, WGS84 position and area (NaN when not given)."""

    lists: Lists
    labels: list[str]
    plot_ids: list[str]
    lon: np.ndarray
    lat: np.ndarray
    area_m2: np.ndarray
    report: EvaReport

    def __len__(self) -> int:
        return len(self.lists)

    def relabel(self, labels: Sequence[str]) -> EvaPlots:
        """The plots with ``labels`` as label list (a model's): plots of another habitat left out."""
        labels = list(labels)
        if labels == self.labels:
            return self
        index = np.array([labels.index(c) if c in labels else -1 for c in self.labels] + [-1], np.int64)
        new = index[self.lists.label]
        keep = np.flatnonzero(new >= 0)
        lists = self.lists.subset(keep)
        lists.label = new[keep]
        return EvaPlots(lists, labels, [self.plot_ids[i] for i in keep], self.lon[keep], self.lat[keep],
                        self.area_m2[keep], self.report)


# ---------------------------------------------------------------------------------------------
# files and columns

def find_eva_tables(folder: PathLike) -> tuple[Path, Path]:
    """The (header, species) tables of an EVA export in ``folder`` (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"EVA plots: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)

    def one(word: str) -> Path:
        exact = [p for p in files if p.stem.lower() == word]
        hits = exact or [p for p in files if word in p.name.lower()]
        if len(hits) != 1:
            found = ", ".join(p.name for p in hits) if hits else "none"
            raise FileNotFoundError(
                f"EVA plots: expected one {word} table in {folder} ({word}.csv / {word}.tsv / {word}.txt, or one "
                f"file named *{word}* with one of these extensions), found {found}")
        return hits[0]

    return one("header"), one("species")


def _header_line(path: str, encoding: str) -> tuple[str, list[str]]:
    """The delimiter and the column names of a table (its first non-blank line)."""
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    try:
        with open(path, encoding=encoding, newline="") as fh:
            first = next((line for line in fh if line.strip()), "")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"text in encoding {encoding!r} (pass encoding=... for another)", line=1,
                              got=_D(f"undecodable bytes ({exc.reason})")) from exc
    if not first:
        raise DataFormatError(path, "a header line", line=1, got=_D("empty file"))
    delimiter = "\t" if "\t" in first else (";" if first.count(";") > first.count(",") else ",")
    return delimiter, [h.strip() for h in next(csv.reader([first.rstrip("\r\n")], delimiter=delimiter))]


def _column(path: str, header: list[str], aliases: Sequence[str], what: str, required: bool = True) -> str | None:
    by_norm: dict[str, str] = {}
    for h in header:
        by_norm.setdefault(_norm_header(h), h)
    for a in aliases:
        if _norm_header(a) in by_norm:
            return by_norm[_norm_header(a)]
    if required:
        raise DataFormatError(path, f"a {what} column in the header ({' / '.join(map(repr, aliases))})", line=1,
                              got=_D(f"columns {', '.join(map(repr, header))}"))
    return None


def _table(path: PathLike, columns: dict[str, tuple[Sequence[str], bool]], what: str, encoding: str):
    """Read the columns ``{key: (aliases, required)}`` of a table -> (table, {key: column or None})."""
    p = str(path)
    delimiter, header = _header_line(p, encoding)
    names = {k: _column(p, header, aliases, k, req) for k, (aliases, req) in columns.items()}
    wanted = [c for c in names.values() if c is not None]
    t = _read_table(p, required=wanted, delimiter=delimiter, encoding=encoding, what=what)
    return t, names


# ---------------------------------------------------------------------------------------------
# codes and names

def parse_eva_code(value: str) -> tuple[str | None, str, bool]:
    """(code, problem, suffix cut) of an EVA habitat value: ``('T1E', '', False)`` for ``T1E``,
    ``('T1E', '', True)`` for ``T1E!``, ``(None, 'no EUNIS code', False)`` for ``~`` or an empty
    value, ``(None, 'several EUNIS codes', False)`` for ``R22, R21``. Not checked against the
    EUNIS table (see :func:`read_eva`)."""
    text = value.strip().upper()
    if text in _NO_CODE:
        return None, "no EUNIS code", False
    codes, cut = [], False
    for part in _CODE_SPLIT.split(text):
        m = _CODE_RE.match(part.strip())
        if m is None:  # "?", "~", "-" or a part without a code
            continue
        cut |= bool(m.group(2).strip())
        if m.group(1) not in codes:
            codes.append(m.group(1))
    if not codes:
        return None, "no EUNIS code", False
    if len(codes) > 1:
        return None, "several EUNIS codes", False
    return codes[0], "", cut


class _NameMatcher:
    """Species name -> vocabulary token by name key, an infraspecific name falling back to its
    species; (token or None, matched at species level)."""

    def __init__(self, vocab: Vocab) -> None:
        self.by_key: dict[str, int] = {}
        for i, n in enumerate(vocab.names):
            self.by_key.setdefault(name_key(n), i + N_SPECIAL)
        self.cache: dict[str, tuple[int | None, bool]] = {}

    def __call__(self, name: str) -> tuple[int | None, bool]:
        hit = self.cache.get(name)
        if hit is None:
            tok = self.by_key.get(name_key(name)) if name else None
            broader = False
            if tok is None and name:
                words = [w for w in canonical_name(name).split(" ") if w not in ("subsp.", "var.", "f.")]
                if len(words) > 2 and "×" not in words:
                    tok = self.by_key.get(name_key(" ".join(words[:2])))
                    broader = tok is not None
            hit = self.cache[name] = (tok, broader)
        return hit


# ---------------------------------------------------------------------------------------------
# the reader

def read_eva(header_path: PathLike, species_path: PathLike, vocab: Vocab, *, max_len: int | None = None,
             encoding: str = _DEFAULT_ENCODING) -> EvaPlots:
    """Join an EVA header and species table into labelled species lists over ``vocab`` (see the
    module docstring); lists keep their first ``max_len`` species (all if None)."""
    ht, hc = _table(header_path, {"plot": ((PLOT_ID,), True), "EUNIS": (EUNIS_COLUMNS, True),
                                  "longitude": (LON_COLUMNS, True), "latitude": (LAT_COLUMNS, True),
                                  "area": (AREA_COLUMNS, False)}, "EVA header table", encoding)
    st, sc = _table(species_path, {"plot": ((PLOT_ID,), True), "taxon name": (NAME_COLUMNS, True),
                                   "cover": (COVER_COLUMNS, True)}, "EVA species table", encoding)
    report = EvaReport(header=Path(header_path).name, species=Path(species_path).name,
                       header_plots=len(ht), species_rows=len(st))

    # header: one row per plot
    ids = ht.columns[hc["plot"]]
    row_of: dict[str, int] = {}
    for i, pid in enumerate(ids):
        if not pid:
            raise _bad(ht, i, hc["plot"], "a plot id")
        if pid in row_of:
            raise _bad(ht, i, hc["plot"], f"each {PLOT_ID} once (also on line {ht.lines[row_of[pid]]})")
        row_of[pid] = i
    lon = _float_column(ht, hc["longitude"], allow_empty=True, lo=-180.0, hi=180.0)
    lat = _float_column(ht, hc["latitude"], allow_empty=True, lo=-90.0, hi=90.0)
    area = (_float_column(ht, hc["area"], allow_empty=True, lo=0.0, lo_open=True) if hc["area"]
            else np.full(len(ht), np.nan))

    # species: merged cover per (plot, token)
    cover = _float_column(st, sc["cover"], lo=0.0, what="a cover in % (a number >= 0)")
    match = _NameMatcher(vocab)
    per_plot: list[dict[int, float] | None] = [None] * len(ht)  # token -> product of (1 - cover / 100)
    has_rows = np.zeros(len(ht), bool)
    unknown: Counter = Counter()
    for j, (pid, name) in enumerate(zip(st.columns[sc["plot"]], st.columns[sc["taxon name"]])):
        i = row_of.get(pid)
        if i is None:
            raise _bad(st, j, sc["plot"], f"a {PLOT_ID} of the header table {report.header}")
        has_rows[i] = True
        tok, broader = match(name)
        if tok is None:
            unknown[name] += 1
            continue
        report.species_level_rows += broader
        absent = per_plot[i]
        if absent is None:
            absent = per_plot[i] = {}
        c = min(float(cover[j]), 100.0) / 100.0
        if tok in absent:
            report.merged_rows += 1
            absent[tok] *= 1.0 - c
        else:
            absent[tok] = 1.0 - c
    report.unknown_names = dict(sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0])))
    report.unknown_rows = sum(unknown.values())

    # plots: label, position, ordered list
    table = eunis.table()
    dropped: Counter = Counter()
    codes_unknown: Counter = Counter()
    keep, labels_of, token_lists = [], [], []
    for i, value in enumerate(ht.columns[hc["EUNIS"]]):
        code, problem, cut = parse_eva_code(value)
        if not has_rows[i]:
            problem = "no species rows"
        elif not problem and code not in table:
            problem = "unknown EUNIS code"
            codes_unknown[code] += 1
        elif not problem and eunis.code_level(code) < 3:
            problem = "EUNIS level 1-2 only"
        elif not problem and (math.isnan(lon[i]) or math.isnan(lat[i])):
            problem = "no coordinates"
        elif not problem and not per_plot[i]:
            problem = "no known species"
        if problem:
            dropped[problem] += 1
            continue
        report.suffix_cut += cut
        if eunis.code_level(code) > 3:
            code = table.at_level(code, 3)
            report.cut_to_level3 += 1
        covers = per_plot[i]
        order = sorted(covers, key=lambda t: (covers[t], vocab.names[t - N_SPECIAL]))  # most cover first
        keep.append(i)
        labels_of.append(code)
        token_lists.append(order)
    report.dropped = {r: dropped[r] for r in DROP_REASONS if dropped[r]}
    report.unknown_codes = dict(sorted(codes_unknown.items(), key=lambda kv: (-kv[1], kv[0])))

    labels = sorted(set(labels_of))
    index = {c: k for k, c in enumerate(labels)}
    keep_a = np.asarray(keep, np.int64)
    x, y = _TO_3035.transform(lon[keep_a], lat[keep_a]) if len(keep_a) else (np.zeros(0), np.zeros(0))
    lists = Lists(np.asarray(x, np.float64), np.asarray(y, np.float64),
                  np.asarray([index[c] for c in labels_of], np.int64),
                  lists_to_matrix(token_lists, max_len), "plots")
    report.plots = len(keep)
    report.label_counts = dict(sorted(Counter(labels_of).items()))
    return EvaPlots(lists, labels, [ids[i] for i in keep], lon[keep_a], lat[keep_a], area[keep_a], report)


def read_eva_folder(folder: PathLike, vocab: Vocab, *, max_len: int | None = None,
                    encoding: str = _DEFAULT_ENCODING) -> EvaPlots:
    """:func:`read_eva` on the tables :func:`find_eva_tables` finds in ``folder``."""
    header, species = find_eva_tables(folder)
    return read_eva(header, species, vocab, max_len=max_len, encoding=encoding)


__all__ = ["DROP_REASONS", "EvaPlots", "EvaReport", "find_eva_tables", "parse_eva_code", "read_eva",
           "read_eva_folder"]
