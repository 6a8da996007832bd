"""The EUNIS habitat table (inference.data.eunis): the built-in list, a loaded EUNIS list file (the
real EUNIS 2021 list when ``shared/reference`` is there), idempotent loading, names, hierarchy and
the error for a code no list knows."""

from __future__ import annotations

import pytest

from backend.core.errors import DataFormatError, NotFound
from inference.data import eunis, readers
from tests.data.test_readers import REFERENCE_DIR

REAL = REFERENCE_DIR / "eunis2021_habitats.csv"
needs_real_list = pytest.mark.skipif(not REAL.is_file(), reason=f"the EUNIS 2021 list is not at {REAL}")


@pytest.fixture(autouse=True)
def own_table(monkeypatch):
    """Each test loads into its own copy of the process-wide table (other tests see the built-in one)."""
    monkeypatch.setattr(eunis, "_TABLE", eunis.table().copy())


def test_unknown_code_names_the_code_and_the_list_to_load():
    with pytest.raises(eunis.UnknownHabitatCode) as ei:
        eunis.habitat("N1A")
    msg = str(ei.value)
    assert msg.startswith("unknown EUNIS code 'N1A': not in the built-in list; load the EUNIS list that has it")
    assert "eunis.load_list(path)" in msg and "eunis2021_habitats.csv" in msg
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, NotFound)  # callers catching KeyError still do
    with pytest.raises(KeyError):
        eunis.at_level("N1A", 1)


def test_a_loaded_list_adds_codes_wins_names_and_closes_the_hierarchy(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("Code,Name\nR22,Renamed hay meadow \nN,Coastal habitats\nN1,Coastal dunes\nN1A,Dune scrub\n"
                    "MA221,A saltmarsh\n")
    n_builtin = len(eunis.table())
    assert eunis.load_list(path) == ["R22", "N", "N1", "N1A", "MA221"]
    assert eunis.habitat("R22").name == "Renamed hay meadow" and eunis.habitat("R22").source == "mine.csv"
    assert eunis.habitat("R2").source == eunis.BUILTIN  # the rest of the built-in list stays
    assert eunis.ancestors("N1A") == ["N1", "N"] and eunis.at_level("N1A", 2) == "N1"
    assert [h.code for h in eunis.children("N1")] == ["N1A"]
    # the parents of MA221 the file does not list get a placeholder name
    assert eunis.ancestors("MA221") == ["MA22", "MA2", "MA", "M"]
    assert eunis.habitat("MA2").name == "(not in mine.csv: parent of MA22)" and eunis.level("MA2") == 3
    assert eunis.at_level("MA221", 3) == "MA2" and eunis.at_level("MA221", 1) == "M"
    assert len(eunis.table()) == n_builtin + 3 + 1 + 4  # N, N1, N1A; MA221; MA22, MA2, MA, M
    for h in eunis.all_types():
        assert h.parent is None or h.parent in eunis.table()
    # idempotent; a changed file is read again; HABITAT_TYPES stays the built-in list
    assert eunis.load_list(path) == ["R22", "N", "N1", "N1A", "MA221"] and eunis.table().files == [str(path.resolve())]
    path.write_text("Code,Name\nR22,Hay meadow again\n")
    assert eunis.load_list(path) == ["R22"] and eunis.habitat("R22").name == "Hay meadow again"
    assert eunis.habitat("N1A").name == "Dune scrub"  # loading only adds
    assert next(h for h in eunis.HABITAT_TYPES if h.code == "R22").name == "Low and medium altitude hay meadow"
    with pytest.raises(eunis.UnknownHabitatCode, match="not in the built-in list nor in the loaded list"
                       r"\(s\) mine.csv; load"):
        eunis.habitat("X99")


def test_a_bad_list_is_a_data_format_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Code,Name\nR22,Hay meadow\nr23,lower case\n")
    with pytest.raises(DataFormatError, match="bad.csv line 3, field 'Code': expected a EUNIS code"):
        eunis.load_list(path)
    assert "R22" in eunis.table() and eunis.habitat("R22").source == eunis.BUILTIN  # nothing loaded
    assert readers.read_eunis_codes is eunis.read_eunis_codes  # one reader
    with pytest.raises(FileNotFoundError):
        eunis.load_list(tmp_path / "none.csv")


@needs_real_list
def test_the_real_eunis_2021_list():
    codes = eunis.load_list(REAL)
    assert len(codes) == 331 and eunis.load_list(REAL) == codes
    for code in codes:  # every code resolves, with the file's name, and the code's level and parent
        h = eunis.habitat(code)
        assert h.source == REAL.name and h.level == eunis.code_level(code) and h.parent == eunis.code_parent(code)
        assert eunis.at_level(code, 1) == code[0]
    assert eunis.ancestors("R22") == ["R2", "R"] and eunis.parent("R2") == "R" and eunis.level("R22") == 3
    assert eunis.habitat("R22").name == "Low and medium altitude hay meadow"
    assert eunis.habitat("N1").name == "Coastal dunes and sandy shores"  # trailing spaces stripped
    assert eunis.level("MA211") == 5 and eunis.ancestors("MA211") == ["MA21", "MA2", "MA", "M"]
    assert eunis.at_level("MA211", 3) == "MA2" and eunis.level("MA2") == 3
    assert eunis.habitat("MA").name == "(not in eunis2021_habitats.csv: parent of MA2)"
    assert eunis.habitat("T1E").name == "Carpinus and Quercus mesic deciduous forest"
    assert eunis.at_level("T1E", 2) == "T1" and eunis.at_level("U37", 1) == "U"
    assert {h.code for h in eunis.children("MA21")} == {"MA211"}
    assert len(list(eunis.all_types(3))) == 273  # 268 of the list, 5 built-in 2012 codes (C1.3, C2.3, J1.x, J4.2)
    assert eunis.habitat("C1.3").source == eunis.BUILTIN
    with pytest.raises(eunis.UnknownHabitatCode, match="'R99'.*nor in the loaded list\\(s\\) eunis2021_habitats.csv"):
        eunis.habitat("R99")
