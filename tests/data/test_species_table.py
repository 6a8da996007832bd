"""Species tables and the real attribute lists (inference/data/species_table.py, `geoflora species import`).

Real lists are read in place from shared/reference (never copied into the repository), as in
test_readers.py: ``$GEOFLORA_REFERENCE_DIR`` or ``<repo>/../shared/reference``; those tests skip
without it. Every reader and error message is also checked on small hand-made files.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from backend.cli import main
from backend.core.errors import DataFormatError
from inference.data.species_table import (
    BASE_COLUMNS,
    SPECIES_TABLE_COLUMNS,
    canonical_name,
    import_species,
    name_key,
    normalise_growth_form,
    normalise_iucn,
    read_directive_list,
    read_endemic_list,
    read_growth_form_list,
    read_invasive_list,
    read_redlist,
    read_species_table,
    read_table_species,
    read_trait_table,
    trait_distribution,
)

REFERENCE_DIR = Path(
    os.environ.get("GEOFLORA_REFERENCE_DIR")
    or Path(__file__).resolve().parents[2].parent / "shared" / "reference"
)
DIRECTIVE_CSV = REFERENCE_DIR / "habitats_directive_art17_gbif.csv"
INVASIVE_CSV = REFERENCE_DIR / "invasive_union_concern_gbif.csv"
needs_reference = pytest.mark.skipif(
    not (DIRECTIVE_CSV.is_file() and INVASIVE_CSV.is_file()),
    reason=f"real reference lists not found at {REFERENCE_DIR} (set GEOFLORA_REFERENCE_DIR)",
)
GBIF_HEADER = ("occurrenceId,verbatimScientificName,scientificName,key,matchType,confidence,status,rank,kingdom,"
               "phylum,class,order,family,genus,species,canonicalName,authorship,usageKey,acceptedUsageKey")


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text.lstrip("\n"), encoding="utf-8")
    return p


def error(fn, *args, **kw) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        fn(*args, **kw)
    return info.value


def assert_message(exc: DataFormatError, path: Path, *parts: str) -> None:
    msg = str(exc)
    assert path.name in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


# ============================================================================================
# canonical names
# ============================================================================================

@pytest.mark.parametrize("name, canonical", [
    # the brief's and the lists' own examples
    ("Abies alba Mill.", "Abies alba"),
    ("Ameiurus melas (Rafinesque, 1820)", "Ameiurus melas"),
    ("Centaurea jacea subsp. angustifolia (DC.) Gremli", "Centaurea jacea subsp. angustifolia"),
    ("Acipenser ruthenus Linnaeus, 1758", "Acipenser ruthenus"),
    ("Adenophora lilifolia Ledeb.", "Adenophora lilifolia"),
    ("Iris humilis subsp. arenaria (Waldst. & Kit.) Á.Löve & D.Löve", "Iris humilis subsp. arenaria"),
    ("Pontechium maculatum var. maculatum", "Pontechium maculatum var. maculatum"),
    ("Artemisia campestris subsp. bottnica (Lundstr. ex Kindb.) Tutin, 1976",
     "Artemisia campestris subsp. bottnica"),
    ("Dianthus plumarius subsp. regis-stephani (Rapaics) Boksay", "Dianthus plumarius subsp. regis-stephani"),
    ("Caropsis verticillato-inundata", "Caropsis verticillato-inundata"),
    ("Biscutella sempervirens subsp. vicentina (Samp.) Malag. ex J.Gran & L.Klingenberg",
     "Biscutella sempervirens subsp. vicentina"),
    ("Pueraria montana (Lour.) Merr. var. lobata (Willd.)", "Pueraria montana var. lobata"),
    ("Acacia saligna (Labill.) H.L.Wendl. (Acacia cyanophylla Lindl.)", "Acacia saligna"),
    ("Salvinia molesta D.S. Mitch. (Salvinia adnata Desv.)", "Salvinia molesta"),
    ("Hydrocotyle ranunculoides L. f.", "Hydrocotyle ranunculoides"),        # "f." of an author (filius)
    ("Microstegium vimineum (Trin.) A. Camus", "Microstegium vimineum"),
    ("Lysichiton americanus Hultén and St. John", "Lysichiton americanus"),
    ("Hedlundia teodori s.l.", "Hedlundia teodori"),
    ("Hedlundia teodori s.str.", "Hedlundia teodori"),
    ("Lycopodium spp.", "Lycopodium"),
    ("Lycopodium L.", "Lycopodium"),
    ("Arctophila (Rupr.) Andersson", "Arctophila"),
    ("Brassicaceae", "Brassicaceae"),
    # infraspecific markers, after the species' authors too, normalised
    ("Quercus robur L. subsp. robur", "Quercus robur subsp. robur"),
    ("Quercus robur ssp. robur", "Quercus robur subsp. robur"),
    ("Quercus robur ssp robur", "Quercus robur subsp. robur"),
    ("Pinus nigra J.F.Arnold var. laricio Maire", "Pinus nigra var. laricio"),
    ("Pinus nigra variety laricio", "Pinus nigra var. laricio"),
    ("Rosa canina forma dumalis", "Rosa canina f. dumalis"),
    ("Rosa canina fo. dumalis", "Rosa canina f. dumalis"),
    ("Thymus praecox Opiz subsp. britannicus (Ronniger) Holub", "Thymus praecox subsp. britannicus"),
    ("Iris humilis arenaria", "Iris humilis arenaria"),                     # GBIF canonicalName style
    # hybrids, written as GBIF writes them
    ("Ophrys ×melitensis (Salk.) Devillers-Tersch. & Devillers", "Ophrys ×melitensis"),
    ("Mentha × piperita L.", "Mentha ×piperita"),
    ("Mentha x piperita L.", "Mentha ×piperita"),
    ("×Gymnigritella runei Teppner & E.Klein", "×Gymnigritella runei"),
    ("x Gymnigritella runei", "×Gymnigritella runei"),
    ("Salix alba × Salix fragilis", "Salix alba × Salix fragilis"),
    ("Salix alba L. x fragilis L.", "Salix alba × Salix fragilis"),
    # case, whitespace and qualifiers
    ("  abies   ALBA  ", "Abies alba"),
    ("ABIES ALBA MILL.", "Abies alba"),
    ("abies alba mill.", "Abies alba"),
    ("QUERCUS ROBUR L. SUBSP. ROBUR", "Quercus robur subsp. robur"),
    ("Abies\u00a0alba\tMill.", "Abies alba"),
    ("Rubus fruticosus agg.", "Rubus fruticosus"),
    ("Carex cf. flava", "Carex flava"),
    ("Centaurea jacea L. s. l.", "Centaurea jacea"),
    ("Ranunculus (Batrachium) aquatilis L.", "Ranunculus aquatilis"),
    ("Leucanthemum vulgare (Vaill.) Lam.", "Leucanthemum vulgare"),
    ("Fallopia japonica (Houtt.) Ronse Decr.", "Fallopia japonica"),
    ("Senecio inaequidens DC.", "Senecio inaequidens"),
    ("", ""),
])
def test_canonical_name(name, canonical):
    assert canonical_name(name) == canonical


def test_name_key_drops_marker_hybrid_sign_case_and_diacritics():
    assert name_key("Iris humilis subsp. arenaria (Waldst. & Kit.) Á.Löve") == "iris humilis arenaria"
    assert name_key("Iris humilis arenaria") == name_key("Iris humilis subsp. arenaria")
    assert name_key("Salvinia ×molesta D.S.Mitch.") == name_key("Salvinia molesta") == "salvinia molesta"
    assert name_key("Isoëtes lacustris L.") == name_key("Isoetes lacustris") == "isoetes lacustris"
    assert name_key("ABIES ALBA") == "abies alba"


@needs_reference
def test_canonical_name_gives_gbif_canonical_name_on_every_real_row():
    # every row of both real lists (animals, fungi, plants): the canonical name of the GBIF name
    # with authorship, without rank marker and hybrid sign, is GBIF's own canonicalName, exactly
    n = 0
    for path in (DIRECTIVE_CSV, INVASIVE_CSV):
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                if not row["canonicalName"]:
                    continue
                words = canonical_name(row["scientificName"]).split(" ")
                plain = " ".join(w.lstrip("×") for w in words if w not in ("subsp.", "var.", "f.", "×"))
                assert plain == row["canonicalName"], row["scientificName"]
                n += 1
    assert n == 1422 + 88


# ============================================================================================
# the real lists
# ============================================================================================

@needs_reference
def test_real_directive_and_invasive_lists():
    d = read_directive_list(DIRECTIVE_CSV)
    assert d.rows == 688                                    # the Plantae rows
    # one name twice (Hedlundia teodori s.l. / s.str.), two whole genera (Lycopodium / Sphagnum spp.)
    assert len(d) == 685 and sorted(d.genera) == ["Lycopodium", "Sphagnum"]
    assert d["Adenophora lilifolia (L.) A.DC."] is True
    assert "Iris humilis subsp. arenaria" in d and "Iris humilis" not in d
    assert "Dianthus diutinus" in d and "Dianthus" not in d       # HIGHERRANK: the listed taxon, not GBIF's genus
    assert "Sisymbrium supinum" in d and "Brassicaceae" not in d
    assert d.aliases["Isoetes velatum subsp. asturicense"] == "Isoetes velata var. asturicense"   # FUZZY
    assert "Acipenser ruthenus" not in d                          # an animal
    assert d.families["Cypripedium calceolus"] == "Orchidaceae"
    inv = read_invasive_list(INVASIVE_CSV)
    assert inv.rows == 40 and len(inv) == 40
    assert "Pueraria montana var. lobata" in inv and "Pueraria montana" not in inv
    assert "Salvinia molesta" in inv and "Salvinia × molesta" in inv
    assert "Ameiurus melas" not in inv


DIRECTIVE_TABLE = """
speciesId,scientificName
1,Adenophora lilifolia (L.) A.DC.
2,Cypripedium calceolus L.
3,Abies alba Mill.
4,Lycopodium clavatum L.
5,Iris humilis subsp. arenaria (Waldst. & Kit.) Á.Löve & D.Löve
6,Iris humilis Georgi
7,Isoetes velatum subsp. asturicense
8,Dianthus diutinus Kit.
9,Sisymbrium supinum L.
10,Dianthus carthusianorum L.
11,"Ameiurus melas (Rafinesque, 1820)"
12,Gentiana lutea subsp. symphyandra (Murb.) Hayek
13,Hedlundia teodori (Liljef.) Sennikov & Kurtto
14,ARNICA MONTANA L.
15,Salix salviifolia subsp. australis Franco
16,Impatiens glandulifera Royle
17,Pueraria montana var. lobata (Willd.) Maesen & S.M.Almeida
18,Hydrocotyle ranunculoides L.f.
19,Salvinia × molesta D.S.Mitch.
20,Acacia saligna (Labill.) H.L.Wendl.
21,Pueraria montana (Lour.) Merr.
"""


@needs_reference
def test_import_against_the_real_lists(tmp_path):
    table = write(tmp_path, "table.csv", DIRECTIVE_TABLE)
    out = tmp_path / "out" / "species.csv"
    rep = import_species(table, out, directive=DIRECTIVE_CSV, invasive=INVASIVE_CSV)
    d, inv = rep.list("directive"), rep.list("invasive")
    assert (d.rows, d.entries) == (688, 687)
    assert d.matched == 11 and d.broader == 2            # Lycopodium spp. (genus), Gentiana lutea (species)
    not_directive = ["Abies alba Mill.", "Iris humilis Georgi", "Dianthus carthusianorum L.",
                     "Ameiurus melas (Rafinesque, 1820)", "Impatiens glandulifera Royle",
                     "Pueraria montana var. lobata (Willd.) Maesen & S.M.Almeida", "Hydrocotyle ranunculoides L.f.",
                     "Salvinia × molesta D.S.Mitch.", "Acacia saligna (Labill.) H.L.Wendl.",
                     "Pueraria montana (Lour.) Merr."]
    assert d.unmatched == not_directive
    assert len(d.unused) == 687 - 11 and "Lycopodium spp." not in d.unused and "Sphagnum spp." in d.unused
    assert (inv.rows, inv.entries, inv.matched, inv.broader) == (40, 40, 5, 0)
    assert len(inv.unmatched) == 16 and "Pueraria montana (Lour.) Merr." in inv.unmatched
    sp = {s.id: s for s in read_species_table(out)}
    assert [i for i in sp if sp[i].eu_directive] == [1, 2, 4, 5, 7, 8, 9, 12, 13, 14, 15]
    assert [i for i in sp if sp[i].invasive] == [16, 17, 18, 19, 20]
    assert sp[2].family == "Orchidaceae"                   # from the GBIF row, the table has none
    assert sp[12].family == "Gentianaceae"                 # through its species' row
    text = rep.format()
    assert "directive" in text and "habitats_directive_art17_gbif.csv" in text
    assert "directive unmatched: Abies alba Mill., Iris humilis Georgi" in text


# ============================================================================================
# hand-made lists: readers
# ============================================================================================

def gbif_csv(tmp_path: Path, name: str, rows: list[str]) -> Path:
    return write(tmp_path, name, GBIF_HEADER + "\n" + "\n".join(rows) + "\n")


DIRECTIVE_ROWS = [
    ',Cypripedium calceolus,Cypripedium calceolus L.,2820517,EXACT,98,ACCEPTED,SPECIES,Plantae,Tracheophyta,'
    'Liliopsida,Asparagales,Orchidaceae,Cypripedium,Cypripedium calceolus,Cypripedium calceolus,L.,2820517,',
    ',Gentiana lutea,Gentiana lutea L.,3170040,EXACT,97,ACCEPTED,SPECIES,Plantae,Tracheophyta,Magnoliopsida,'
    'Gentianales,Gentianaceae,Gentiana,Gentiana lutea,Gentiana lutea,L.,3170040,',
    ',Ursus arctos,"Ursus arctos Linnaeus, 1758",2433433,EXACT,99,ACCEPTED,SPECIES,Animalia,Chordata,Mammalia,'
    'Carnivora,Ursidae,Ursus,Ursus arctos,Ursus arctos,"Linnaeus, 1758",2433433,',
    ',Lycopodium spp.,Lycopodium L.,2688247,HIGHERRANK,94,ACCEPTED,GENUS,Plantae,Tracheophyta,Lycopodiopsida,'
    'Lycopodiales,Lycopodiaceae,Lycopodium,,Lycopodium,L.,2688247,',
]
INVASIVE_ROWS = [
    ',Impatiens glandulifera Royle,Impatiens glandulifera Royle,2891770,EXACT,99,ACCEPTED,SPECIES,Plantae,'
    'Tracheophyta,Magnoliopsida,Ericales,Balsaminaceae,Impatiens,Impatiens glandulifera,Impatiens glandulifera,'
    'Royle,2891770,',
]
TABLE = """
speciesId,scientificName,family
10,Abies alba Mill.,Pinaceae
11,Pinus sylvestris L.,
12,Cypripedium calceolus L.,Orchidaceae
13,Impatiens glandulifera Royle,
14,Arnica montana L.,Asteraceae
15,Festuca ovina L.,
16,Dryopteris filix-mas (L.) Schott,
17,Gentiana lutea subsp. symphyandra (Murb.) Hayek,
"""
REDLIST = """
taxonName,redlistCategory
Abies alba Mill.,Least Concern
Cypripedium calceolus,Near Threatened
Arnica montana,Vulnerable
Gentiana lutea L.,LC
Pinus sylvestris,LC
Pinus sylvestris L.,NT
Festuca ovina,
"""
GROWTH = """
species,growthForm,woody,family
Abies alba,tree,,Pinaceae
Pinus sylvestris,Tree,yes,Pinaceae
Cypripedium calceolus,forb,no,Orchidaceae
Festuca ovina,graminoid,,Poaceae
Dryopteris filix-mas,fern,,Dryopteridaceae
Impatiens glandulifera,herb,no,
"""
ENDEMIC = """
name
Gentiana lutea subsp. symphyandra
Saxifraga florulenta Moretti
"""
TRAITS = """
species,Height_median,Height_sd,Height_lowerbound,Height_upperbound,SLA_median
Abies alba,30,5,20,45,8
Abies alba,30,5,20,45,10
Festuca ovina,0.3,,,,25
Arnica montana,NA,,,,20
"""


@pytest.fixture
def lists(tmp_path):
    return {
        "table": write(tmp_path, "table.csv", TABLE),
        "directive": gbif_csv(tmp_path, "art17.csv", DIRECTIVE_ROWS),
        "invasive": gbif_csv(tmp_path, "ias.csv", INVASIVE_ROWS),
        "redlist": write(tmp_path, "redlist.csv", REDLIST),
        "growth_form": write(tmp_path, "growth.csv", GROWTH),
        "endemic": write(tmp_path, "endemic.csv", ENDEMIC),
        "traits": write(tmp_path, "traits.csv", TRAITS),
    }


def test_read_table_species(lists):
    rows = read_table_species(lists["table"])
    assert [r.id for r in rows] == [10, 11, 12, 13, 14, 15, 16, 17]
    assert rows[0].name == "Abies alba Mill." and rows[0].canonical == "Abies alba" and rows[0].genus == "Abies"
    assert rows[7].canonical == "Gentiana lutea subsp. symphyandra" and rows[7].family == ""


def test_read_hand_made_lists(lists):
    d = read_directive_list(lists["directive"])
    assert d.rows == 3 and list(d) == ["Cypripedium calceolus", "Gentiana lutea"] and list(d.genera) == ["Lycopodium"]
    inv = read_invasive_list(lists["invasive"])
    assert dict(inv) == {"Impatiens glandulifera": True}
    red = read_redlist(lists["redlist"])
    assert red.rows == 7
    assert dict(red) == {"Abies alba": "LC", "Cypripedium calceolus": "NT", "Arnica montana": "VU",
                         "Gentiana lutea": "LC", "Pinus sylvestris": "NT"}       # the most severe of LC, NT
    gf = read_growth_form_list(lists["growth_form"])
    assert gf["Abies alba Mill."].growth_form == "tree" and gf["Abies alba"].woody and gf["Abies alba"].conifer
    assert gf["Cypripedium calceolus"].growth_form == "herb" and gf["Cypripedium calceolus"].woody is False
    assert gf["Festuca ovina"].growth_form == "grass" and gf["Festuca ovina"].tree is False
    assert gf["Impatiens glandulifera"].conifer is None                 # no family, no conifer column
    assert gf.families["Festuca ovina"] == "Poaceae"
    end = read_endemic_list(lists["endemic"])
    assert sorted(end) == ["Gentiana lutea subsp. symphyandra", "Saxifraga florulenta"]
    tr = read_trait_table(lists["traits"])
    assert tr.rows == 4 and len(tr) == 3
    a = tr["Abies alba"]
    assert a.shape == (4, 4)
    np.testing.assert_array_equal(a[0], [30, 5, 20, 45])                # Height
    assert a[2, 0] == 9.0                                                # SLA: the median of 8 and 10
    assert np.isnan(a[1]).all() and np.isnan(a[3]).all()                 # LeafArea, Leaf_N: no columns
    assert np.isnan(tr["Arnica montana"][0, 0]) and tr["Arnica montana"][2, 0] == 20


def test_lists_with_a_kingdom_column_keep_plants(tmp_path):
    p = write(tmp_path, "rl.csv", """
scientificName,kingdom,europeanRegionalRedListCategory,euRegionalRedListCategory
Arnica montana,PLANTAE,Least Concern,Near Threatened
Ursus arctos,ANIMALIA,LC,LC
Abies alba,Plantae,CR (PE),
""")
    red = read_redlist(p)
    assert red.rows == 2 and dict(red) == {"Arnica montana": "LC", "Abies alba": "CR"}   # European column first
    e = write(tmp_path, "end.csv", "species,kingdom\nAbies nebrodensis,Plantae\nLacerta agilis,Animalia\n")
    assert dict(read_endemic_list(e)) == {"Abies nebrodensis": True}


@pytest.mark.parametrize("text, code", [
    ("CR", "CR"), ("Critically Endangered", "CR"), ("critically_endangered", "CR"), ("CR(PE)", "CR"),
    ("Extinct", "EX"), ("Extinct in the Wild", "EW"), ("Regionally Extinct", "RE"), ("EN", "EN"),
    ("Endangered", "EN"), ("vulnerable", "VU"), ("Near Threatened", "NT"), ("LR/nt", "NT"),
    ("Lower Risk/conservation dependent", "NT"), ("Least Concern", "LC"), ("lr / lc", "LC"),
    ("Data Deficient", "DD"), ("Not Evaluated", "NE"), ("NA", "NE"), ("Not Applicable", "NE"), ("threatened", None),
])
def test_normalise_iucn(text, code):
    assert normalise_iucn(text) == code


@pytest.mark.parametrize("text, form", [
    ("Tree", "tree"), ("dwarf shrub", "shrub"), ("sub-shrub", "shrub"), ("forb", "herb"), ("herbaceous", "herb"),
    ("Graminoid", "grass"), ("fern", "fern"), ("Climber", "climber"), ("", ""),
])
def test_normalise_growth_form(text, form):
    assert normalise_growth_form(text) == form


# ============================================================================================
# import and read back
# ============================================================================================

def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_import_species_joins_every_list(lists, tmp_path):
    out = tmp_path / "geoflora.csv"
    rep = import_species(lists["table"], out, **{k: v for k, v in lists.items() if k != "table"})
    with open(out, newline="") as fh:
        assert next(csv.reader(fh)) == list(SPECIES_TABLE_COLUMNS)
    rows = {int(r["id"]): r for r in read_rows(out)}
    base = {i: tuple(r[c] for c in BASE_COLUMNS[2:]) for i, r in rows.items()}
    #      genus, family, growth_form, iucn, eu_directive, invasive, woody, tree, endemic, conifer
    assert base == {
        10: ("Abies", "Pinaceae", "tree", "LC", "0", "0", "1", "1", "0", "1"),
        11: ("Pinus", "Pinaceae", "tree", "NT", "0", "0", "1", "1", "0", "1"),          # family from the list
        12: ("Cypripedium", "Orchidaceae", "herb", "NT", "1", "0", "0", "0", "0", "0"),
        13: ("Impatiens", "Balsaminaceae", "herb", "NE", "0", "1", "0", "0", "0", "0"),  # family: the GBIF row
        14: ("Arnica", "Asteraceae", "", "VU", "0", "0", "", "", "0", "0"),
        15: ("Festuca", "Poaceae", "grass", "NE", "0", "0", "0", "0", "0", "0"),
        16: ("Dryopteris", "Dryopteridaceae", "fern", "NE", "0", "0", "0", "0", "0", "0"),
        17: ("Gentiana", "Gentianaceae", "", "NE", "1", "0", "", "", "1", "0"),           # species' entry, not its category
    }
    assert rows[10]["name"] == "Abies alba Mill."
    assert [rows[10][f"Height_{s}"] for s in ("median", "sd", "lowerbound", "upperbound")] == ["30.0", "5.0", "20.0", "45.0"]
    assert rows[10]["SLA_median"] == "9.0" and rows[10]["SLA_sd"] == "" and rows[10]["LeafArea_median"] == ""
    assert rows[15]["Height_median"] == "0.3" and rows[14]["Height_median"] == "" and rows[14]["SLA_median"] == "20.0"
    assert rows[11]["Height_median"] == ""
    # the report: rows read, names, matches, the names that did not match
    got = {r.kind: (r.rows, r.entries, r.matched, r.broader, r.unmatched, r.unused) for r in rep.lists}
    names = {i: r["name"] for i, r in rows.items()}
    assert got["directive"] == (3, 3, 2, 1, [names[i] for i in (10, 11, 13, 14, 15, 16)], ["Lycopodium spp."])
    assert got["invasive"] == (1, 1, 1, 0, [names[i] for i in (10, 11, 12, 14, 15, 16, 17)], [])
    assert got["redlist"] == (7, 5, 4, 0, [names[i] for i in (13, 15, 16, 17)], ["Gentiana lutea"])
    assert got["growth_form"] == (6, 6, 6, 0, [names[14], names[17]], [])
    assert got["endemic"] == (2, 2, 1, 0, [names[i] for i in range(10, 17)], ["Saxifraga florulenta"])
    assert got["traits"] == (4, 3, 3, 0, [names[i] for i in (11, 12, 13, 16, 17)], [])
    text = rep.format(limit=2)
    assert text.splitlines()[0] == f"species table {lists['table']}: 8 species -> {out}"
    assert "directive: 1 of the 2 matches through the species or genus entry" in text
    assert "invasive unmatched: Abies alba Mill., Pinus sylvestris L. ... and 5 more" in text
    assert "endemic unused: Saxifraga florulenta" in text


def test_defaults_without_lists(lists, tmp_path):
    out = tmp_path / "bare.csv"
    rep = import_species(lists["table"], out)
    assert rep.lists == [] and "no lists given" in rep.format()
    rows = read_rows(out)
    r = rows[0]
    assert (r["iucn"], r["eu_directive"], r["invasive"], r["endemic"], r["woody"], r["tree"], r["conifer"]) == \
        ("NE", "", "", "", "1", "", "1")             # Pinaceae: a conifer, hence woody; the rest unknown
    assert rows[1]["conifer"] == "" and rows[1]["woody"] == ""   # no family: unknown
    assert all(r[c] == "" for c in SPECIES_TABLE_COLUMNS[len(BASE_COLUMNS):])
    sp = read_species_table(out)
    assert sp[1].conifer is False and sp[1].iucn == "NE" and math.isnan(sp[1].traits["SLA"].logmean)


def test_read_species_table_records(lists, tmp_path):
    out = tmp_path / "geoflora.csv"
    import_species(lists["table"], out, **{k: v for k, v in lists.items() if k != "table"})
    sp = read_species_table(out)
    assert [s.index for s in sp] == list(range(8)) and [s.id for s in sp] == list(range(10, 18))
    abies = sp[0]
    assert (abies.name, abies.genus, abies.family, abies.growth_form, abies.pft, abies.iucn) == \
        ("Abies alba Mill.", "Abies", "Pinaceae", "tree", "tree", "LC")
    assert abies.woody and abies.tree and abies.conifer and not abies.eu_directive and not abies.invasive
    assert abies.guild == "" and math.isnan(abies.target_prevalence)
    h = abies.traits["Height"]
    assert h.median == 30 and h.logmean == pytest.approx(math.log(30))
    # logsd from the sd (lognormal moment match): sd / median = sqrt(u (u - 1)), u = exp(logsd^2)
    u = math.exp(h.logsd ** 2)
    assert math.sqrt(u * (u - 1)) == pytest.approx(5 / 30)
    assert set(abies.traits) == {"Height", "LeafArea", "SLA", "Leaf_N"}
    assert math.isnan(abies.traits["LeafArea"].median) and math.isnan(abies.traits["SLA"].logsd)
    assert sp[6].pft == "herb"                                          # fern -> herb, as the generator maps it
    assert sp[4].pft == "" and sp[7].eu_directive and sp[7].endemic and sp[3].invasive


def test_trait_distribution_from_bounds_and_nothing():
    d = trait_distribution(10.0, math.nan, 5.0, 20.0)
    assert d.logmean == pytest.approx(math.log(10)) and d.logsd == pytest.approx(math.log(4) / (2 * 1.959963984540054))
    n = trait_distribution(math.nan)
    assert math.isnan(n.logmean) and math.isnan(n.logsd)
    assert math.isnan(trait_distribution(3.0).logsd)


def test_read_species_table_reads_the_generated_species_csv(tmp_path):
    from inference.data.region import _write_species
    from inference.data.synth import flora

    sp = flora.make_species(12, 3)
    b0 = np.zeros(12)
    _write_species(tmp_path, sp, b0, flora.weights(sp, b0))
    got = read_species_table(tmp_path / "species" / "species.csv")
    assert [s.id for s in got] == list(sp["id"]) and [s.name for s in got] == list(sp["name"])
    assert [s.guild for s in got] == list(sp["guild"]) and [s.pft for s in got] == list(sp["pft"])
    assert [s.tree for s in got] == list(sp["tree"]) and [s.iucn for s in got] == list(sp["iucn"])
    np.testing.assert_allclose([s.target_prevalence for s in got], sp["target_prevalence"], rtol=1e-5)
    for k, t in enumerate(("Height", "LeafArea", "SLA", "Leaf_N")):
        np.testing.assert_allclose([s.traits[t].logmean for s in got], sp["trait_logmean"][:, k], atol=1e-4)
        np.testing.assert_allclose([s.traits[t].logsd for s in got], sp["trait_logsd"][:, k], rtol=1e-3)


# ============================================================================================
# the command
# ============================================================================================

def test_cli_species_import(lists, tmp_path):
    out = tmp_path / "cli" / "species.csv"
    args = ["species", "import", str(lists["table"]), "--out", str(out)]
    for opt in ("directive", "invasive", "redlist", "growth_form", "endemic", "traits"):
        args += [f"--{opt.replace('_', '-')}", str(lists[opt])]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].endswith(f"8 species -> {out}")
    table = {ln.split()[0]: ln.split()[1:6] for ln in lines[2:8]}
    assert table == {"directive": ["3", "3", "2", "6", "1"], "invasive": ["1", "1", "1", "7", "0"],
                     "redlist": ["7", "5", "4", "4", "1"], "growth_form": ["6", "6", "6", "2", "0"],
                     "endemic": ["2", "2", "1", "7", "1"], "traits": ["4", "3", "3", "5", "0"]}
    assert "growth_form unmatched: Arnica montana L., Gentiana lutea subsp. symphyandra (Murb.) Hayek" in res.output
    sp = {s.id: s for s in read_species_table(out)}
    assert sp[12].eu_directive and sp[12].iucn == "NT" and sp[13].invasive and sp[17].endemic
    assert sp[10].conifer and sp[10].traits["Height"].median == 30


def test_cli_errors_are_messages(lists, tmp_path):
    bad = write(tmp_path, "bad.csv", "speciesId,name\n1,Abies alba\n1,Picea abies\n")
    res = CliRunner().invoke(main, ["species", "import", str(bad), "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 1 and "bad.csv line 3, field 'speciesId': expected a unique species id" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "o.csv").exists()
    res = CliRunner().invoke(main, ["species", "import", str(lists["table"])])
    assert res.exit_code == 2 and "--out" in res.output


# ============================================================================================
# error messages
# ============================================================================================

def test_species_table_errors(tmp_path):
    p = write(tmp_path, "t1.csv", "taxon,scientificName\n1,Abies alba\n")
    assert_message(error(read_table_species, p), p, "line 1", "species id column", "'speciesId'", "columns 'taxon'")
    p = write(tmp_path, "t2.csv", "id,genus\n1,Abies\n")
    assert_message(error(read_table_species, p), p, "line 1", "scientific name column", "'scientificName'")
    p = write(tmp_path, "t3.csv", "speciesId,scientificName\n1,Abies alba\n2,Picea abies\n1,Pinus cembra\n")
    assert_message(error(read_table_species, p), p, "line 4", "'speciesId'", "unique species id (also on line 2)",
                   "got '1'")
    p = write(tmp_path, "t4.csv", "speciesId,scientificName\n1,Abies alba\nx12,Picea abies\n")
    assert_message(error(read_table_species, p), p, "line 3", "'speciesId'", "an integer species id", "got 'x12'")
    p = write(tmp_path, "t5.csv", "speciesId,scientificName\n1,Abies alba\n2.5,Picea abies\n")
    assert_message(error(read_table_species, p), p, "line 3", "an integer species id", "got '2.5'")
    p = write(tmp_path, "t6.csv", "speciesId,scientificName\n1,Abies alba\n2,  \n")
    assert_message(error(read_table_species, p), p, "line 3", "'scientificName'", "expected a scientific name")


def test_list_errors(tmp_path):
    p = write(tmp_path, "g.csv", "verbatimScientificName,scientificName,key,kingdom\nAbies alba,Abies alba Mill.,1,Plantae\n")
    assert_message(error(read_directive_list, p), p, "line 1", "'canonicalName'")
    p = write(tmp_path, "r1.csv", "scientificName,criteria\nAbies alba,B1\n")
    assert_message(error(read_redlist, p), p, "line 1", "Red List category column", "'redlistCategory'",
                   "'europeanRegionalRedListCategory'", "columns 'scientificName', 'criteria'")
    p = write(tmp_path, "r2.csv", "category\nLC\n")
    assert_message(error(read_redlist, p), p, "line 1", "scientific name column", "'taxonName'")
    p = write(tmp_path, "r3.csv", "species,category\nAbies alba,LC\nPicea abies,threatened\n")
    assert_message(error(read_redlist, p), p, "line 3", "field 'category'", "an IUCN category (EX, EW, RE, CR",
                   "got 'threatened'")
    p = write(tmp_path, "gf1.csv", "species,family\nAbies alba,Pinaceae\n")
    assert_message(error(read_growth_form_list, p), p, "line 1", "growth form or woodiness column", "'growthForm'",
                   "'woody'")
    p = write(tmp_path, "gf2.csv", "species,woody\nAbies alba,yes\nAnemone nemorosa,perhaps\n")
    assert_message(error(read_growth_form_list, p), p, "line 3", "field 'woody'", "woodiness (yes / no", "got 'perhaps'")
    p = write(tmp_path, "gf3.csv", "growth_form\ntree\n")
    assert_message(error(read_growth_form_list, p), p, "line 1", "scientific name column")
    p = write(tmp_path, "e.csv", "id,region\n1,Alps\n")
    assert_message(error(read_endemic_list, p), p, "line 1", "scientific name column", "columns 'id', 'region'")
    p = write(tmp_path, "tr1.csv", "Height_median,SLA_median\n3,20\n")
    assert_message(error(read_trait_table, p), p, "line 1", "species name column", "'species'")
    p = write(tmp_path, "tr2.csv", "species,height,sla\nAbies alba,30,8\n")
    assert_message(error(read_trait_table, p), p, "line 1", "at least one trait median column", "Height_median")
    p = write(tmp_path, "tr3.csv", "species,Height_median\nAbies alba,30\nPicea abies,0\n")
    assert_message(error(read_trait_table, p), p, "line 3", "field 'Height_median'", "a number > 0 or an empty field")
    p = write(tmp_path, "tr4.csv", "species,SLA_median,SLA_sd\nAbies alba,8,high\n")
    assert_message(error(read_trait_table, p), p, "line 2", "field 'SLA_sd'", "got 'high'")
    p = write(tmp_path, "tr5.csv", "species,Leaf_N_median,Leaf_N_lowerbound,Leaf_N_upperbound\nAbies alba,12,15,10\n")
    assert_message(error(read_trait_table, p), p, "line 2", "'Leaf_N_upperbound'", "an upper bound >= Leaf_N_lowerbound (15)")


def test_species_table_format_errors(lists, tmp_path):
    out = tmp_path / "geoflora.csv"
    import_species(lists["table"], out)
    text = out.read_text()
    p = write(tmp_path, "no_iucn.csv", text.replace(",iucn,", ",status,", 1))
    assert_message(error(read_species_table, p), p, "line 1", "a column 'iucn' in the header")
    lines = text.splitlines()
    row = lines[1].split(",")
    for col, value, expected in (("eu_directive", "maybe", "1, 0 or an empty field"),
                                 ("iucn", "XX", "an IUCN category"), ("id", "ten", "an integer species id"),
                                 ("Height_median", "-2", "a number > 0 or an empty field"),
                                 ("name", "", "a scientific name")):
        bad = row.copy()
        bad[SPECIES_TABLE_COLUMNS.index(col)] = value
        p = write(tmp_path, f"bad_{col}.csv", "\n".join([lines[0], lines[2], ",".join(bad)]) + "\n")
        assert_message(error(read_species_table, p), p, "line 3", f"field '{col}'", expected)
    p = write(tmp_path, "dup.csv", "\n".join([lines[0], lines[1], lines[1]]) + "\n")
    assert_message(error(read_species_table, p), p, "line 3", "a unique species id (also on line 2)")
