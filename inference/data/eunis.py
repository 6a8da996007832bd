"""Built-in EUNIS habitat hierarchy: the level 1-3 types a central-European region needs.

Codes and names of groups N, Q, R, S, T, U and V are those of the EUNIS 2021 terrestrial list
(EEA, EUNIS-ESy 2021-06-01). The 2021 revision did not cover inland surface waters and constructed
habitats, so those (C, J) keep their EUNIS 2012 codes and names, flagged ``revision=2012``; their
level-3 codes carry a dot (``C1.3``). Levels follow the code hierarchy: ``R22 -> R2 -> R``.

**The habitat table.** :func:`habitat`, :func:`at_level`, :func:`ancestors`, :func:`children`
and :func:`all_types` answer from one process-wide :class:`HabitatTable` (:func:`table`): the
built-in list above, plus every EUNIS list file loaded with :func:`load_list` (the real EUNIS
2021 list, ``Code,Name``, read by :func:`read_eunis_codes`; a raster region loads its sources'
``habitats:`` file). Loading is idempotent (a file already loaded, unchanged, is not read again)
and only adds: a loaded list's names win over the built-in ones where both have a code, its
other codes join the table with their level and parent from the code (:func:`code_level`,
:func:`code_parent`), and an ancestor the file does not list (the real list has ``MA2`` but
neither ``MA`` nor ``M``) is added with a placeholder name saying so, so that every code's
hierarchy is closed. A code no loaded list knows raises :class:`UnknownHabitatCode` (a
:class:`~backend.core.errors.NotFound` and a ``KeyError``) naming the code and the lists loaded.
:data:`HABITAT_TYPES` stays the built-in list (the generated region's).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backend.core.errors import DataFormatError, NotFound
from backend.core.errors import Found as _D
from inference.data.tables import DEFAULT_ENCODING, records

BUILTIN = "built-in"


@dataclass(frozen=True)
class HabitatType:
    code: str
    name: str
    level: int
    parent: str | None  # the code one level up (``MA`` for ``MA2``, whether a list has it or not)
    revision: int = 2021
    source: str = BUILTIN  # the list it comes from: "built-in" or a loaded file's name


# What read_eunis_codes returns (the readers' name for it).
EunisHabitat = HabitatType


class UnknownHabitatCode(NotFound, KeyError):
    """A EUNIS code no loaded list knows (a ``KeyError`` too, as the lookup always raised)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


# (code, name). Level and parent are derived from the code, see _derive.
_TYPES_2021: tuple[tuple[str, str], ...] = (
    ("Q", "Wetlands"),
    ("Q1", "Raised and blanket bogs"),
    ("Q11", "Raised bog"),
    ("Q2", "Valley mires, poor fens and transition mires"),
    ("Q22", "Poor fen"),
    ("Q24", "Intermediate fen and soft-water spring mire"),
    ("Q4", "Base-rich fens and calcareous spring mires"),
    ("Q43", "Tall-sedge base-rich fen"),
    ("Q5", "Helophyte beds"),
    ("Q51", "Tall-helophyte bed"),
    ("Q53", "Tall-sedge bed"),
    ("R", "Grasslands and lands dominated by forbs, mosses or lichens"),
    ("R1", "Dry grasslands"),
    ("R1A", "Semi-dry perennial calcareous grassland (meadow steppe)"),
    ("R1M", "Lowland to montane, dry to mesic grassland usually dominated by Nardus stricta"),
    ("R2", "Mesic grasslands"),
    ("R21", "Mesic permanent pasture of lowlands and mountains"),
    ("R22", "Low and medium altitude hay meadow"),
    ("R23", "Mountain hay meadow"),
    ("R3", "Seasonally wet and wet grasslands"),
    ("R35", "Moist or wet mesotrophic to eutrophic hay meadow"),
    ("R36", "Moist or wet mesotrophic to eutrophic pasture"),
    ("R37", "Temperate and boreal moist or wet oligotrophic grassland"),
    ("R5", "Woodland fringes and clearings and tall forb stands"),
    ("R51", "Thermophilous forest fringe of base-rich soils"),
    ("R52", "Forest fringe of acidic nutrient-poor soils"),
    ("R55", "Lowland moist or wet tall-herb and fern fringe"),
    ("R57", "Herbaceous forest clearing vegetation"),
    ("S", "Heathlands, scrub and tundra"),
    ("S3", "Temperate and Mediterranean-montane scrub"),
    ("S32", "Temperate Rubus scrub"),
    ("S35", "Temperate and submediterranean thorn scrub"),
    ("S37", "Corylus avellana scrub"),
    ("S4", "Temperate heathland"),
    ("S41", "Wet heath"),
    ("S42", "Dry heath"),
    ("S9", "Riverine and fen scrub"),
    ("S91", "Temperate riparian scrub"),
    ("S92", "Salix fen scrub"),
    ("T", "Forests and other wooded land"),
    ("T1", "Broadleaved deciduous forests"),
    ("T11", "Temperate Salix and Populus riparian forest"),
    ("T12", "Alnus glutinosa-Alnus incana forest on riparian and mineral soils"),
    ("T13", "Temperate hardwood riparian forest"),
    ("T17", "Fagus forest on non-acid soils"),
    ("T18", "Fagus forest on acid soils"),
    ("T19", "Temperate and submediterranean thermophilous deciduous forest"),
    ("T1B", "Acidophilous Quercus forest"),
    ("T1E", "Carpinus and Quercus mesic deciduous forest"),
    ("T1F", "Ravine forest"),
    ("T3", "Coniferous forests"),
    ("T31", "Temperate mountain Picea forest"),
    ("T32", "Temperate mountain Abies forest"),
    ("T36", "Temperate and submediterranean montane Pinus sylvestris-Pinus nigra forest"),
    ("T3M", "Coniferous plantation of non site-native trees"),
    ("T4", "Lines of trees, small anthropogenic forests, recently felled forest, early-stage forest and coppice"),
    ("T41", "Early-stage natural and semi-natural forest and regrowth"),
    ("T43", "Recently felled areas"),
    ("U", "Inland habitats with no or little soil and mostly with sparse vegetation"),
    ("U2", "Screes"),
    ("U23", "Temperate, lowland to montane siliceous scree"),
    ("U27", "Temperate, lowland to montane base-rich scree"),
    ("U3", "Inland cliffs, rock pavements and outcrops"),
    ("U33", "Temperate, lowland to montane siliceous inland cliff"),
    ("U37", "Temperate, lowland to montane base-rich inland cliff"),
    ("V", "Vegetated man-made habitats"),
    ("V1", "Arable land and market gardens"),
    ("V11", "Intensive unmixed crops"),
    ("V13", "Arable land with unmixed crops grown by low-intensity agricultural methods"),
    ("V15", "Bare tilled, fallow or recently abandoned arable land"),
    ("V2", "Cultivated areas of gardens and parks"),
    ("V22", "Small-scale ornamental and domestic garden area"),
    ("V3", "Artificial grasslands and herb-dominated habitats"),
    ("V31", "Agriculturally-improved, re-seeded and heavily fertilised grassland, including sports fields and grass lawns"),
    ("V38", "Dry perennial anthropogenic herbaceous vegetation"),
    ("V39", "Mesic perennial anthropogenic herbaceous vegetation"),
    ("V4", "Hedgerows"),
    ("V43", "Species-rich hedgerows of native species"),
    ("V5", "Shrub plantations"),
    ("V54", "Vineyards"),
    ("V6", "Tree dominated man-made habitats"),
    ("V61", "Broadleaved fruit and nut tree orchards"),
)

# Inland waters and constructed habitats: EUNIS 2012 (not part of the 2021 terrestrial revision).
_TYPES_2012: tuple[tuple[str, str], ...] = (
    ("C", "Inland surface waters"),
    ("C1", "Surface standing waters"),
    ("C1.3", "Permanent eutrophic lakes, ponds and pools"),
    ("C2", "Surface running waters"),
    ("C2.3", "Permanent non-tidal, smooth-flowing watercourses"),
    ("J", "Constructed, industrial and other artificial habitats"),
    ("J1", "Buildings of cities, towns and villages"),
    ("J1.1", "Residential buildings of city and town centres"),
    ("J1.2", "Residential buildings of villages and urban peripheries"),
    ("J4", "Transport networks and other constructed hard-surfaced areas"),
    ("J4.2", "Road networks"),
)


def code_level(code: str) -> int:
    """EUNIS level of a code: the number of characters after the first letter, plus 1.

    ``R`` -> 1, ``R2`` -> 2, ``R22`` -> 3, ``MA2`` -> 3, ``MA22`` -> 4, ``MA221`` -> 5 (in
    EUNIS 2021 the marine ``M`` is level 1 and ``MA`` level 2, so this holds for both). A dot
    (EUNIS 2012 style, ``C1.3``) is not counted: ``C1.3`` -> 3, ``C1.31`` -> 4.
    """
    return len(code.replace(".", ""))


def code_parent(code: str) -> str | None:
    """The code one level up (``R22`` -> ``R2``, ``MA2`` -> ``MA``, ``C1.3`` -> ``C1``), None
    for level 1."""
    return code[:-1].rstrip(".") or None


def code_ancestors(code: str) -> list[str]:
    """All codes above, nearest first: ``MA221`` -> ``[MA22, MA2, MA, M]``."""
    out: list[str] = []
    p = code_parent(code)
    while p:
        out.append(p)
        p = code_parent(p)
    return out


# ---------------------------------------------------------------------------------------------
# EUNIS list files (Code,Name)

_EUNIS_RE = re.compile(r"^[A-Z][A-Z0-9]*(\.[A-Z0-9]+)?$")
_DEFAULT_ENCODING = DEFAULT_ENCODING
_COLUMNS = ("Code", "Name")


def _code_name_rows(path: str, encoding: str) -> list[tuple[int, str, str]]:
    """(line, code, name) of every record of a ``Code,Name`` CSV, stripped; the line is the
    record's first physical line (header = its line)."""
    what = "EUNIS Code,Name CSV"
    index: list[int] = []

    def check(header: list[str], line: int, first: str) -> None:
        for other, sep in ((";", "semicolon"), ("\t", "tab")):
            if len(header) == 1 and other in header[0]:
                raise DataFormatError(path, f"a comma-separated header ({what}); this header looks {sep}-separated",
                                      line=line, got=first)
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise DataFormatError(path, f"a column {missing[0]!r} in the header (required: 'Code', 'Name')",
                                  line=line, field=missing[0], got=_D(f"columns {', '.join(map(repr, header))}"))
        index[:] = [header.index(c) for c in _COLUMNS]

    return [(line, row[index[0]].strip(), row[index[1]].strip())
            for line, row in records(path, header=check, encoding=encoding, what=what,
                                     empty="a header line with column(s) 'Code', 'Name'")]


def read_eunis_codes(path: str | os.PathLike, *, encoding: str = _DEFAULT_ENCODING) -> dict[str, HabitatType]:
    """Read a EUNIS code list (CSV with a ``Code,Name`` header, as the EUNIS 2021 list
    ``eunis2021_habitats.csv``) -> code -> habitat, in file order.

    Codes are an upper-case letter then letters/digits (``R``, ``R2``, ``R1A``, ``MA221``; a
    EUNIS 2012 style dot, ``C1.3``, is accepted, revision 2012) and unique; names are stripped
    (the real file has trailing spaces on 30 names) and non-empty. Level and parent come from the
    code (:func:`code_level`, :func:`code_parent`); the parent may be absent from the file
    (``MA`` for ``MA2``). ``source`` is the file's name. A :class:`DataFormatError` names the
    file, the line and the field of anything else.
    """
    p = str(path)
    source = Path(p).name
    out: dict[str, HabitatType] = {}
    for line, code, name in _code_name_rows(p, encoding):
        if not _EUNIS_RE.match(code):
            raise DataFormatError(p, "a EUNIS code (an upper-case letter, then letters/digits, e.g. 'R22', "
                                  "'MA221', 'C1.3')", line=line, field="Code", got=code)
        if code in out:
            raise DataFormatError(p, "each code once", line=line, field="Code", got=code)
        if not name:
            raise DataFormatError(p, "a habitat name", line=line, field="Name", got=name)
        out[code] = HabitatType(code, name, code_level(code), code_parent(code), 2012 if "." in code else 2021,
                                source)
    return out


# ---------------------------------------------------------------------------------------------
# the table

class HabitatTable:
    """The EUNIS habitat types a process knows: a code -> :class:`HabitatType` table whose
    hierarchy is closed (every parent is in it), grown by :meth:`add` / :meth:`load` and never
    shrunk. The module functions (:func:`habitat`, :func:`at_level`, ...) answer from the
    process-wide one, :func:`table`."""

    def __init__(self, types: Iterable[HabitatType] = ()) -> None:
        self._types: dict[str, HabitatType] = {}
        self._files: dict[str, tuple[tuple[int, int], list[str]]] = {}  # resolved path -> (stat, codes)
        self._lock = threading.RLock()
        self.add(types)

    def copy(self) -> HabitatTable:
        new = HabitatTable()
        new._types, new._files = dict(self._types), dict(self._files)
        return new

    def add(self, types: Iterable[HabitatType]) -> None:
        """Add habitat types (a new code is appended, a known code takes the new name, level,
        parent and source); ancestors missing from the table get a placeholder name."""
        with self._lock:
            for h in types:
                self._types[h.code] = h
            for h in list(self._types.values()):
                child = h
                for code in code_ancestors(h.code):
                    if code not in self._types:
                        name = f"(not in {h.source}: parent of {child.code})"
                        self._types[code] = HabitatType(code, name, code_level(code), code_parent(code),
                                                        h.revision, h.source)
                    child = self._types[code]

    def load(self, path: str | os.PathLike, *, encoding: str = _DEFAULT_ENCODING) -> list[str]:
        """Load a EUNIS list file (``Code,Name``, :func:`read_eunis_codes`) into the table; the
        file's codes in file order. Idempotent: a file already loaded and unchanged since (same
        size and modification time) is not read again."""
        key = str(Path(path).resolve())
        st = os.stat(path) if os.path.exists(path) else None
        stamp = (st.st_mtime_ns, st.st_size) if st else (0, 0)
        with self._lock:
            done = self._files.get(key)
            if done is not None and done[0] == stamp:
                return list(done[1])
            codes = read_eunis_codes(path, encoding=encoding)
            self.add(codes.values())
            self._files[key] = (stamp, list(codes))
            return list(codes)

    @property
    def files(self) -> list[str]:
        """The EUNIS list files loaded (resolved paths, in load order)."""
        return list(self._files)

    def __contains__(self, code: object) -> bool:
        return code in self._types

    def __len__(self) -> int:
        return len(self._types)

    def habitat(self, code: str) -> HabitatType:
        try:
            return self._types[code]
        except (KeyError, TypeError):
            lists = ", ".join(Path(f).name for f in self._files)
            raise UnknownHabitatCode(
                f"unknown EUNIS code {code!r}: not in the built-in list"
                + (f" nor in the loaded list(s) {lists}" if lists else "")
                + "; load the EUNIS list that has it first (inference.data.eunis.load_list(path), e.g. the "
                "EUNIS 2021 list eunis2021_habitats.csv: a raster region's sources `habitats:` file, or "
                "`geoflora train plantbert --eunis FILE`)") from None

    def ancestors(self, code: str) -> list[str]:
        return code_ancestors(self.habitat(code).code)

    def at_level(self, code: str, lvl: int) -> str:
        h = self.habitat(code)
        if lvl > h.level:
            raise ValueError(f"{code} is level {h.level}, cannot go down to level {lvl}")
        while h.level > lvl:
            h = self.habitat(h.parent)  # type: ignore[arg-type]
        return h.code

    def children(self, code: str) -> list[HabitatType]:
        return [h for h in self._types.values() if h.parent == code]

    def all_types(self, lvl: int | None = None) -> Iterator[HabitatType]:
        return (h for h in list(self._types.values()) if lvl is None or h.level == lvl)


def _builtin() -> list[HabitatType]:
    out = [HabitatType(code, name, code_level(code), code_parent(code), revision)
           for revision, types in ((2021, _TYPES_2021), (2012, _TYPES_2012)) for code, name in types]
    known = {h.code for h in out}
    for h in out:  # the built-in hierarchy must be closed: every parent is listed
        if h.parent is not None and h.parent not in known:
            raise AssertionError(f"EUNIS table: parent {h.parent} of {h.code} missing")
    return out


HABITAT_TYPES: tuple[HabitatType, ...] = tuple(_builtin())
_TABLE = HabitatTable(HABITAT_TYPES)


def table() -> HabitatTable:
    """The process-wide habitat table (the built-in list plus the lists loaded so far)."""
    return _TABLE


def load_list(path: str | os.PathLike, *, encoding: str = _DEFAULT_ENCODING) -> list[str]:
    """Make a EUNIS list file's codes known to :func:`habitat`, :func:`at_level`, ... (see the
    module docstring); returns the file's codes. Idempotent."""
    return _TABLE.load(path, encoding=encoding)


def habitat(code: str) -> HabitatType:
    """The habitat type of ``code`` (:class:`UnknownHabitatCode` if no loaded list has it)."""
    return _TABLE.habitat(code)


def parent(code: str) -> str | None:
    return habitat(code).parent


def level(code: str) -> int:
    return habitat(code).level


def ancestors(code: str) -> list[str]:
    """Codes from the direct parent up to level 1: ``ancestors('R22') == ['R2', 'R']``."""
    return _TABLE.ancestors(code)


def at_level(code: str, lvl: int) -> str:
    """The ancestor (or self) of ``code`` at level ``lvl``: ``at_level('R22', 1) == 'R'``."""
    return _TABLE.at_level(code, lvl)


def children(code: str) -> list[HabitatType]:
    return _TABLE.children(code)


def all_types(lvl: int | None = None) -> Iterator[HabitatType]:
    """Every known habitat type (optionally only one level), in table order: the built-in list,
    then the codes the loaded lists added."""
    return _TABLE.all_types(lvl)
