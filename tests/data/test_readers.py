"""Readers and writers of the real data formats (inference/data/readers.py).

Real samples are read in place from shared/reference (never copied into the repository):
``$GEOFLORA_REFERENCE_DIR`` or ``<repo>/../shared/reference``. Formats without a real sample
(PA CSV, GLC24 JPEGs, PlantTraitNet CSV, Observations TSV) are written to tmp_path here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.data.readers import (
    CLIMATE_VARIABLES,
    PA_COLUMNS,
    DataFormatError,
    PASurvey,
    PASurveys,
    TraitTable,
    eunis_ancestors,
    eunis_level,
    eunis_parent,
    glc24_patch_path,
    glc25_to_glc24_uint8,
    is_plantbert_habitat_class,
    read_climate_cube,
    read_eunis_codes,
    read_geoplant_pa,
    read_landsat_cube,
    read_plantbert_observations,
    read_planttraitnet_csv,
    read_s2_glc24,
    read_s2_glc25,
    read_species_list,
    write_geoplant_pa,
    write_plantbert_observations,
    write_planttraitnet_csv,
)

REFERENCE_DIR = Path(
    os.environ.get("GEOFLORA_REFERENCE_DIR")
    or Path(__file__).resolve().parents[2].parent / "shared" / "reference"
)
SAMPLES = REFERENCE_DIR / "geoplant_samples"
CLIMATE_PT = SAMPLES / "GLC24-PA-train-bioclimatic_monthly_1322301_cube.pt"
LANDSAT_PT = SAMPLES / "GLC24-PA-train-landsat-time-series_1322301_cube.pt"
S2_TIFF = SAMPLES / "s2.tiff"

needs_reference = pytest.mark.skipif(
    not REFERENCE_DIR.is_dir(),
    reason=f"real reference samples not found at {REFERENCE_DIR} (set GEOFLORA_REFERENCE_DIR)",
)


def assert_message(exc: DataFormatError, path: Path, *parts: str) -> None:
    """The message names the file and contains every part (line, field, expectation, value)."""
    msg = str(exc)
    assert path.name in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


# ============================================================================================
# Real samples
# ============================================================================================


@needs_reference
class TestRealEunis:
    def test_codes_names_levels(self):
        codes = read_eunis_codes(REFERENCE_DIR / "eunis2021_habitats.csv")
        assert len(codes) == 331
        r22 = codes["R22"]
        assert r22.name == "Low and medium altitude hay meadow"
        assert (r22.level, r22.parent) == (3, "R2")
        assert codes["R"].name == "Grasslands and lands dominated by forbs, mosses or lichens"
        assert codes["R"].level == 1 and codes["R"].parent is None
        # trailing spaces in the real file are stripped
        assert codes["N1"].name == "Coastal dunes and sandy shores"
        assert codes["N1A"].level == 3 and codes["N1A"].parent == "N1"
        # the littoral MA2 branch goes down to level 5; its parent MA is not in the file
        assert codes["MA2"].level == 3 and codes["MA2"].parent == "MA" and "MA" not in codes
        assert codes["MA22"].level == 4
        ma221 = codes["MA221"]
        assert ma221.name == "Atlantic saltmarsh driftline"
        assert (ma221.level, ma221.parent) == (5, "MA22")
        assert codes["MA223"].name == (
            "Atlantic upper-mid saltmarsh and saline and brackish reed, rush and sedge bed"
        )
        levels = [h.level for h in codes.values()]
        assert levels.count(1) == 7  # N, Q, R, S, T, U, V
        assert levels.count(5) == 11
        assert list(codes)[:2] == ["MA2", "MA21"]  # file order
        # Pl@ntBERT targets: 267 terrestrial level-3 codes + 11 MA2xx
        assert sum(map(is_plantbert_habitat_class, codes)) == 278

    def test_hierarchy_helpers(self):
        assert [eunis_level(c) for c in ("R", "R2", "R22", "MA2", "MA22", "MA221")] == [1, 2, 3, 3, 4, 5]
        assert eunis_parent("R22") == "R2" and eunis_parent("R") is None
        assert eunis_ancestors("MA221") == ["MA22", "MA2", "MA", "M"]
        assert eunis_ancestors("R22") == ["R2", "R"]
        assert eunis_level("C1.3") == 3 and eunis_parent("C1.3") == "C1"
        assert is_plantbert_habitat_class("R22") and is_plantbert_habitat_class("MA221")
        assert not is_plantbert_habitat_class("MA22") and not is_plantbert_habitat_class("R2")


@needs_reference
class TestRealSpeciesLists:
    def test_habitats_directive(self):
        rows = read_species_list(REFERENCE_DIR / "habitats_directive_art17_gbif.csv", "habitats_directive")
        assert len(rows) == 688
        assert all(r.kingdom == "Plantae" and r.kind == "habitats_directive" for r in rows)
        by_name = {r.verbatim_name: r for r in rows}
        arnica = by_name["Arnica montana"]
        assert arnica.gbif_key == 5405976 and arnica.accepted_key == 5405976
        assert arnica.scientific_name == "Arnica montana L." and arnica.canonical_name == "Arnica montana"
        assert (arnica.rank, arnica.status, arnica.match_type, arnica.confidence) == ("SPECIES", "ACCEPTED", "EXACT", 97)
        # a synonym: accepted key and accepted species come from acceptedUsageKey / species
        zoysii = by_name["Campanula zoysii"]
        assert (zoysii.gbif_key, zoysii.accepted_key) == (5414059, 3168046)
        assert zoysii.status == "SYNONYM" and zoysii.accepted_species == "Favratia zoysii"
        # genus-level match with an empty 'species' field
        assert by_name["Sphagnum spp."].rank == "GENUS" and by_name["Sphagnum spp."].accepted_species == ""
        # the real file has no annex column
        assert all(r.annex is None for r in rows)
        # s.l. and s.str. rows share one GBIF key; both are kept
        assert [r.verbatim_name for r in rows if r.gbif_key == 9502874] == [
            "Hedlundia teodori s.l.",
            "Hedlundia teodori s.str.",
        ]
        # an unmatched plant (matchType NONE, empty kingdom) is not a Plantae row
        assert "Liparis loeselii" not in by_name
        everything = read_species_list(REFERENCE_DIR / "habitats_directive_art17_gbif.csv", "habitats_directive", kingdom=None)
        assert len(everything) == 1424
        liparis = next(r for r in everything if r.verbatim_name == "Liparis loeselii")
        assert liparis.match_type == "NONE" and liparis.gbif_key == 0 and liparis.kingdom == ""

    def test_invasive(self):
        rows = read_species_list(REFERENCE_DIR / "invasive_union_concern_gbif.csv", "invasive")
        assert len(rows) == 40
        by_canonical = {r.canonical_name: r for r in rows}
        pistia = by_canonical["Pistia stratiotes"]
        assert pistia.gbif_key == 2870583 and pistia.scientific_name == "Pistia stratiotes L."
        eich = by_canonical["Eichhornia crassipes"]
        assert (eich.gbif_key, eich.accepted_key, eich.accepted_species) == (2765940, 2765942, "Pontederia crassipes")
        assert by_canonical["Salvinia molesta"].scientific_name == "Salvinia ×molesta D.S.Mitch."  # UTF-8
        assert len(read_species_list(REFERENCE_DIR / "invasive_union_concern_gbif.csv", "invasive", kingdom="Animalia")) == 47

    def test_unknown_kind(self):
        with pytest.raises(ValueError, match="kind"):
            read_species_list(REFERENCE_DIR / "invasive_union_concern_gbif.csv", "protected")


@needs_reference
class TestRealCubes:
    def test_climate_cube(self):
        c = read_climate_cube(CLIMATE_PT)
        assert c.shape == (4, 19, 12) and c.dtype == torch.float32 and c.is_contiguous()
        assert c[0, 0, 0].item() == 5169.0  # precipitation, 2000, January
        assert c[1, 5, 6].item() == 2917.0  # mean temperature (0.1 K), 2005, July
        assert c[:, 0, 0].tolist() == [5169.0, 2773.0, 2791.0, 2750.0]
        # variable order pr, tas, tasmax, tasmin: tasmax >= tas >= tasmin everywhere
        assert CLIMATE_VARIABLES == ("pr", "tas", "tasmax", "tasmin")
        assert bool((c[2] >= c[1]).all()) and bool((c[1] >= c[3]).all())
        assert c.min().item() == 328.0 and c.max().item() == 21042.0

    def test_landsat_cube(self):
        t = read_landsat_cube(LANDSAT_PT)
        assert t.shape == (6, 4, 21) and t.dtype == torch.float32 and t.is_contiguous()
        assert t[:, 0, 0].tolist() == [17.0, 18.0, 9.0, 69.0, 53.0, 27.0]
        assert t[3, 0].tolist()[:4] == [69.0, 82.0, 70.0, 77.0]
        assert t.min().item() == 4.0 and t.max().item() == 93.0

    def test_cube_readers_check_the_shape(self):
        with pytest.raises(DataFormatError) as ei:
            read_landsat_cube(CLIMATE_PT)
        assert_message(ei.value, CLIMATE_PT, "'shape'", "[6, 4, 21]", "[4, 19, 12]")
        assert ei.value.field == "shape" and ei.value.line is None


@needs_reference
class TestRealSentinel2Glc25:
    def test_read(self):
        arr, profile = read_s2_glc25(S2_TIFF)
        assert arr.dtype == np.uint16 and arr.shape == (4, 64, 64)
        assert arr[:, 0, 0].tolist() == [935, 703, 537, 2848]
        assert arr[:, 10, 20].tolist() == [555, 742, 445, 4520]
        assert arr.max() == 5308
        assert profile["dtype"] == "uint16" and profile["count"] == 4
        assert profile["crs"].to_epsg() == 3035  # the file's unnamed LAEA is EPSG:3035
        assert (profile["transform"].c, profile["transform"].f, profile["transform"].a) == (3498370.0, 3360010.0, 10.0)

    def test_to_glc24_convention(self):
        arr, _ = read_s2_glc25(S2_TIFF)
        u8 = glc25_to_glc24_uint8(arr)
        assert u8.dtype == np.uint8 and u8.shape == arr.shape
        # by hand: 255 * (935 / 10000) ** 0.4 = 98.8 -> 99, ...
        assert u8[:, 0, 0].tolist() == [99, 88, 79, 154]
        # the converted patch lands near the GLC24 JPEG band means (78.8, 82.9, 71.3, 146.1)
        assert np.allclose(u8.reshape(4, -1).mean(axis=1), [78.8, 82.9, 71.3, 146.1], atol=25)


def test_glc25_to_glc24_formula():
    x = np.array([0, 1, 100, 2500, 10_000, 12_000, -5, 65535], dtype=np.float64)
    out = glc25_to_glc24_uint8(x)
    expected = [round(255 * (min(max(v, 0), 10_000) / 10_000) ** (1 / 2.5)) for v in x]
    assert out.tolist() == expected
    assert out[4] == 255 and out[5] == 255 and out[6] == 0
    assert glc25_to_glc24_uint8(np.array([np.nan, 50.0]), nodata=50.0).tolist() == [0, 0]
    assert glc25_to_glc24_uint8(np.arange(0, 10_001, 7, dtype=np.uint16)).tolist() == sorted(
        glc25_to_glc24_uint8(np.arange(0, 10_001, 7, dtype=np.uint16)).tolist()
    )


# ============================================================================================
# GeoPlant PA CSV (no real sample: written here)
# ============================================================================================

PA_SAMPLE = (
    "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId\n"
    "3.0957,43.7181,2017,10.0,100.0,MEDITERRANEAN,France,6874.0,212\n"
    "3.0957,43.7181,2017,10.0,100.0,MEDITERRANEAN,France,476.0,212\n"
    "-1.5,47.25,2019,,,ATLANTIC,France,11.0,405\n"
    "3.0957,43.7181,2017,10.0,100.0,MEDITERRANEAN,France,6874.0,212\n"
    "10.2,51.1,2021,5.0,,CONTINENTAL,Germany,,900\n"
    "3.0957,43.7181,2017,10.0,100.0,MEDITERRANEAN,France,9.0,212\n"
)


def nan_safe(s: PASurvey) -> tuple:
    """A survey as a tuple in which NaN compares equal to NaN."""
    return tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in vars(s).values())


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


class TestGeoplantPA:
    def test_read_groups_surveys(self, tmp_path):
        s = read_geoplant_pa(write_text(tmp_path / "pa.csv", PA_SAMPLE))
        assert len(s) == 3
        assert s.survey_ids.tolist() == [212, 405, 900]  # order of first appearance
        assert s.survey_ids.dtype == np.int64 and s.lon.dtype == np.float64 and s.year.dtype == np.int32
        # float species ids ("6874.0") accepted; duplicate rows merged; file order kept
        assert s[212].species_ids == (6874, 476, 9)
        assert s[212] == PASurvey(212, 3.0957, 43.7181, 2017, (6874, 476, 9), 10.0, 100.0, "MEDITERRANEAN", "France")
        assert s[405].species_ids == (11,) and math.isnan(s[405].area_m2) and math.isnan(s[405].geo_uncertainty_m)
        assert s[900].species_ids == () and s[900].geo_uncertainty_m == 5.0  # empty speciesId
        assert s.species_indptr.tolist() == [0, 3, 4, 4]
        assert s.species_ids.tolist() == [6874, 476, 9, 11]
        assert s.lat.tolist() == [43.7181, 47.25, 51.1]
        assert s.region.tolist() == ["MEDITERRANEAN", "ATLANTIC", "CONTINENTAL"]
        assert set(s.surveys) == {212, 405, 900}
        mh = s.multi_hot(7000)
        assert mh.shape == (3, 7000) and mh.sum() == 4 and mh[0, 6874] and mh[1, 11]

    def test_header_spaces_extra_columns_bom_crlf(self, tmp_path):
        text = (
            "\ufeffsurveyId, speciesId, lat, lon, year, note\r\n"
            "7, 3, 45.5, 5.25, 2020, x\r\n"
            "7, 4, 45.5, 5.25, 2020, y\r\n"
        )
        s = read_geoplant_pa(write_text(tmp_path / "pa.csv", text))
        assert s.survey_ids.tolist() == [7] and s[7].species_ids == (3, 4)
        assert s[7].region == "" and math.isnan(s[7].area_m2)

    def test_test_split_without_species(self, tmp_path):
        text = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,surveyId\n1.0,45.0,2022,1.0,10.0,ALPINE,Italy,33\n"
        s = read_geoplant_pa(write_text(tmp_path / "pa_test.csv", text))
        assert s.survey_ids.tolist() == [33] and s[33].species_ids == ()

    def test_header_only(self, tmp_path):
        s = read_geoplant_pa(write_text(tmp_path / "pa.csv", ",".join(PA_COLUMNS) + "\n"))
        assert len(s) == 0 and s.species_indptr.tolist() == [0]

    def test_round_trip(self, tmp_path):
        surveys = [
            PASurvey(5, 2.351234567891234, 48.8566, 2018, (10, 3, 7), 12.5, 400.0, "ATLANTIC", "France"),
            PASurvey(1, -0.1, 51.5, 2020, (), math.nan, math.nan, "", "United Kingdom"),
            PASurvey(77, 14.42, 50.08, 2016, (3,), 0.0, 1e-3, "CONTINENTAL", "Czech Republic, the"),
        ]
        path = tmp_path / "out" / "pa.csv"
        write_geoplant_pa(path, surveys)
        assert path.read_text().splitlines()[0] == ",".join(PA_COLUMNS)
        back = read_geoplant_pa(path)
        assert [nan_safe(b) for b in back] == [nan_safe(a) for a in surveys]
        # and a second round trip from the vectorised form is byte-identical
        write_geoplant_pa(tmp_path / "pa2.csv", back)
        assert (tmp_path / "pa2.csv").read_bytes() == path.read_bytes()
        assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    def test_writer_rejects_bad_values(self, tmp_path):
        with pytest.raises(ValueError, match="lon/lat"):
            write_geoplant_pa(tmp_path / "pa.csv", [PASurvey(1, 0.0, 95.0, 2020)])
        with pytest.raises(ValueError, match="more than once"):
            write_geoplant_pa(tmp_path / "pa.csv", [PASurvey(1, 0.0, 5.0, 2020), PASurvey(1, 0.0, 5.0, 2020)])

    def test_non_numeric_lat_names_line_and_field(self, tmp_path):
        bad = PA_SAMPLE.replace("-1.5,47.25,2019", "-1.5,abc,2019")
        path = write_text(tmp_path / "pa.csv", bad)
        with pytest.raises(DataFormatError) as ei:
            read_geoplant_pa(path)
        e = ei.value
        assert (e.line, e.field, e.got) == (4, "lat", "abc")
        assert str(e) == f"{path} line 4, field 'lat': expected a number in [-90, 90], got 'abc'"

    @pytest.mark.parametrize(
        "old,new,line,field,expected",
        [
            ("-1.5,47.25", "-191.5,47.25", 4, "lon", "[-180, 180]"),
            (",11.0,405", ",11.5,405", 4, "speciesId", "integer"),
            (",11.0,405", ",11.0,", 4, "surveyId", "survey id"),
            ("-1.5,47.25,2019", "-1.5,47.25,", 4, "year", "year"),
            ("10.2,51.1,2021,5.0", "10.2,51.1,2021,-5.0", 6, "geoUncertaintyInM", ">= 0"),
        ],
    )
    def test_bad_values(self, tmp_path, old, new, line, field, expected):
        path = write_text(tmp_path / "pa.csv", PA_SAMPLE.replace(old, new, 1))
        with pytest.raises(DataFormatError) as ei:
            read_geoplant_pa(path)
        assert (ei.value.line, ei.value.field) == (line, field)
        assert_message(ei.value, path, f"line {line}", f"'{field}'", expected)

    def test_missing_column(self, tmp_path):
        text = "\n".join(",".join(c for c in r.split(",")[:1] + r.split(",")[2:]) for r in PA_SAMPLE.splitlines())
        path = write_text(tmp_path / "pa.csv", text)  # no 'lat'
        with pytest.raises(DataFormatError) as ei:
            read_geoplant_pa(path)
        assert (ei.value.line, ei.value.field) == (1, "lat")
        assert_message(ei.value, path, "line 1", "'lat'", "header")

    def test_inconsistent_survey(self, tmp_path):
        bad = PA_SAMPLE.replace("3.0957,43.7181,2017,10.0,100.0,MEDITERRANEAN,France,9.0", "3.0957,43.7181,2018,10.0,100.0,MEDITERRANEAN,France,9.0")
        path = write_text(tmp_path / "pa.csv", bad)
        with pytest.raises(DataFormatError) as ei:
            read_geoplant_pa(path)
        assert_message(ei.value, path, "line 7", "'year'", "survey 212", "line 2", "'2018'")

    def test_wrong_field_count(self, tmp_path):
        path = write_text(tmp_path / "pa.csv", PA_SAMPLE + "1.0,2.0,2020\n")
        with pytest.raises(DataFormatError) as ei:
            read_geoplant_pa(path)
        assert_message(ei.value, path, "line 8", "9 comma-separated fields", "3 fields")

    def test_empty_file(self, tmp_path):
        path = write_text(tmp_path / "pa.csv", "")
        with pytest.raises(DataFormatError) as ei:
            read_geoplant_pa(path)
        assert_message(ei.value, path, "line 1", "header", "empty file")

    def test_semicolon_separated(self, tmp_path):
        path = write_text(tmp_path / "pa.csv", PA_SAMPLE.replace(",", ";"))
        with pytest.raises(DataFormatError) as ei:
            read_geoplant_pa(path)
        assert_message(ei.value, path, "line 1", "comma-separated", "semicolon-separated")

    def test_not_utf8(self, tmp_path):
        path = write_text(tmp_path / "pa.csv", PA_SAMPLE.replace("France,476", "Fr\u00e4nce,476"), encoding="latin-1")
        with pytest.raises(DataFormatError) as ei:
            read_geoplant_pa(path)
        assert_message(ei.value, path, "line 3", "utf-8", "b'\\xe4'")
        # the encoding can be given
        with pytest.raises(DataFormatError, match="same country"):
            read_geoplant_pa(path, encoding="latin-1")

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            read_geoplant_pa(tmp_path / "nope.csv")


def test_pasurveys_from_surveys_dedupes_species():
    s = PASurveys.from_surveys([PASurvey(1, 0.0, 0.0, 2020, (4, 4, 2))])
    assert s.species_ids.tolist() == [4, 2]


# ============================================================================================
# Cubes: malformed inputs
# ============================================================================================


class TestCubesMalformed:
    def test_wrong_shape(self, tmp_path):
        path = tmp_path / "cube.pt"
        torch.save(torch.zeros(4, 19, 11), path)
        with pytest.raises(DataFormatError) as ei:
            read_climate_cube(path)
        assert_message(ei.value, path, "'shape'", "[4, 19, 12]", "[4, 19, 11]")

    def test_integer_dtype(self, tmp_path):
        path = tmp_path / "cube.pt"
        torch.save(torch.zeros(6, 4, 21, dtype=torch.int32), path)
        with pytest.raises(DataFormatError) as ei:
            read_landsat_cube(path)
        assert_message(ei.value, path, "'dtype'", "floating-point", "torch.int32")

    def test_float64_is_converted(self, tmp_path):
        path = tmp_path / "cube.pt"
        torch.save(torch.full((6, 4, 21), 2.5, dtype=torch.float64), path)
        t = read_landsat_cube(path)
        assert t.dtype == torch.float32 and t[0, 0, 0].item() == 2.5

    def test_nan(self, tmp_path):
        path = tmp_path / "cube.pt"
        c = torch.ones(4, 19, 12)
        c[2, 3, 4] = float("nan")
        torch.save(c, path)
        with pytest.raises(DataFormatError) as ei:
            read_climate_cube(path)
        assert_message(ei.value, path, "'value[2, 3, 4]'", "finite", "nan", "fill_nan")
        filled = read_climate_cube(path, fill_nan=0.0)
        assert filled[2, 3, 4].item() == 0.0 and filled.sum().item() == 4 * 19 * 12 - 1
        c[0, 0, 0] = float("inf")
        torch.save(c, path)
        with pytest.raises(DataFormatError, match="inf"):
            read_climate_cube(path, fill_nan=0.0)

    def test_not_a_tensor(self, tmp_path):
        path = tmp_path / "cube.pt"
        torch.save({"cube": torch.zeros(4, 19, 12)}, path)
        with pytest.raises(DataFormatError) as ei:
            read_climate_cube(path)
        assert_message(ei.value, path, "tensor of shape [4, 19, 12]", "dict")

    def test_empty_and_garbage(self, tmp_path):
        empty = tmp_path / "empty.pt"
        empty.write_bytes(b"")
        with pytest.raises(DataFormatError) as ei:
            read_climate_cube(empty)
        assert_message(ei.value, empty, "[4, 19, 12]", "empty file")
        junk = tmp_path / "junk.pt"
        junk.write_bytes(b"this is not a torch file")
        with pytest.raises(DataFormatError) as ei:
            read_landsat_cube(junk)
        assert_message(ei.value, junk, "torch-saved", "unreadable")

    @needs_reference
    def test_truncated_real_cube(self, tmp_path):
        path = tmp_path / "truncated.pt"
        path.write_bytes(CLIMATE_PT.read_bytes()[:2000])
        with pytest.raises(DataFormatError) as ei:
            read_climate_cube(path)
        assert_message(ei.value, path, "unreadable")


# ============================================================================================
# GLC24 Sentinel-2 JPEGs (no real sample: written here)
# ============================================================================================


def make_glc24_patch(rgb_dir: Path, nir_dir: Path, survey_id, rgb=(120, 60, 30), nir=200, size=128):
    from PIL import Image

    for folder, img in (
        (rgb_dir, Image.new("RGB", (size, size), rgb)),
        (nir_dir, Image.new("L", (size, size), nir)),
    ):
        p = glc24_patch_path(folder, survey_id)
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p, format="JPEG", quality=95)
    return glc24_patch_path(rgb_dir, survey_id), glc24_patch_path(nir_dir, survey_id)


class TestSentinel2Glc24:
    def test_layout(self):
        assert glc24_patch_path("rgb", 1322301) == Path("rgb/01/23/1322301.jpeg")
        assert glc24_patch_path("nir", "212") == Path("nir/12/2/212.jpeg")
        assert glc24_patch_path("s2", 1322301, ext="tiff") == Path("s2/01/23/1322301.tiff")

    def test_read(self, tmp_path):
        rgb_p, nir_p = make_glc24_patch(tmp_path / "rgb", tmp_path / "nir", 1322301)
        assert rgb_p == tmp_path / "rgb" / "01" / "23" / "1322301.jpeg"
        arr = read_s2_glc24(tmp_path, 1322301)
        assert arr.dtype == np.uint8 and arr.shape == (4, 128, 128)
        assert np.abs(arr[:, 64, 64].astype(int) - [120, 60, 30, 200]).max() <= 3  # JPEG is lossy

    def test_glc24_archive_folder_names(self, tmp_path):
        make_glc24_patch(tmp_path / "pa_train_patches_rgb", tmp_path / "pa_train_patches_nir", 42, nir=10)
        a = read_s2_glc24(tmp_path, 42)
        b = read_s2_glc24(tmp_path / "pa_train_patches_rgb", 42)  # the RGB folder itself
        c = read_s2_glc24(tmp_path / "x", 42, rgb_dir=tmp_path / "pa_train_patches_rgb", nir_dir=tmp_path / "pa_train_patches_nir")
        assert np.array_equal(a, b) and np.array_equal(a, c) and abs(int(a[3, 0, 0]) - 10) <= 3

    def test_truncated_jpeg(self, tmp_path):
        rgb_p, _ = make_glc24_patch(tmp_path / "rgb", tmp_path / "nir", 1322301)
        from PIL import Image

        noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
        noisy.save(rgb_p, format="JPEG")
        rgb_p.write_bytes(rgb_p.read_bytes()[: rgb_p.stat().st_size // 2])
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc24(tmp_path, 1322301)
        assert_message(ei.value, rgb_p, "1322301.jpeg", "complete 3-channel (RGB) Sentinel-2 RGB JPEG", "128 x 128", "unreadable")

    def test_empty_jpeg(self, tmp_path):
        _, nir_p = make_glc24_patch(tmp_path / "rgb", tmp_path / "nir", 77)
        nir_p.write_bytes(b"")
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc24(tmp_path, 77)
        assert_message(ei.value, nir_p, "NIR", "empty file")

    def test_wrong_size_and_mode(self, tmp_path):
        make_glc24_patch(tmp_path / "rgb", tmp_path / "nir", 5, size=64)
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc24(tmp_path, 5)
        assert ei.value.field == "size"
        assert_message(ei.value, Path("5.jpeg"), "'size'", "128 x 128", "64 x 64")
        assert read_s2_glc24(tmp_path, 5, size=None).shape == (4, 64, 64)
        from PIL import Image

        nir_p = glc24_patch_path(tmp_path / "nir", 5)
        Image.new("RGB", (64, 64), (1, 2, 3)).save(nir_p, format="JPEG")
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc24(tmp_path, 5, size=None)
        assert_message(ei.value, nir_p, "'mode'", "single-channel", "mode RGB")

    def test_missing(self, tmp_path):
        make_glc24_patch(tmp_path / "rgb", tmp_path / "nir", 5)
        with pytest.raises(FileNotFoundError):
            read_s2_glc24(tmp_path, 6)
        with pytest.raises(FileNotFoundError, match="NIR folder"):
            read_s2_glc24(tmp_path / "rgb" / "05", 5)


# ============================================================================================
# GLC25 GeoTIFF: malformed inputs
# ============================================================================================


def write_tiff(path: Path, data: np.ndarray, descriptions=None, nodata=None):
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype=data.dtype.name, crs="EPSG:3035", transform=Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0), nodata=nodata,
    ) as ds:
        ds.write(data)
        if descriptions:
            for i, d in enumerate(descriptions, 1):
                ds.set_band_description(i, d)
    return path


class TestSentinel2Glc25Malformed:
    def test_int16_nodata_becomes_zero(self, tmp_path):
        data = np.full((4, 8, 8), 500, dtype=np.int16)
        data[:, 0, 0] = -1
        data[1, 2, 2] = -7
        path = write_tiff(tmp_path / "s2.tiff", data, ["red", "green", "blue", "nir"], nodata=-1)
        arr, profile = read_s2_glc25(path)
        assert arr.dtype == np.uint16 and arr[:, 0, 0].tolist() == [0, 0, 0, 0] and arr[1, 2, 2] == 0
        assert arr[0, 1, 1] == 500 and profile["nodata"] == 0 and profile["crs"].to_epsg() == 3035

    def test_uint16_without_descriptions(self, tmp_path):
        data = np.arange(4 * 4 * 4, dtype=np.uint16).reshape(4, 4, 4) * 300
        arr, _ = read_s2_glc25(write_tiff(tmp_path / "s2.tiff", data))
        assert np.array_equal(arr, data)

    def test_wrong_band_count(self, tmp_path):
        path = write_tiff(tmp_path / "s2.tiff", np.zeros((3, 8, 8), dtype=np.uint16))
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc25(path)
        assert_message(ei.value, path, "'count'", "4-band", "3 bands")

    def test_wrong_band_order(self, tmp_path):
        path = write_tiff(tmp_path / "s2.tiff", np.zeros((4, 8, 8), dtype=np.uint16), ["blue", "green", "red", "nir"])
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc25(path)
        assert_message(ei.value, path, "'descriptions'", "red, green, blue, nir", "blue, green, red, nir")

    def test_float_dtype(self, tmp_path):
        path = write_tiff(tmp_path / "s2.tiff", np.zeros((4, 8, 8), dtype=np.float32))
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc25(path)
        assert_message(ei.value, path, "'dtype'", "float32")

    def test_empty_and_truncated(self, tmp_path):
        empty = tmp_path / "empty.tiff"
        empty.write_bytes(b"")
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc25(empty)
        assert_message(ei.value, empty, "4-band", "empty file")
        junk = tmp_path / "junk.tiff"
        junk.write_bytes(b"II*\x00garbage")
        with pytest.raises(DataFormatError) as ei:
            read_s2_glc25(junk)
        assert_message(ei.value, junk, "GeoTIFF", "unreadable")


# ============================================================================================
# EUNIS and species lists: malformed inputs
# ============================================================================================


class TestEunisMalformed:
    def test_bad_code(self, tmp_path):
        path = write_text(tmp_path / "eunis.csv", "Code,Name\nR,Grasslands\nr22,Hay meadow\n")
        with pytest.raises(DataFormatError) as ei:
            read_eunis_codes(path)
        assert (ei.value.line, ei.value.field, ei.value.got) == (3, "Code", "r22")
        assert_message(ei.value, path, "line 3", "'Code'", "EUNIS code", "'r22'")

    def test_duplicate_and_empty_name(self, tmp_path):
        path = write_text(tmp_path / "eunis.csv", "Code,Name\nR,Grasslands\nR,Again\n")
        with pytest.raises(DataFormatError, match="line 3, field 'Code': expected each code once"):
            read_eunis_codes(path)
        path = write_text(tmp_path / "eunis.csv", 'Code,Name\nR,Grasslands\n"R2",  \n')
        with pytest.raises(DataFormatError, match="line 3, field 'Name': expected a habitat name"):
            read_eunis_codes(path)

    def test_quoted_multiline_record_line_number(self, tmp_path):
        path = write_text(tmp_path / "eunis.csv", 'Code,Name\nR,"Grass\nlands"\nR2,Mesic\n9X,Bad\n')
        with pytest.raises(DataFormatError) as ei:
            read_eunis_codes(path)
        assert ei.value.line == 5
        assert read_eunis_codes(write_text(tmp_path / "ok.csv", 'Code,Name\nR,"Grass, and lands"\n'))["R"].name == "Grass, and lands"

    def test_missing_column_and_empty(self, tmp_path):
        path = write_text(tmp_path / "eunis.csv", "Code,Label\nR,Grasslands\n")
        with pytest.raises(DataFormatError) as ei:
            read_eunis_codes(path)
        assert_message(ei.value, path, "line 1", "'Name'", "'Code', 'Label'")
        empty = write_text(tmp_path / "empty.csv", "")
        with pytest.raises(DataFormatError, match="empty file"):
            read_eunis_codes(empty)


SPECIES_HEADER = "occurrenceId,verbatimScientificName,scientificName,key,matchType,confidence,status,rank,kingdom,phylum,class,order,family,genus,species,canonicalName,authorship,usageKey,acceptedUsageKey\n"


class TestSpeciesListMalformed:
    def test_non_integer_key(self, tmp_path):
        text = (
            SPECIES_HEADER
            + ',"Arnica montana","Arnica montana L.","5405976","EXACT","97","ACCEPTED","SPECIES","Plantae","Tracheophyta","Magnoliopsida","Asterales","Asteraceae","Arnica","Arnica montana","Arnica montana","L.","5405976",\n'
            + ',"Pistia stratiotes","Pistia stratiotes L.","abc","EXACT","100","ACCEPTED","SPECIES","Plantae","Tracheophyta","Liliopsida","Alismatales","Araceae","Pistia","Pistia stratiotes","Pistia stratiotes","L.","2870583",\n'
        )
        path = write_text(tmp_path / "ias.csv", text)
        with pytest.raises(DataFormatError) as ei:
            read_species_list(path, "invasive")
        assert_message(ei.value, path, "line 3", "'key'", "integer", "'abc'")

    def test_annex_column_is_read(self, tmp_path):
        text = (
            "verbatimScientificName,scientificName,key,kingdom,canonicalName,Annex\n"
            "Arnica montana,Arnica montana L.,5405976,Plantae,Arnica montana,V\n"
            "Lynx lynx,Lynx lynx (Linnaeus 1758),2435240,Animalia,Lynx lynx,II;IV\n"
        )
        rows = read_species_list(write_text(tmp_path / "hd.csv", text), "habitats_directive")
        assert [(r.canonical_name, r.annex, r.accepted_key, r.confidence) for r in rows] == [("Arnica montana", "V", 5405976, None)]

    def test_missing_column(self, tmp_path):
        path = write_text(tmp_path / "hd.csv", "verbatimScientificName,scientificName,key,canonicalName\n")
        with pytest.raises(DataFormatError) as ei:
            read_species_list(path, "habitats_directive")
        assert_message(ei.value, path, "line 1", "'kingdom'")


# ============================================================================================
# PlantTraitNet CSV (no real sample: written here)
# ============================================================================================

TRAIT_HEADER = (
    "Image,Longitude,Latitude,PFT,"
    + ",".join(f"{t}_{s}" for t in ("Height", "LeafArea", "SLA", "Leaf_N") for s in ("median", "sd", "lowerbound", "upperbound"))
)
TRAIT_SAMPLE = (
    TRAIT_HEADER
    + ",extra\n"
    + "images/0001.jpg,7.85,47.99,Tree,21.5,6.2,15.0,28.0,2100.0,900.5,1300.0,3000.0,12.1,3.3,9.8,14.5,2.05,0.41,1.7,2.4,a\n"
    + '"images/a,b.jpg",-3.7,40.4,Grass,0.45,,0.3,0.6,310.0,120.0,220.0,400.0,21.0,5.0,17.5,24.0,2.9,0.5,2.5,3.3,b\n'
)


class TestPlantTraitNet:
    def test_read(self, tmp_path):
        t = read_planttraitnet_csv(write_text(tmp_path / "train.csv", TRAIT_SAMPLE))
        assert len(t) == 2 and t.traits == ("Height", "LeafArea", "SLA", "Leaf_N")
        assert t.image.tolist() == ["images/0001.jpg", "images/a,b.jpg"]
        assert t.pft.tolist() == ["Tree", "Grass"]
        assert t.median.shape == (2, 4) and t.median[0].tolist() == [21.5, 2100.0, 12.1, 2.05]
        assert t.column("SLA_upperbound").tolist() == [14.5, 24.0]
        assert t.column("Latitude").tolist() == [47.99, 40.4]
        assert math.isnan(t.sd[1, 0]) and t.sd[1, 1] == 120.0  # empty sd -> NaN

    def test_round_trip(self, tmp_path):
        rng = np.random.default_rng(1)
        n = 5
        lo = rng.uniform(0, 10, (n, 4))
        table = TraitTable(
            image=np.array([f"img/{i}.jpg" for i in range(n)]),
            longitude=rng.uniform(-10, 30, n),
            latitude=rng.uniform(35, 70, n),
            pft=np.array(["Tree", "Shrub", "Grass", "Tree", "Grass"]),
            median=lo + 1.0 / 3.0,
            sd=np.where(rng.random((n, 4)) < 0.2, np.nan, rng.uniform(0, 2, (n, 4))),
            lowerbound=lo,
            upperbound=lo + 1.0,
        )
        path = tmp_path / "train.csv"
        write_planttraitnet_csv(path, table)
        assert path.read_text().splitlines()[0] == TRAIT_HEADER
        back = read_planttraitnet_csv(path)
        for name in ("image", "pft", "longitude", "latitude", "median", "lowerbound", "upperbound"):
            assert np.array_equal(getattr(back, name), getattr(table, name)), name
        assert np.array_equal(back.sd, table.sd, equal_nan=True)
        # a subset of traits
        sub = TraitTable(table.image, table.longitude, table.latitude, table.pft,
                         table.median[:, :1], table.sd[:, :1], table.lowerbound[:, :1], table.upperbound[:, :1], ("Height",))
        write_planttraitnet_csv(tmp_path / "h.csv", sub)
        assert read_planttraitnet_csv(tmp_path / "h.csv", traits=["Height"]).median.shape == (5, 1)

    def test_non_numeric(self, tmp_path):
        path = write_text(tmp_path / "train.csv", TRAIT_SAMPLE.replace("21.0,5.0,17.5", "21.0,five,17.5"))
        with pytest.raises(DataFormatError) as ei:
            read_planttraitnet_csv(path)
        assert (ei.value.line, ei.value.field, ei.value.got) == (3, "SLA_sd", "five")
        assert_message(ei.value, path, "line 3", "'SLA_sd'", "a number >= 0 or an empty field", "'five'")

    def test_missing_column(self, tmp_path):
        path = write_text(tmp_path / "train.csv", TRAIT_SAMPLE.replace("Leaf_N_sd", "LeafN_sd"))
        with pytest.raises(DataFormatError) as ei:
            read_planttraitnet_csv(path)
        assert_message(ei.value, path, "line 1", "'Leaf_N_sd'")

    def test_bounds_and_sd(self, tmp_path):
        path = write_text(tmp_path / "train.csv", TRAIT_SAMPLE.replace("2.9,0.5,2.5,3.3", "2.9,0.5,3.5,3.3"))
        with pytest.raises(DataFormatError) as ei:
            read_planttraitnet_csv(path)
        assert_message(ei.value, path, "line 3", "'Leaf_N_upperbound'", "Leaf_N_lowerbound")
        path = write_text(tmp_path / "train.csv", TRAIT_SAMPLE.replace("21.5,6.2", "21.5,-6.2"))
        with pytest.raises(DataFormatError, match=r"line 2, field 'Height_sd': expected a number >= 0"):
            read_planttraitnet_csv(path)

    def test_empty_image_and_empty_file(self, tmp_path):
        path = write_text(tmp_path / "train.csv", TRAIT_SAMPLE.replace("images/0001.jpg", ""))
        with pytest.raises(DataFormatError, match="line 2, field 'Image': expected an image path"):
            read_planttraitnet_csv(path)
        empty = write_text(tmp_path / "empty.csv", "\n\n")
        with pytest.raises(DataFormatError) as ei:
            read_planttraitnet_csv(empty)
        assert_message(ei.value, empty, "header", "empty file")


# ============================================================================================
# Pl@ntBERT Observations TSV (no real sample: written here)
# ============================================================================================

OBS_SAMPLE = (
    "Observations\n"
    "Rumex acetosa, Dactylis glomerata, Taraxacum sect. Taraxacum, Ranunculus acris, Picea abies\n"
    "Urtica dioica, Quercus robur,Avenella flexuosa\n"
    "\n"
    "Poa pratensis\n"
)


class TestPlantbertObservations:
    def test_read(self, tmp_path):
        lists = read_plantbert_observations(write_text(tmp_path / "plots.tsv", OBS_SAMPLE))
        assert lists == [
            ["Rumex acetosa", "Dactylis glomerata", "Taraxacum sect. Taraxacum", "Ranunculus acris", "Picea abies"],
            ["Urtica dioica", "Quercus robur", "Avenella flexuosa"],
            ["Poa pratensis"],
        ]

    def test_extra_columns(self, tmp_path):
        text = "Observations\tHabitat\nRumex acetosa, Poa annua\tR22\n"
        assert read_plantbert_observations(write_text(tmp_path / "plots.tsv", text)) == [["Rumex acetosa", "Poa annua"]]

    def test_round_trip(self, tmp_path):
        lists = [["Fagus sylvatica", "Abies alba"], ["Calluna vulgaris"], ["Carex nigra", "Carex echinata", "Viola palustris"]]
        path = tmp_path / "plots.tsv"
        write_plantbert_observations(path, lists)
        assert path.read_text() == "Observations\nFagus sylvatica, Abies alba\nCalluna vulgaris\nCarex nigra, Carex echinata, Viola palustris\n"
        assert read_plantbert_observations(path) == lists

    def test_writer_rejects(self, tmp_path):
        for bad in ([["Abies alba, Picea abies"]], [[]], [["  "]], ["Abies alba"]):
            with pytest.raises(ValueError):
                write_plantbert_observations(tmp_path / "x.tsv", bad)

    def test_malformed(self, tmp_path):
        path = write_text(tmp_path / "plots.tsv", "Observations\nRumex acetosa, , Poa annua\n")
        with pytest.raises(DataFormatError) as ei:
            read_plantbert_observations(path)
        assert (ei.value.line, ei.value.field) == (2, "Observations")
        assert_message(ei.value, path, "line 2", "'Observations'", "name 2 is empty")
        path = write_text(tmp_path / "plots.tsv", "Species\nRumex acetosa\n")
        with pytest.raises(DataFormatError) as ei:
            read_plantbert_observations(path)
        assert_message(ei.value, path, "line 1", "'Observations'", "'Species'")
        path = write_text(tmp_path / "plots.tsv", "Observations\tHabitat\n\tR22\n")
        with pytest.raises(DataFormatError, match="line 2, field 'Observations': expected at least one species name"):
            read_plantbert_observations(path)
        path = write_text(tmp_path / "plots.tsv", "")
        with pytest.raises(DataFormatError, match="empty file"):
            read_plantbert_observations(path)


def test_data_format_error_attributes():
    e = DataFormatError("pa.csv", "a number in [-90, 90]", line=14, field="lat", got="abc")
    assert isinstance(e, ValueError)
    assert (e.file, e.line, e.field, e.expected, e.got) == ("pa.csv", 14, "lat", "a number in [-90, 90]", "abc")
    assert str(e) == "pa.csv line 14, field 'lat': expected a number in [-90, 90], got 'abc'"
    assert str(DataFormatError("a.pt", "a tensor")) == "a.pt: expected a tensor"
    import pickle

    back = pickle.loads(pickle.dumps(e))
    assert type(back) is DataFormatError and str(back) == str(e) and back.line == 14
