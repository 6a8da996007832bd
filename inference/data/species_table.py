"""Species tables: a researcher's species table joined with real attribute lists by canonical name.

A real region starts from a species table (the id the SDM uses, GeoPlant ``speciesId``, and the
scientific name). :func:`import_species` joins attribute lists to it and writes the **GeoFlora
species table** (:data:`SPECIES_TABLE_COLUMNS`), which :func:`read_species_table` reads into
:class:`~inference.data.region.Species` records (the generated region's ``species/species.csv``
has the same columns plus a few more and reads the same way).

Names are joined by canonical name (:func:`canonical_name`: genus, epithet and an infraspecific
rank and epithet; authors, years and qualifiers removed) compared through :func:`name_key`, which
also drops the rank marker, the hybrid sign and diacritics and folds case, as GBIF's
``canonicalName`` column does (``Iris humilis arenaria`` for ``Iris humilis subsp. arenaria``).

The lists (each reader returns a :class:`SpeciesList`: canonical name -> attribute):

* :func:`read_directive_list`, :func:`read_invasive_list`: the Habitats Directive Art. 17 and the
  Union invasive lists as GBIF-matched CSVs (read by :func:`inference.data.readers.read_species_list`;
  kingdom Plantae only);
* :func:`read_redlist`: an IUCN / European Red List CSV (a name and a category column);
* :func:`read_growth_form_list`: growth form and / or woodiness, optionally family and conifer;
* :func:`read_endemic_list`: a name column, every listed species endemic;
* :func:`read_trait_table`: species trait summaries in the PlantTraitNet columns
  ``{trait}_median, _sd, _lowerbound, _upperbound`` (Height, LeafArea, SLA, Leaf_N).

Every reader raises :class:`DataFormatError` naming the file, the line and what it expected.
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.core.atomic import atomic_open
from backend.core.errors import DataFormatError
from backend.core.errors import Found as _D
from inference.data.interface import Species, TraitDistribution
from inference.data.readers import (
    _DEFAULT_ENCODING,
    TRAIT_STATS,
    TRAITS,
    PathLike,
    _bad,
    _float_column,
    _int_column,
    _read_table,
    _Table,
    read_species_list,
)

__all__ = [
    "BASE_COLUMNS",
    "CONIFER_FAMILIES",
    "GrowthForm",
    "IUCN_CATEGORIES",
    "ImportReport",
    "ListReport",
    "SPECIES_TABLE_COLUMNS",
    "SpeciesList",
    "TRAIT_COLUMNS",
    "TableSpecies",
    "canonical_name",
    "import_species",
    "name_key",
    "normalise_growth_form",
    "normalise_iucn",
    "read_directive_list",
    "read_endemic_list",
    "read_growth_form_list",
    "read_invasive_list",
    "read_redlist",
    "read_species_table",
    "read_table_species",
    "read_trait_table",
    "trait_distribution",
]

BASE_COLUMNS = ("id", "name", "genus", "family", "growth_form", "iucn", "eu_directive", "invasive", "woody",
                "tree", "endemic", "conifer")
TRAIT_COLUMNS = tuple(f"{t}_{s}" for t in TRAITS for s in TRAIT_STATS)
SPECIES_TABLE_COLUMNS = BASE_COLUMNS + TRAIT_COLUMNS
IUCN_CATEGORIES = ("EX", "EW", "RE", "CR", "EN", "VU", "NT", "LC", "DD", "NE")
CONIFER_FAMILIES = frozenset({"Pinaceae", "Cupressaceae", "Taxaceae", "Podocarpaceae", "Araucariaceae",
                              "Sciadopityaceae", "Cephalotaxaceae"})
# growth form -> plant functional type, as the generator maps them (inference/data/synth/flora.py)
_PFT = {"tree": "tree", "shrub": "shrub", "herb": "herb", "grass": "grass", "fern": "herb"}
_Z95 = 1.959963984540054  # lower and upper bounds read as the 2.5 % and 97.5 % quantiles


# --------------------------------------------------------------------------------------------
# canonical names
# --------------------------------------------------------------------------------------------

_RANK_MARKERS = {
    "subsp.": "subsp.", "subsp": "subsp.", "ssp.": "subsp.", "ssp": "subsp.", "subspecies": "subsp.",
    "var.": "var.", "var": "var.", "variety": "var.", "v.": "var.",
    "f.": "f.", "fo.": "f.", "fma.": "f.", "forma": "f.",
    "nothosubsp.": "nothosubsp.", "nothovar.": "nothovar.",
}
_HYBRID_SIGNS = ("×", "x", "X", "✕", "╳")
# words that start lower case in author strings ("de Candolle", "ex", "in", "van Tieghem")
_PARTICLES = frozenset({"ex", "in", "et", "and", "de", "del", "della", "der", "den", "des", "di", "da", "do",
                        "du", "la", "le", "van", "von", "vander", "zu", "y", "non", "nec", "sensu", "emend",
                        "auct", "hort", "nom", "comb", "stat", "nov", "sp", "spp"})
# determination qualifiers and sensu notes, removed before parsing
_QUALIFIER_RE = re.compile(
    r"(?<!\S)(?:s\.\s*l(?:at)?\.|s\.\s*str\.|s\.\s*s\.|s\.\s*lato|sensu\s+lato|sensu\s+stricto|"
    r"agg\.|aggr\.|agg|coll\.|cf\.|aff\.|cf|aff|sp\.\s*nov\.)(?!\S)",
    re.IGNORECASE,
)
_GENUS_ONLY = frozenset({"sp.", "spp.", "sp", "spp", "species"})


def _fold_space(text: str) -> str:
    text = unicodedata.normalize("NFC", str(text))
    return " ".join(text.replace("\u00a0", " ").replace("\u2009", " ").split())


def _is_word(tok: str) -> bool:
    """Letters, optionally joined by hyphens ("regis-stephani")."""
    parts = tok.split("-")
    return bool(tok) and all(p.isalpha() for p in parts) and parts[0] != ""


def _is_epithet(tok: str, cased: bool, shouted: bool = False) -> bool:
    """Could ``tok`` be an epithet? In a name with upper and lower case letters an epithet starts
    lower case (a capitalised word is an author), or, with ``shouted`` (the specific epithet's
    place), is all capitals ("Abies ALBA"); in a one-case name its place decides."""
    if not _is_word(tok) or len(tok) < 2 or tok.lower() in _PARTICLES:
        return False
    if not cased:
        return True
    return tok[0].islower() or (shouted and len(tok) >= 3 and tok.isupper())


def _split_hybrid_signs(text: str) -> list[str]:
    # "×Gymnigritella" / "Ophrys ×melitensis" / "Mentha × piperita" -> separate "×" tokens
    text = re.sub(r"[×✕╳]", " × ", text)
    return text.split()


def _parse(tokens: list[str], cased: bool) -> tuple[str, int] | None:
    """Parse one name from ``tokens``: (canonical name, tokens used) or None."""
    n = len(tokens)
    i = 0
    hybrid_genus = False
    if i < n and tokens[i] in _HYBRID_SIGNS and i + 1 < n and _is_word(tokens[i + 1]):
        hybrid_genus, i = True, i + 1
    if i >= n or not _is_word(tokens[i]):
        return None
    genus = tokens[i]
    genus = genus[0].upper() + genus[1:].lower()
    i += 1
    # a subgenus in parentheses: "Ranunculus (Batrachium) aquatilis"
    if (i + 1 < n and tokens[i].startswith("(") and tokens[i].endswith(")") and _is_word(tokens[i][1:-1])
            and tokens[i][1].isupper() and _is_epithet(tokens[i + 1], cased)):
        i += 1
    hybrid_species = False
    if i + 1 < n and tokens[i] in _HYBRID_SIGNS and _is_epithet(tokens[i + 1], cased, True):
        hybrid_species, i = True, i + 1
    if i >= n or not _is_epithet(tokens[i], cased, True):
        return ("×" if hybrid_genus else "") + genus, i
    epithet = tokens[i].lower()
    i += 1
    out = ("×" if hybrid_genus else "") + genus + " " + ("×" if hybrid_species else "") + epithet
    # infraspecific part: a rank marker (possibly after the species' authors) and its epithet, or
    # an unmarked third epithet right after the species (GBIF canonicalName style)
    if i < n and cased and _is_epithet(tokens[i], cased) and tokens[i].lower() not in _RANK_MARKERS:
        return out + " " + tokens[i].lower(), i + 1
    j = i
    while j < n:
        tok = tokens[j]
        if tok in _HYBRID_SIGNS:   # a hybrid formula starts: the caller handles it
            break
        marker = _RANK_MARKERS.get(tok.lower())
        if marker and j + 1 < n and _is_epithet(tokens[j + 1], cased, True):
            return out + f" {marker} " + tokens[j + 1].lower(), j + 2
        j += 1
    return out, j


def canonical_name(name: str) -> str:
    """The GBIF-style canonical name of a scientific name.

    Genus and specific epithet, plus an infraspecific rank marker and epithet (``subsp.``,
    ``var.``, ``f.``; ``ssp.``, ``subspecies``, ``variety``, ``forma`` are normalised to these);
    author strings, years, synonyms in parentheses, ``s.l.`` / ``s.str.`` / ``agg.`` / ``cf.``
    removed; the genus capitalised, epithets lower case, whitespace folded. The hybrid sign is
    kept and written as GBIF writes scientific names, ``×`` against the hybrid name
    (``Mentha ×piperita``, ``×Gymnigritella runei``; ``Mentha x piperita`` reads the same); a
    hybrid formula keeps both parents (``Salix alba × Salix fragilis``). ``Genus sp.`` and a
    genus alone give the genus. An empty name gives ""; text that starts with no word is
    returned whitespace-folded.

    >>> canonical_name("Centaurea jacea subsp. angustifolia (DC.) Gremli")
    'Centaurea jacea subsp. angustifolia'
    """
    text = _fold_space(name)
    if not text:
        return ""
    text = _QUALIFIER_RE.sub(" ", text)
    tokens = _split_hybrid_signs(text)
    letters = [c for c in text if c.isalpha()]
    cased = any(c.isupper() for c in letters) and any(c.islower() for c in letters)
    tokens = [t for t in tokens if t.lower() not in _GENUS_ONLY] or tokens
    parsed = _parse(tokens, cased)
    if parsed is None:
        return _fold_space(name)
    out, used = parsed
    # hybrid formula: "Salix alba × fragilis" / "Salix alba L. × Salix fragilis L."
    rest = tokens[used:]
    k = next((j for j, t in enumerate(rest) if t in _HYBRID_SIGNS), None)
    if k is not None and " " in out and k + 1 < len(rest):
        after = rest[k + 1:]
        if _is_epithet(after[0], cased):               # "× fragilis": the same genus
            after = [out.split(" ")[0].lstrip("×"), *after]
        second = _parse(after, cased)
        if second is not None and " " in second[0]:
            out = f"{out} × {second[0]}"
    return out


def name_key(name: str) -> str:
    """The key names are matched on: :func:`canonical_name` without the rank marker, the hybrid
    sign and diacritics, in lower case (``Iris humilis subsp. arenaria`` and GBIF's canonicalName
    ``Iris humilis arenaria`` share one key, as do ``Isoëtes`` and ``Isoetes``)."""
    canon = canonical_name(name)
    words = [w.lstrip("×") for w in canon.split(" ") if w not in _RANK_MARKERS.values() and w != "×"]
    text = " ".join(w for w in words if w)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.casefold()


def _species_key(canon: str) -> str | None:
    """The :func:`name_key` of the species of an infraspecific canonical name (None for a
    species, a genus or a hybrid formula)."""
    words = [w for w in canon.split(" ") if w not in _RANK_MARKERS.values()]
    return name_key(" ".join(words[:2])) if len(words) > 2 and " × " not in canon else None


def _genus_key(name: str) -> str:
    return name_key(name).split(" ")[0] if name else ""


# --------------------------------------------------------------------------------------------
# lists
# --------------------------------------------------------------------------------------------

@dataclass
class SpeciesList(Mapping):
    """A list read from a file: canonical name -> attribute (``lst["Abies alba Mill."]`` looks
    the name up through :func:`name_key`).

    ``rows``: the rows read (plants only, for lists with a kingdom); ``aliases``: other names of
    an entry (the verbatim legal name of a GBIF-matched row) -> its canonical name; ``genera``:
    genus -> attribute for whole-genus entries (``Lycopodium spp.``); ``families``: canonical
    name -> family where the list names one.
    """

    kind: str
    path: str
    rows: int
    values: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    genera: dict[str, Any] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._keys: dict[str, str] = {}
        for canon in self.values:
            self._keys.setdefault(name_key(canon), canon)
        for alias, canon in self.aliases.items():
            self._keys.setdefault(name_key(alias), canon)
        self._genus_keys = {_genus_key(g): g for g in self.genera}

    def __getitem__(self, name: str) -> Any:
        canon = self._keys.get(name_key(name))
        if canon is None:
            raise KeyError(name)
        return self.values[canon]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def entry_for(self, key: str) -> str | None:
        """The canonical name of the entry with this :func:`name_key`, or None."""
        return self._keys.get(key)

    def genus_entry(self, genus_key: str) -> str | None:
        return self._genus_keys.get(genus_key)


def _add(values: dict, canon: str, value: Any, merge=None) -> None:
    if canon in values and merge is not None:
        values[canon] = merge(values[canon], value)
    else:
        values.setdefault(canon, value)


def _read_gbif_list(path: PathLike, kind: str, encoding: str) -> SpeciesList:
    rows = read_species_list(path, "habitats_directive" if kind == "directive" else "invasive", encoding=encoding)
    values: dict[str, bool] = {}
    aliases: dict[str, str] = {}
    genera: dict[str, bool] = {}
    families: dict[str, str] = {}
    for r in rows:
        verbatim = canonical_name(r.verbatim_name)
        words = r.verbatim_name.split()
        if len(words) == 2 and words[-1].lower() in _GENUS_ONLY:
            genera[verbatim] = True          # "Lycopodium spp.": every species of the genus
            continue
        if r.match_type.upper() == "HIGHERRANK" or not (r.canonical_name or r.scientific_name):
            # GBIF matched a broader taxon (a genus, a family, the species of a listed
            # subspecies): the listed taxon is the verbatim name
            canon = verbatim
        else:
            canon = canonical_name(r.scientific_name) if r.scientific_name else ""
            if r.canonical_name and name_key(canon) != name_key(r.canonical_name):
                canon = canonical_name(r.canonical_name)
            if verbatim and name_key(verbatim) != name_key(canon):
                aliases.setdefault(verbatim, canon)
        if not canon:
            continue
        values[canon] = True
        if r.family and r.match_type.upper() != "HIGHERRANK":
            families.setdefault(canon, r.family)
    return SpeciesList(kind, str(path), len(rows), values, aliases, genera, families)


def read_directive_list(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> SpeciesList:
    """The Habitats Directive Art. 17 checklist matched to GBIF (plants): canonical name -> True.

    Each Plantae row is keyed by its GBIF name (``canonicalName``; the canonical name of
    ``scientificName`` when they agree, which keeps the rank marker), with its verbatim legal name
    as an alias; a ``HIGHERRANK`` row (GBIF matched only a genus, a family or the species of a
    listed subspecies) is keyed by its verbatim name; ``Genus spp.`` rows list the whole genus.
    """
    return _read_gbif_list(path, "directive", encoding)


def read_invasive_list(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> SpeciesList:
    """The invasive alien species of Union concern matched to GBIF (plants): canonical name -> True,
    keyed as :func:`read_directive_list` keys its rows."""
    return _read_gbif_list(path, "invasive", encoding)


def _norm_header(h: str) -> str:
    return re.sub(r"[^a-z0-9]", "", h.lower())


def _find_column(t: _Table, aliases: Sequence[str]) -> str | None:
    """The first header matching one of ``aliases`` (case, spaces, ``_`` and ``-`` ignored)."""
    by_norm: dict[str, str] = {}
    for h in t.header:
        by_norm.setdefault(_norm_header(h), h)
    for a in aliases:
        if _norm_header(a) in by_norm:
            return by_norm[_norm_header(a)]
    return None


def _require_column(t: _Table, aliases: Sequence[str], what: str) -> str:
    col = _find_column(t, aliases)
    if col is None:
        raise DataFormatError(
            t.path, f"a {what} column in the header ({' / '.join(map(repr, aliases))})", line=_header_line(t),
            got=_D(f"columns {', '.join(map(repr, t.header))}"),
        )
    return col


def _header_line(t: _Table) -> int:
    with open(t.path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            if raw.strip(b"\xef\xbb\xbf \t\r\n,;"):
                return i
    return 1


def _load(path: PathLike, aliases: Sequence[str], what: str, encoding: str) -> _Table:
    return _read_table(path, required=(), optional=aliases, encoding=encoding, what=what, keep_all=True)


_NAME_ALIASES = ("scientificName", "scientific_name", "taxonName", "taxon_name", "species", "speciesName",
                 "species_name", "name", "taxon", "binomial", "AccSpeciesName")
_KINGDOM_ALIASES = ("kingdom", "taxonomicRankKingdom", "kingdomName")


def _names(t: _Table, col: str) -> Iterator[tuple[int, str]]:
    """(row index, canonical name) of the rows with a name, plants only where there is a kingdom
    column."""
    kcol = _find_column(t, _KINGDOM_ALIASES)
    for i, raw in enumerate(t.columns[col]):
        if kcol is not None and t.columns[kcol][i].lower() not in ("plantae", "plants", "plant"):
            continue
        canon = canonical_name(raw)
        if canon:
            yield i, canon


def _n_plants(t: _Table) -> int:
    kcol = _find_column(t, _KINGDOM_ALIASES)
    if kcol is None:
        return len(t)
    return sum(v.lower() in ("plantae", "plants", "plant") for v in t.columns[kcol])


_IUCN_WORDS = {
    "ex": "EX", "extinct": "EX",
    "ew": "EW", "extinct in the wild": "EW",
    "re": "RE", "regionally extinct": "RE",
    "cr": "CR", "critically endangered": "CR",
    "en": "EN", "endangered": "EN",
    "vu": "VU", "vulnerable": "VU",
    "nt": "NT", "near threatened": "NT", "lr/nt": "NT", "lower risk/near threatened": "NT",
    "lr/cd": "NT", "lower risk/conservation dependent": "NT", "cd": "NT",
    "lc": "LC", "least concern": "LC", "lr/lc": "LC", "lower risk/least concern": "LC",
    "dd": "DD", "data deficient": "DD",
    "ne": "NE", "not evaluated": "NE", "na": "NE", "not applicable": "NE",
}
# most severe first: the category kept when a list gives a name several categories
_SEVERITY = {c: i for i, c in enumerate(("EX", "EW", "RE", "CR", "EN", "VU", "NT", "DD", "LC", "NE"))}


def normalise_iucn(value: str) -> str | None:
    """An IUCN category code (EX, EW, RE, CR, EN, VU, NT, LC, DD, NE) from a code or its words
    ("Critically Endangered", "CR (PE)", "LR/nt", "Not Applicable" -> NE); None if not one."""
    text = re.sub(r"\([^)]*\)", " ", str(value)).lower().replace("_", " ").replace("-", " ")
    text = " ".join(re.sub(r"\s*/\s*", "/", text).split())
    return _IUCN_WORDS.get(text)


def read_redlist(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> SpeciesList:
    """An IUCN / European Red List CSV: canonical name -> category code.

    Columns: a name (``scientificName``, ``taxonName``, ``species``, ``speciesName``, ``name``,
    ...) and a category (``category``, ``redlistCategory``, ``europeanRegionalRedListCategory``,
    ``euRegionalRedListCategory``, ``iucn``, ...; the first found in that order), codes or words
    (see :func:`normalise_iucn`). Rows with an empty category are skipped; with a kingdom column
    only plants are read. A name listed with several categories keeps the most severe
    (EX > EW > RE > CR > EN > VU > NT > DD > LC > NE).
    """
    cat_aliases = ("category", "redlistCategory", "redListCategory", "europeanRegionalRedListCategory",
                   "euRegionalRedListCategory", "iucnCategory", "iucn", "iucn_category")
    t = _load(path, (*_NAME_ALIASES, *cat_aliases), "Red List CSV", encoding)
    name_col = _require_column(t, _NAME_ALIASES, "scientific name")
    cat_col = _require_column(t, cat_aliases, "Red List category")
    values: dict[str, str] = {}
    for i, canon in _names(t, name_col):
        raw = t.columns[cat_col][i]
        if raw == "":
            continue
        cat = normalise_iucn(raw)
        if cat is None:
            raise _bad(t, i, cat_col, f"an IUCN category ({', '.join(IUCN_CATEGORIES)} or its words, e.g. "
                                      f"'Critically Endangered')")
        _add(values, canon, cat, lambda a, b: a if _SEVERITY[a] <= _SEVERITY[b] else b)
    return SpeciesList("redlist", str(path), _n_plants(t), values)


_GROWTH_FORMS = {
    "tree": "tree", "trees": "tree", "t": "tree",
    "shrub": "shrub", "shrubs": "shrub", "subshrub": "shrub", "sub shrub": "shrub", "dwarf shrub": "shrub",
    "dwarfshrub": "shrub", "s": "shrub",
    "herb": "herb", "herbs": "herb", "forb": "herb", "forbs": "herb", "herbaceous": "herb", "h": "herb",
    "grass": "grass", "grasses": "grass", "graminoid": "grass", "graminoids": "grass", "g": "grass",
    "fern": "fern", "ferns": "fern", "pteridophyte": "fern", "f": "fern",
}
_WOODY_FORMS = {"tree": True, "shrub": True, "liana": True, "herb": False, "grass": False, "fern": False}
_TRUE = frozenset({"1", "yes", "y", "true", "t", "woody", "w", "semi-woody", "semiwoody", "conifer"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "non-woody", "nonwoody", "non woody", "herbaceous", "h"})


def normalise_growth_form(value: str) -> str:
    """``tree``, ``shrub``, ``herb``, ``grass`` or ``fern`` from their usual spellings (forb ->
    herb, graminoid -> grass, dwarf shrub -> shrub, ...); other forms lower case as given ("")."""
    text = " ".join(str(value).lower().replace("_", " ").replace("-", " ").split())
    return _GROWTH_FORMS.get(text, text)


@dataclass(frozen=True)
class GrowthForm:
    """What a growth-form list says of a species (None: the list does not say)."""

    growth_form: str        # normalised (see normalise_growth_form), "" when not given
    woody: bool | None
    tree: bool | None
    conifer: bool | None
    family: str


def _yes_no(t: _Table, i: int, col: str | None, what: str) -> bool | None:
    if col is None:
        return None
    v = t.columns[col][i].strip().lower()
    if v == "":
        return None
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _bad(t, i, col, f"{what} (yes / no, 1 / 0, true / false"
                          f"{', woody / non-woody / herbaceous' if what == 'woodiness' else ''}) or an empty field")


def _merge_growth(a: GrowthForm, b: GrowthForm) -> GrowthForm:
    """The first row that says something wins, field by field."""
    return GrowthForm(a.growth_form or b.growth_form, a.woody if a.woody is not None else b.woody,
                      a.tree if a.tree is not None else b.tree, a.conifer if a.conifer is not None else b.conifer,
                      a.family or b.family)


def read_growth_form_list(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> SpeciesList:
    """A growth-form / woodiness list: canonical name -> :class:`GrowthForm`.

    Columns: a name; a growth form (``growth_form``, ``growthForm``, ``PlantGrowthForm``,
    ``lifeForm``, ``habit``) and / or a woodiness (``woody``, ``woodiness``: yes / no, 1 / 0,
    woody / non-woody / herbaceous; semi-woody counts as woody); optional ``family`` and
    ``conifer`` (yes / no). Derived: ``tree`` = growth form tree; ``woody`` from the woodiness
    column, else from the growth form (tree, shrub, liana: woody; herb, grass, fern: not);
    ``conifer`` from the column, else from the family (:data:`CONIFER_FAMILIES`); a conifer is
    woody. A name on several rows takes, field by field, the first row that gives a value.
    """
    gf_aliases = ("growth_form", "growthForm", "growthform", "PlantGrowthForm", "lifeForm", "life_form", "habit")
    woody_aliases = ("woody", "woodiness", "PlantWoodiness")
    t = _load(path, (*_NAME_ALIASES, *gf_aliases, *woody_aliases, "family", "conifer"), "growth-form CSV", encoding)
    name_col = _require_column(t, _NAME_ALIASES, "scientific name")
    gf_col = _find_column(t, gf_aliases)
    woody_col = _find_column(t, woody_aliases)
    if gf_col is None and woody_col is None:
        _require_column(t, (*gf_aliases, *woody_aliases), "growth form or woodiness")
    fam_col = _find_column(t, ("family",))
    con_col = _find_column(t, ("conifer",))
    values: dict[str, GrowthForm] = {}
    for i, canon in _names(t, name_col):
        gf = normalise_growth_form(t.columns[gf_col][i]) if gf_col else ""
        woody = _yes_no(t, i, woody_col, "woodiness")
        family = t.columns[fam_col][i].strip() if fam_col else ""
        conifer = _yes_no(t, i, con_col, "conifer")
        if conifer is None and family:
            conifer = family.capitalize() in CONIFER_FAMILIES
        if woody is None:
            woody = _WOODY_FORMS.get(gf)
        if woody is None and conifer:
            woody = True
        tree = (gf == "tree") if gf else None
        _add(values, canon, GrowthForm(gf, woody, tree, conifer, family), _merge_growth)
    families = {c: g.family for c, g in values.items() if g.family}
    return SpeciesList("growth_form", str(path), _n_plants(t), values, families=families)


def read_endemic_list(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> SpeciesList:
    """An endemic species list: a name column (``scientificName``, ``species``, ``name``, ...);
    every listed name -> True (with a kingdom column, plants only)."""
    t = _load(path, _NAME_ALIASES, "endemic species CSV", encoding)
    name_col = _require_column(t, _NAME_ALIASES, "scientific name")
    values = {canon: True for _, canon in _names(t, name_col)}
    return SpeciesList("endemic", str(path), _n_plants(t), values)


_MISSING = frozenset({"", "na", "nan", "n/a", "null", "none", "-"})


def read_trait_table(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> SpeciesList:
    """Species trait summaries: canonical name -> float64 [4 traits, 4 stats] (traits Height,
    LeafArea, SLA, Leaf_N; stats median, sd, lowerbound, upperbound; NaN where unknown).

    Columns: a name (``species``, ``scientificName``, ...) and the PlantTraitNet columns
    ``{trait}_median, {trait}_sd, {trait}_lowerbound, {trait}_upperbound``; at least one
    ``{trait}_median`` column, the others may be absent. Cells are numbers or empty (``NA`` and
    ``nan`` read as empty); a median is > 0, an sd and the bounds >= 0, lowerbound <=
    upperbound. A name on several rows (the PlantTraitNet training CSV repeats a species on every
    photo) gets, cell by cell, the median of its rows' values.
    """
    cols = TRAIT_COLUMNS
    t = _load(path, (*_NAME_ALIASES, *cols), "trait CSV", encoding)
    name_col = _require_column(t, ("species", "scientificName", *_NAME_ALIASES), "species name")
    if not any(f"{tr}_median" in t.columns for tr in TRAITS):
        raise DataFormatError(t.path, f"at least one trait median column ({', '.join(f'{tr}_median' for tr in TRAITS)})",
                              line=_header_line(t), got=_D(f"columns {', '.join(map(repr, t.header))}"))
    for c in cols:
        if c in t.columns:
            t.columns[c] = ["" if v.lower() in _MISSING else v for v in t.columns[c]]
    n = len(t)
    arr = np.full((n, len(TRAITS), len(TRAIT_STATS)), np.nan)
    for j, tr in enumerate(TRAITS):
        for k, s in enumerate(TRAIT_STATS):
            c = f"{tr}_{s}"
            if c in t.columns:
                arr[:, j, k] = _float_column(t, c, allow_empty=True, lo=0, lo_open=(s == "median"))
        wrong = arr[:, j, 2] > arr[:, j, 3]
        if wrong.any():
            i = int(np.argmax(wrong))
            raise _bad(t, i, f"{tr}_upperbound", f"an upper bound >= {tr}_lowerbound ({t.columns[f'{tr}_lowerbound'][i]})")
    rows: dict[str, list[int]] = {}
    for i, canon in _names(t, name_col):
        rows.setdefault(canon, []).append(i)
    values = {}
    for canon, idx in rows.items():
        block = arr[idx]
        if len(idx) == 1:
            values[canon] = block[0]
        else:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # an all-empty cell stays NaN
                values[canon] = np.nanmedian(block, axis=0)
    return SpeciesList("traits", str(path), _n_plants(t), values)


# --------------------------------------------------------------------------------------------
# the user's species table
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableSpecies:
    """One row of a researcher's species table."""

    id: int
    name: str          # as given, whitespace folded
    canonical: str     # canonical_name(name)
    genus: str         # as given, else the genus of the canonical name
    family: str        # as given, or ""
    line: int


def read_table_species(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> list[TableSpecies]:
    """Read a species table: ``speciesId`` (or ``id``, ``species_id``) integers, unique;
    ``scientificName`` (or ``name``, ``scientific_name``, ``species``, ``taxonName``), non-empty;
    optional ``genus`` and ``family``. Other columns are ignored."""
    id_aliases = ("speciesId", "species_id", "id")
    name_aliases = ("scientificName", "scientific_name", "name", "species", "taxonName", "taxon_name")
    t = _load(path, (*id_aliases, *name_aliases, "genus", "family"), "species table CSV", encoding)
    id_col = _require_column(t, id_aliases, "species id")
    name_col = _require_column(t, name_aliases, "scientific name")
    ids, _ = _int_column(t, id_col, what="an integer species id (the id the SDM uses)")
    genus_col, fam_col = _find_column(t, ("genus",)), _find_column(t, ("family",))
    _check_unique_ids(t, ids, id_col)
    out = []
    for i in range(len(t)):
        sid = int(ids[i])
        name = " ".join(t.columns[name_col][i].split())
        if not name:
            raise _bad(t, i, name_col, "a scientific name")
        canon = canonical_name(name)
        genus = (t.columns[genus_col][i] if genus_col else "") or canon.split(" ")[0].lstrip("×")
        family = t.columns[fam_col][i] if fam_col else ""
        out.append(TableSpecies(sid, name, canon, genus, family, t.lines[i]))
    return out


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------

@dataclass
class ListReport:
    """How one list joined the table."""

    kind: str
    path: str
    rows: int                 # rows read (plants)
    entries: int              # distinct names (and whole genera) in the list
    matched: int              # table species that got a value from the list
    broader: int              # of which through their species (an infraspecific table name) or genus
    unmatched: list[str]      # table names the list does not name
    unused: list[str]         # list names that matched no table species


@dataclass
class ImportReport:
    table: str
    out: str
    n_species: int
    lists: list[ListReport]
    shared_names: list[str]   # table names given to more than one id

    def format(self, limit: int = 10) -> str:
        """A readable text table; at most ``limit`` names per list of names."""
        lines = [f"species table {self.table}: {self.n_species} species -> {self.out}"]
        if self.shared_names:
            lines.append(f"{len(self.shared_names)} canonical name(s) shared by several ids: "
                         + _few(self.shared_names, limit))
        if not self.lists:
            lines.append("no lists given: attributes left unknown")
            return "\n".join(lines)
        w = max(len(r.kind) for r in self.lists)
        lines.append(f"{'list':<{w}}  {'rows':>6}  {'names':>6}  {'matched':>8}  {'unmatched':>9}  "
                     f"{'unused':>6}  file")
        for r in self.lists:
            lines.append(f"{r.kind:<{w}}  {r.rows:>6}  {r.entries:>6}  {r.matched:>8}  {len(r.unmatched):>9}  "
                         f"{len(r.unused):>6}  {Path(r.path).name}")
        for r in self.lists:
            if r.broader:
                lines.append(f"{r.kind}: {r.broader} of the {r.matched} matches through the species or genus entry")
        lines.append(f"(rows: plant rows read; names: distinct names in the list; matched: table species "
                     f"the list names, of {self.n_species}; unused: list names no table species has)")
        for r in self.lists:
            if r.unmatched:
                lines.append(f"{r.kind} unmatched: {_few(r.unmatched, limit)}")
        for r in self.lists:
            if r.unused:
                lines.append(f"{r.kind} unused: {_few(r.unused, limit)}")
        return "\n".join(lines)

    def list(self, kind: str) -> ListReport:
        for r in self.lists:
            if r.kind == kind:
                return r
        raise KeyError(kind)


def _few(names: Sequence[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


# lists where an infraspecific table name takes its species' entry (a listed species covers its
# subspecies; a Red List category does not: subspecies are assessed on their own)
_SPECIES_FALLBACK = {"directive", "invasive", "growth_form", "endemic", "traits"}


def _join(table: Sequence[TableSpecies], lst: SpeciesList) -> tuple[list[Any], ListReport]:
    """Per table species the list's value (None where the list does not name it), and the report."""
    out: list[Any] = []
    used: set[str] = set()
    used_genera: set[str] = set()
    unmatched: list[str] = []
    broader = 0
    for sp in table:
        key = name_key(sp.canonical)
        entry = lst.entry_for(key)
        via = False
        if entry is None and lst.kind in _SPECIES_FALLBACK:
            skey = _species_key(sp.canonical)
            entry = lst.entry_for(skey) if skey else None
            via = entry is not None
        if entry is not None:
            used.add(entry)
            out.append(lst.values[entry])
            broader += via
            continue
        genus = lst.genus_entry(_genus_key(sp.genus or sp.canonical)) if lst.genera else None
        if genus is not None:
            used_genera.add(genus)
            out.append(lst.genera[genus])
            broader += 1
            continue
        out.append(None)
        unmatched.append(sp.name)
    unused = [c for c in lst.values if c not in used] + [f"{g} spp." for g in lst.genera if g not in used_genera]
    rep = ListReport(lst.kind, lst.path, lst.rows, len(lst.values) + len(lst.genera), len(table) - len(unmatched),
                     broader, unmatched, unused)
    return out, rep


def _flag(v: bool | None) -> str:
    return "" if v is None else ("1" if v else "0")


def _num(x: float) -> str:
    x = float(x)
    return "" if math.isnan(x) else repr(x)


def _check_unique_ids(t: _Table, ids, col: str) -> None:
    """A DataFormatError naming both lines when a species id repeats."""
    seen: dict[int, int] = {}
    for i, sid in enumerate(int(v) for v in ids):
        if sid in seen:
            raise DataFormatError(t.path, f"a unique species id (also on line {t.lines[seen[sid]]})",
                                  line=t.lines[i], field=col, got=t.columns[col][i])
        seen[sid] = i


def import_species(table_csv: PathLike, out_csv: PathLike, *, directive: PathLike | None = None,
                   invasive: PathLike | None = None, redlist: PathLike | None = None,
                   growth_form: PathLike | None = None, endemic: PathLike | None = None,
                   traits: PathLike | None = None, encoding: str = _DEFAULT_ENCODING) -> ImportReport:
    """Join the given lists to the species table ``table_csv`` by canonical name and write the
    GeoFlora species table ``out_csv`` (atomically; columns :data:`SPECIES_TABLE_COLUMNS`).

    Values where a list does not name a species (see docs/data.md):

    * ``eu_directive``, ``invasive``, ``endemic``: 1 when the list names the species, 0 when it
      does not; empty when no such list is given (unknown);
    * ``iucn``: the list's category, ``NE`` (not evaluated) when the Red List does not name the
      species or no Red List is given;
    * ``growth_form``, ``woody``, ``tree``: from the growth-form list, empty where it says nothing;
      a conifer is woody;
    * ``conifer``: from the growth-form list, else 1 / 0 from the family (the table's family, else a
      family a list gives) when there is one, else empty;
    * ``genus``: the table's, else the name's genus; ``family``: the table's, else one a list gives;
    * traits: the trait table's values, empty where unknown.

    An infraspecific table name without an entry of its own takes its species' entry in every
    list but the Red List; a ``Genus spp.`` entry of a GBIF list names every species of the genus.
    """
    table = read_table_species(table_csv, encoding=encoding)
    readers = (("directive", directive, read_directive_list), ("invasive", invasive, read_invasive_list),
               ("redlist", redlist, read_redlist), ("growth_form", growth_form, read_growth_form_list),
               ("endemic", endemic, read_endemic_list), ("traits", traits, read_trait_table))
    lists = {kind: fn(path, encoding=encoding) for kind, path, fn in readers if path is not None}
    joined: dict[str, list[Any]] = {}
    reports = []
    for kind, lst in lists.items():
        joined[kind], rep = _join(table, lst)
        reports.append(rep)

    def family_from_lists(sp: TableSpecies) -> str:
        skey = _species_key(sp.canonical)
        for kind in ("growth_form", "directive", "invasive"):
            lst = lists.get(kind)
            if lst is not None:
                entry = lst.entry_for(name_key(sp.canonical)) or (lst.entry_for(skey) if skey else None)
                if entry and lst.families.get(entry):
                    return lst.families[entry]
        return ""

    rows = []
    for i, sp in enumerate(table):
        def got(kind: str, i=i):
            return joined[kind][i] if kind in joined else None

        family = sp.family or family_from_lists(sp)
        gf: GrowthForm | None = got("growth_form")
        conifer = gf.conifer if gf is not None and gf.conifer is not None else None
        if conifer is None and family:
            conifer = family.strip().capitalize() in CONIFER_FAMILIES
        woody = gf.woody if gf is not None else None
        if woody is None and conifer:
            woody = True
        tree = gf.tree if gf is not None else None

        def listed(kind: str, i=i) -> str:
            return "" if kind not in joined else ("1" if joined[kind][i] else "0")

        row = [str(sp.id), sp.name, sp.genus, family, gf.growth_form if gf is not None else "",
               got("redlist") or "NE", listed("directive"), listed("invasive"), _flag(woody), _flag(tree),
               listed("endemic"), _flag(conifer)]
        tv = got("traits")
        row.extend(_num(tv[j, k]) if tv is not None else "" for j in range(len(TRAITS)) for k in range(len(TRAIT_STATS)))
        rows.append(row)

    with atomic_open(out_csv, newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(SPECIES_TABLE_COLUMNS)
        w.writerows(rows)
    keys: dict[str, list[str]] = {}
    for sp in table:
        keys.setdefault(name_key(sp.canonical), []).append(sp.name)
    shared = [names[0] for names in keys.values() if len(names) > 1]
    return ImportReport(str(table_csv), str(out_csv), len(table), reports, shared)


# --------------------------------------------------------------------------------------------
# reading the GeoFlora species table
# --------------------------------------------------------------------------------------------

def trait_distribution(median: float, sd: float = math.nan, lowerbound: float = math.nan,
                       upperbound: float = math.nan) -> TraitDistribution:
    """A :class:`TraitDistribution` from a species' trait summary, read as a lognormal.

    ``logmean = log(median)``. ``logsd`` from the sd when there is one, matching the lognormal's
    sd: sd / median = sqrt(u (u - 1)) with u = exp(logsd^2); else from the bounds read as the
    2.5 % and 97.5 % quantiles: log(upper / lower) / (2 x 1.96); else NaN. (The generator writes
    exactly these: the lognormal's sd and 2.5 / 97.5 % bounds.) NaN everywhere for no median.
    """
    m, s, lo, hi = (float(v) for v in (median, sd, lowerbound, upperbound))
    if not (math.isfinite(m) and m > 0):
        return TraitDistribution(m, s, lo, hi, math.nan, math.nan)
    logsd = math.nan
    if math.isfinite(s) and s >= 0:
        r = s / m
        u = (1 + math.sqrt(1 + 4 * r * r)) / 2
        logsd = math.sqrt(math.log(u))
    elif math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi:
        logsd = math.log(hi / lo) / (2 * _Z95)
    return TraitDistribution(m, s, lo, hi, math.log(m), logsd)


def _bool_column(t: _Table, i: int, col: str) -> bool:
    v = t.columns[col][i].strip().lower()
    if v in ("1", "true", "yes", "y"):
        return True
    if v in ("0", "false", "no", "n", ""):
        return False
    raise _bad(t, i, col, "1, 0 or an empty field (unknown, read as 0)")


def read_species_table(path: PathLike, *, encoding: str = _DEFAULT_ENCODING) -> list[Species]:
    """Read a GeoFlora species table (what :func:`import_species` writes, or a generated region's
    ``species/species.csv``) into :class:`Species`, index = row order.

    Required: the columns of :data:`BASE_COLUMNS`; trait columns ``{trait}_{stat}`` where known
    (a trait without its median column is NaN). Flags are 1 / 0 / empty (empty, unknown, reads
    as False); ``iucn`` a category code or its words, empty -> NE; ids unique integers; names
    non-empty. Columns the import does not write get neutral values unless present: ``guild``
    "", ``pft`` from the growth form (tree, shrub, herb, grass; fern -> herb; else ""),
    ``target_prevalence`` NaN. Traits: :func:`trait_distribution`.
    """
    t = _read_table(path, required=BASE_COLUMNS, encoding=encoding, what="GeoFlora species table", keep_all=True)
    ids, _ = _int_column(t, "id", what="an integer species id")
    stats = {}
    for tr in TRAITS:
        for s in TRAIT_STATS:
            c = f"{tr}_{s}"
            if c in t.columns:
                t.columns[c] = ["" if v.lower() in _MISSING else v for v in t.columns[c]]
                stats[c] = _float_column(t, c, allow_empty=True, lo=0, lo_open=(s == "median"))
            else:
                stats[c] = np.full(len(t), np.nan)
    prevalence = (_float_column(t, "target_prevalence", allow_empty=True, lo=0, hi=1)
                  if "target_prevalence" in t.columns else np.full(len(t), np.nan))
    _check_unique_ids(t, ids, "id")
    out = []
    for i in range(len(t)):
        sid = int(ids[i])
        name = t.columns["name"][i]
        if not name:
            raise _bad(t, i, "name", "a scientific name")
        raw_iucn = t.columns["iucn"][i]
        iucn = normalise_iucn(raw_iucn) if raw_iucn else "NE"
        if iucn is None:
            raise _bad(t, i, "iucn", f"an IUCN category ({', '.join(IUCN_CATEGORIES)}) or an empty field")
        gf = t.columns["growth_form"][i]
        pft = t.columns["pft"][i] if "pft" in t.columns else _PFT.get(normalise_growth_form(gf), "")
        traits = {tr: trait_distribution(*(stats[f"{tr}_{s}"][i] for s in TRAIT_STATS)) for tr in TRAITS}
        out.append(Species(
            index=i, id=sid, name=name, genus=t.columns["genus"][i], family=t.columns["family"][i],
            guild=t.columns["guild"][i] if "guild" in t.columns else "", growth_form=gf, pft=pft, iucn=iucn,
            eu_directive=_bool_column(t, i, "eu_directive"), invasive=_bool_column(t, i, "invasive"),
            woody=_bool_column(t, i, "woody"), tree=_bool_column(t, i, "tree"),
            endemic=_bool_column(t, i, "endemic"), conifer=_bool_column(t, i, "conifer"),
            target_prevalence=float(prevalence[i]), traits=traits,
        ))
    return out
