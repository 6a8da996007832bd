"""Built-in EUNIS habitat hierarchy: the level 1-3 types a central-European region needs.

Codes and names of groups N, Q, R, S, T, U and V are those of the EUNIS 2021 terrestrial list
(EEA, EUNIS-ESy 2021-06-01). The 2021 revision did not cover inland surface waters and constructed
habitats, so those (C, J) keep their EUNIS 2012 codes and names, flagged ``revision=2012``; their
level-3 codes carry a dot (``C1.3``). Levels follow the code hierarchy: ``R22 -> R2 -> R``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class HabitatType:
    code: str
    name: str
    level: int
    parent: str | None
    revision: int = 2021


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


def _build() -> dict[str, HabitatType]:
    table: dict[str, HabitatType] = {}
    for revision, types in ((2021, _TYPES_2021), (2012, _TYPES_2012)):
        for code, name in types:
            table[code] = HabitatType(code, name, code_level(code), code_parent(code), revision)
    for h in table.values():  # the hierarchy must be closed: every parent is listed
        if h.parent is not None and h.parent not in table:
            raise AssertionError(f"EUNIS table: parent {h.parent} of {h.code} missing")
    return table


_TABLE = _build()


def habitat(code: str) -> HabitatType:
    """The habitat type of ``code`` (KeyError if it is not in the built-in list)."""
    try:
        return _TABLE[code]
    except KeyError:
        raise KeyError(f"unknown EUNIS code {code!r}") from None


def parent(code: str) -> str | None:
    return habitat(code).parent


def level(code: str) -> int:
    return habitat(code).level


def ancestors(code: str) -> list[str]:
    """Codes from the direct parent up to level 1: ``ancestors('R22') == ['R2', 'R']``."""
    return code_ancestors(habitat(code).code)


def at_level(code: str, lvl: int) -> str:
    """The ancestor (or self) of ``code`` at level ``lvl``: ``at_level('R22', 1) == 'R'``."""
    h = habitat(code)
    if lvl > h.level:
        raise ValueError(f"{code} is level {h.level}, cannot go down to level {lvl}")
    while h.level > lvl:
        h = habitat(h.parent)  # type: ignore[arg-type]
    return h.code


def children(code: str) -> list[HabitatType]:
    return [h for h in _TABLE.values() if h.parent == code]


def all_types(lvl: int | None = None) -> Iterator[HabitatType]:
    """Every built-in habitat type (optionally only one level), in table order."""
    return (h for h in _TABLE.values() if lvl is None or h.level == lvl)


HABITAT_TYPES: tuple[HabitatType, ...] = tuple(_TABLE.values())
