"""GeoPlant-format SDM samples: a tiny GLC24 / GLC25 directory built from the real format samples,
with its presence-absence surveys and presence-only records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pyproj import Transformer

from inference.data.readers import (
    PO_COLUMNS,
    DataFormatError,
    PASurvey,
    glc24_patch_path,
    glc25_to_glc24_uint8,
    read_geoplant_pa,
    read_s2_glc25,
    write_geoplant_pa,
)
from inference.grid import CELL_M
from inference.sdm.dataset import po_samples
from inference.sdm.geoplant import GeoPlantLayout, geoplant_samples
from inference.splits import CAL, TEST, TRAIN, spatial_blocks

REF = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "geoplant_samples"
pytestmark = pytest.mark.skipif(not REF.is_dir(), reason="shared reference samples not available")

# 6 sites ~10-15 km apart around Munich (well over 30 km in all), 2 surveys 300 m apart at each.
SITES = [(11.00, 48.00), (11.15, 48.05), (11.30, 48.10), (11.45, 48.15), (11.60, 48.25), (11.75, 48.35)]
SURVEY_IDS = [1322301, 1322302, 2410517, 2410533, 3000145, 3000199, 512, 4455667, 5123499, 5123400, 6000001, 6999918]
SPECIES_POOL = [3, 17, 250, 1042, 6874, 9999]
NAN_SURVEY = 2410517  # its climate cube gets a NaN, read back as 0 (fill_nan=0.0)
AREAS = [100.0, 25.0, 400.0, 100.0, 200.0, 50.0, 100.0, 16.0, 400.0, 100.0, 1000.0, 100.0]  # areaInM2

GLC24_CLIMATE = "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PA-train-bioclimatic_monthly"
GLC24_LANDSAT = "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PA-train-landsat_time_series"
GLC24_RGB = "PA_Train_SatellitePatches_RGB/pa_train_patches_rgb"
GLC24_NIR = "PA_Train_SatellitePatches_NIR/pa_train_patches_nir"


def _surveys() -> list[PASurvey]:
    rng = np.random.default_rng(3)
    out = []
    for k, sid in enumerate(SURVEY_IDS):
        lon, lat = SITES[k // 2]
        lat += 0.0027 * (k % 2)
        n = 0 if sid == 3000199 else int(rng.integers(1, 5))
        species = tuple(int(s) for s in rng.choice(SPECIES_POOL, size=n, replace=False))
        out.append(PASurvey(sid, lon, lat, 2019, species, 10.0, AREAS[k], "CONTINENTAL", "Germany"))
    return out


def _cubes(k: int, sid: int) -> tuple[torch.Tensor, torch.Tensor]:
    clim = torch.load(REF / "GLC24-PA-train-bioclimatic_monthly_1322301_cube.pt", weights_only=True)
    land = torch.load(REF / "GLC24-PA-train-landsat-time-series_1322301_cube.pt", weights_only=True)
    clim, land = clim + 0.25 * k, land * (1 + 0.01 * k)
    if sid == NAN_SURVEY:
        clim[0, 0, 0] = float("nan")
    return clim, land


def _write_cubes(root: Path, climate_dir: str, landsat_dir: str, tag: str, skip_landsat=()) -> dict:
    (root / climate_dir).mkdir(parents=True, exist_ok=True)
    (root / landsat_dir).mkdir(parents=True, exist_ok=True)
    expected = {}
    for k, sid in enumerate(SURVEY_IDS):
        clim, land = _cubes(k, sid)
        torch.save(clim, root / climate_dir / f"{tag}-PA-train-bioclimatic_monthly_{sid}_cube.pt")
        if sid not in skip_landsat:
            torch.save(land, root / landsat_dir / f"{tag}-PA-train-landsat-time-series_{sid}_cube.pt")
        expected[sid] = (torch.nan_to_num(clim, nan=0.0).numpy(), land.numpy())
    return expected


def build_glc24(root: Path, skip_landsat=()) -> dict:
    """A GLC24-layout folder; returns survey id -> (climate, landsat) as they should read back."""
    write_geoplant_pa(root / "GLC24_PA_metadata_train.csv", _surveys())
    expected = _write_cubes(root, GLC24_CLIMATE, GLC24_LANDSAT, "GLC24", skip_landsat)
    # A PA-test distractor that discovery must ignore.
    test_dir = root / "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PA-test-bioclimatic_monthly"
    test_dir.mkdir(parents=True)
    torch.save(torch.zeros(4, 19, 12), test_dir / "GLC24-PA-test-bioclimatic_monthly_1322301_cube.pt")
    rng = np.random.default_rng(5)
    for sid in SURVEY_IDS:
        rgb = glc24_patch_path(root / GLC24_RGB, sid)
        nir = glc24_patch_path(root / GLC24_NIR, sid)
        rgb.parent.mkdir(parents=True, exist_ok=True)
        nir.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), "RGB").save(rgb, "JPEG", quality=90)
        Image.fromarray(rng.integers(0, 256, (128, 128), dtype=np.uint8), "L").save(nir, "JPEG", quality=90)
    return expected


def build_glc25(root: Path) -> dict:
    """A GLC25-layout folder (cubes + 4-band GeoTIFF patches from the real s2.tiff, perturbed)."""
    import rasterio
    from rasterio.transform import from_origin

    write_geoplant_pa(root / "GLC25_PA_metadata_train.csv", _surveys())
    expected = _write_cubes(root, "BioclimTimeSeries/cubes/PA-train", "SateliteTimeSeries-Landsat/cubes/PA-train", "GLC25")
    base, _ = read_s2_glc25(REF / "s2.tiff")
    s2 = {}
    for k, sid in enumerate(SURVEY_IDS):
        arr = (np.roll(base, k, axis=-1).astype(np.int64) + 37 * k).clip(0, 65535).astype(np.uint16)
        path = glc24_patch_path(root / "SatelitePatches/PA-train", sid, ext="tiff")
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=4, dtype="uint16",
                           crs="EPSG:3035", transform=from_origin(4400000 + 640 * k, 2800000, 10, 10)) as ds:
            ds.write(arr)
            ds.descriptions = ("red", "green", "blue", "nir")
        s2[sid] = glc25_to_glc24_uint8(arr)
    return expected, s2


@pytest.fixture(scope="module")
def glc24(tmp_path_factory):
    root = tmp_path_factory.mktemp("glc24")
    expected = build_glc24(root)
    data = geoplant_samples(root, seed=1, progress=False)
    return root, expected, data


def test_discover_glc24(glc24):
    root, _, _ = glc24
    lay = GeoPlantLayout.discover(root)
    assert lay.pa_csv == root / "GLC24_PA_metadata_train.csv"
    assert lay.climate_dir == root / GLC24_CLIMATE  # not the PA-test distractor
    assert lay.landsat_dir == root / GLC24_LANDSAT
    assert lay.s2_rgb_dir == root / GLC24_RGB and lay.s2_nir_dir == root / GLC24_NIR
    assert lay.s2_tiff_dir is None and lay.s2_source == "glc24-jpeg"


def test_discover_missing_lists_what_was_looked_for(tmp_path):
    write_geoplant_pa(tmp_path / "GLC24_PA_metadata_train.csv", _surveys()[:2])
    with pytest.raises(FileNotFoundError) as err:
        GeoPlantLayout.discover(tmp_path)
    msg = str(err.value)
    for part in ("climate_dir", "landsat_dir", "Sentinel-2", "GLC24-PA-train-bioclimatic_monthly",
                 "pa_train_patches_rgb", "SatelitePatches/PA-train"):
        assert part in msg
    assert "pa_csv" not in msg


def test_samples_labels_positions_cubes(glc24):
    root, expected, data = glc24
    surveys = {s.survey_id: s for s in _surveys()}
    assert data.species_ids.tolist() == sorted({sp for s in surveys.values() for sp in s.species_ids})
    assert len(data) == len(SURVEY_IDS) and data.p_true is None and not data.is_po.any()
    to_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    for i, sid in enumerate(SURVEY_IDS):  # file order is kept
        s = surveys[sid]
        assert set(data.species_ids[data.labels[i]].tolist()) == set(s.species_ids)
        x, y = to_3035.transform(s.lon, s.lat)
        assert data.x[i] == pytest.approx(x) and data.y[i] == pytest.approx(y)
        np.testing.assert_array_equal(data.inputs["climate"][i], expected[sid][0])
        np.testing.assert_array_equal(data.inputs["landsat"][i], expected[sid][1])
    assert data.inputs["climate"][SURVEY_IDS.index(NAN_SURVEY), 0, 0, 0] == 0.0
    assert data.inputs["climate"].dtype == np.float32 and data.inputs["landsat"].shape == (12, 6, 4, 21)


def test_samples_s2_from_jpegs(glc24):
    root, _, data = glc24
    s2 = data.inputs["s2"]
    assert s2.shape == (12, 4, 128, 128) and s2.dtype == np.uint8
    for i, sid in enumerate(SURVEY_IDS):
        nir = np.asarray(Image.open(glc24_patch_path(root / GLC24_NIR, sid)))
        rgb = np.asarray(Image.open(glc24_patch_path(root / GLC24_RGB, sid)))
        np.testing.assert_array_equal(s2[i, 3], nir)
        np.testing.assert_array_equal(np.moveaxis(s2[i, :3], 0, -1), rgb)
    small = geoplant_samples(root, s2_size=100, max_surveys=10, progress=False)
    assert small.inputs["s2"].shape == (10, 4, 100, 100)
    i = SURVEY_IDS.index(_survey_at(small, 0))
    np.testing.assert_array_equal(small.inputs["s2"][0], data.inputs["s2"][i, :, 14:114, 14:114])


def test_splits_are_whole_blocks_and_summary(glc24):
    _, _, data = glc24
    np.testing.assert_array_equal(data.block, spatial_blocks(data.x, data.y))
    assert len(np.unique(data.block)) >= 4
    for b in np.unique(data.block):
        assert len(np.unique(data.split[data.block == b])) == 1
    assert {TRAIN, CAL, TEST} <= set(data.split.tolist())
    s = data.summary
    assert s.surveys_in_file == s.surveys_read == 12 and s.n_dropped == 0
    assert s.dropped == {"climate": 0, "landsat": 0, "s2": 0}
    assert s.n_species == len(data.species_ids) and s.s2_source == "glc24-jpeg" and s.s2_size == 128
    assert sum(s.samples_per_split.values()) == 12
    assert s.samples_per_split["test"] == int((data.split == TEST).sum())
    assert "12 of 12 surveys" in str(s)


def test_species_override(glc24):
    root, _, _ = glc24
    data = geoplant_samples(root, species_ids=[9999, 3, 123456], progress=False)
    surveys = {s.survey_id: s for s in _surveys()}
    for i, sid in enumerate(SURVEY_IDS):
        sp = surveys[sid].species_ids
        assert data.labels[i].tolist() == [9999 in sp, 3 in sp, False]
    assert data.summary.species_without_presence >= 1
    assert data.summary.records_outside_species == sum(
        len([x for x in s.species_ids if x not in (9999, 3)]) for s in surveys.values())


def test_missing_cube_dropped_or_error(tmp_path):
    gone = 4455667
    build_glc24(tmp_path, skip_landsat=(gone,))
    data = geoplant_samples(tmp_path, progress=False)
    assert len(data) == 11 and gone not in [_survey_at(data, i) for i in range(len(data))]
    s = data.summary
    assert s.n_dropped == 1 and s.dropped == {"climate": 0, "landsat": 1, "s2": 0}
    assert list(s.missing) == [gone] and f"_{gone}_cube.pt" in s.missing[gone][0]
    with pytest.raises(DataFormatError) as err:
        geoplant_samples(tmp_path, on_missing="error", progress=False)
    msg = str(err.value)
    assert str(gone) in msg and f"GLC24-PA-train-landsat-time-series_{gone}_cube.pt" in msg
    assert err.value.file.endswith(f"GLC24-PA-train-landsat-time-series_{gone}_cube.pt")


def _survey_at(data, i) -> int:
    """Survey id of sample ``i``, found by its position."""
    to_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    for s in _surveys():
        x, y = to_3035.transform(s.lon, s.lat)
        if abs(x - data.x[i]) < 1e-6 and abs(y - data.y[i]) < 1e-6:
            return s.survey_id
    raise AssertionError("no survey at this position")


def test_missing_s2_jpeg_dropped(tmp_path):
    build_glc24(tmp_path)
    glc24_patch_path(tmp_path / GLC24_NIR, 512).unlink()
    data = geoplant_samples(tmp_path, progress=False)
    assert data.summary.dropped["s2"] == 1 and 512 in data.summary.missing


def test_malformed_csv_surfaces_reader_error(glc24, tmp_path):
    root, _, _ = glc24
    bad = tmp_path / "pa.csv"
    text = (root / "GLC24_PA_metadata_train.csv").read_text().splitlines()
    head, first = text[0], text[1].split(",")
    first[1] = "abc"  # lat
    bad.write_text("\n".join([head, ",".join(first), *text[2:]]) + "\n")
    layout = GeoPlantLayout.discover(root, pa_csv=bad)
    assert layout.pa_csv == bad and layout.climate_dir == root / GLC24_CLIMATE
    with pytest.raises(DataFormatError) as err:
        geoplant_samples(layout, progress=False)
    assert err.value.field == "lat" and err.value.line == 2


def test_glc25_tiff_layout(tmp_path):
    expected, s2 = build_glc25(tmp_path)
    lay = GeoPlantLayout.discover(tmp_path)
    assert lay.pa_csv == tmp_path / "GLC25_PA_metadata_train.csv"
    assert lay.climate_dir == tmp_path / "BioclimTimeSeries/cubes/PA-train"
    assert lay.landsat_dir == tmp_path / "SateliteTimeSeries-Landsat/cubes/PA-train"
    assert lay.s2_tiff_dir == tmp_path / "SatelitePatches/PA-train" and lay.s2_source == "glc25-tiff"
    data = geoplant_samples(lay, progress=False)
    assert data.inputs["s2"].shape == (12, 4, 64, 64) and data.inputs["s2"].dtype == np.uint8
    for i, sid in enumerate(SURVEY_IDS):
        np.testing.assert_array_equal(data.inputs["s2"][i], s2[sid])
        np.testing.assert_array_equal(data.inputs["landsat"][i], expected[sid][1])
    crop = geoplant_samples(lay, s2_size=48, progress=False)
    np.testing.assert_array_equal(crop.inputs["s2"], data.inputs["s2"][:, :, 8:56, 8:56])
    up = geoplant_samples(lay, s2_size=128, max_surveys=10, progress=False)
    assert up.inputs["s2"].shape == (10, 4, 128, 128) and up.summary.s2_size == 128


# --------------------------------------------------------------------------------------------
# Presence-only records
# --------------------------------------------------------------------------------------------

PO_ONLY_SPECIES = 77777  # recorded by presence-only records only
GLC24_PO_CSV = "GLC24_P0_metadata_train.csv"  # the Kaggle release's spelling (zero)
GLC24_PO_CLIMATE = "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PO-train-bioclimatic_monthly"
GLC24_PO_LANDSAT = "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PO-train-landsat_time_series"
GLC24_PO_RGB = "PO_Train_SatellitePatches_RGB/po_train_patches_rgb"
GLC24_PO_NIR = "PO_Train_SatellitePatches_NIR/po_train_patches_nir"
_TO_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
_TO_4326 = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)


def _po_records() -> list[tuple[int, float, float, int]]:
    """(surveyId, lon, lat, speciesId): per site, a 50 m cell holding two records of two species and a
    cell 500 m away holding one, all in the site's 10 km block; the last is the PO-only species."""
    out = []
    surveys = _surveys()
    for k in range(len(SITES)):
        x0, y0 = _TO_3035.transform(surveys[2 * k].lon, surveys[2 * k].lat)
        sx = 1 if x0 % 10_000 < 5_000 else -1
        sy = 1 if y0 % 10_000 < 5_000 else -1
        cx = (np.floor((x0 + sx * 300) / CELL_M) + 0.5) * CELL_M
        cy = (np.floor((y0 + sy * 300) / CELL_M) + 0.5) * CELL_M
        spots = [(cx - 10, cy - 10, SPECIES_POOL[k]), (cx + 12, cy + 8, SPECIES_POOL[(k + 1) % 6]),
                 (cx + sx * 500, cy, SPECIES_POOL[(k + 2) % 6])]
        for x, y, sp in spots:
            lon, lat = _TO_4326.transform(x, y)
            out.append((7_000_000 + 10 * k + len(out) % 3, round(lon, 6), round(lat, 6), sp))
    sid, lon, lat, _ = out[-1]
    out[-1] = (58, lon, lat, PO_ONLY_SPECIES)  # a short id: patch path 58/58.jpeg, as the reference loader
    return out


def write_po_csv(path: Path, records) -> None:
    """The GLC24 / GLC25 PO metadata format (speciesId as pandas writes a float column)."""
    lines = [",".join(PO_COLUMNS)]
    for i, (sid, lon, lat, sp) in enumerate(records):
        lines.append(f"iNaturalist,2019,6,{1 + i % 28},{lat},{lon},{5 + i},SPECIES,2019-06-{1 + i % 28:02d},"
                     f"{152 + i % 28},{sp}.0,{sid}")
    path.write_text("\n".join(lines) + "\n")


def _po_cubes(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    clim = torch.load(REF / "GLC24-PA-train-bioclimatic_monthly_1322301_cube.pt", weights_only=True)
    land = torch.load(REF / "GLC24-PA-train-landsat-time-series_1322301_cube.pt", weights_only=True)
    return torch.nan_to_num(clim, nan=0.0) + 1000 + i, land * (2 + 0.01 * i)


def build_po_glc24(root: Path, skip_climate=()) -> dict:
    """The PO part of a GLC24 folder (flat cube folders, JPEG pairs); survey id -> (climate, landsat, s2)."""
    write_po_csv(root / GLC24_PO_CSV, _po_records())
    (root / GLC24_PO_CLIMATE).mkdir(parents=True, exist_ok=True)
    (root / GLC24_PO_LANDSAT).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    expected = {}
    for i, (sid, *_rest) in enumerate(_po_records()):
        clim, land = _po_cubes(i)
        if sid not in skip_climate:
            torch.save(clim, root / GLC24_PO_CLIMATE / f"GLC24-PO-train-bioclimatic_monthly_{sid}_cube.pt")
        torch.save(land, root / GLC24_PO_LANDSAT / f"GLC24-PO-train-landsat-time-series_{sid}_cube.pt")
        rgb, nir = glc24_patch_path(root / GLC24_PO_RGB, sid), glc24_patch_path(root / GLC24_PO_NIR, sid)
        rgb.parent.mkdir(parents=True, exist_ok=True)
        nir.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), "RGB").save(rgb, "JPEG", quality=90)
        Image.fromarray(rng.integers(0, 256, (128, 128), dtype=np.uint8), "L").save(nir, "JPEG", quality=90)
        s2 = np.concatenate([np.moveaxis(np.asarray(Image.open(rgb)), -1, 0), np.asarray(Image.open(nir))[None]])
        expected[sid] = (clim.numpy(), land.numpy(), s2)
    return expected


def _first_of_cells(records) -> list[int]:
    """Survey id of the first record (file order) of each 50 m cell, cells in po_cells order."""
    x, y = _TO_3035.transform([r[1] for r in records], [r[2] for r in records])
    cells = {}
    for r, cx, cy in zip(records, x, y):
        cells.setdefault((int(np.floor(cx / CELL_M)), int(np.floor(cy / CELL_M))), r[0])
    return [cells[c] for c in sorted(cells)]


@pytest.fixture(scope="module")
def glc24_po(tmp_path_factory):
    root = tmp_path_factory.mktemp("glc24_po")
    build_glc24(root)
    expected = build_po_glc24(root)
    data = geoplant_samples(root, seed=1, use_po=True, progress=False)
    return root, expected, data


def test_discover_po_part(glc24_po, glc24):
    root, _, _ = glc24_po
    lay = GeoPlantLayout.discover(root)
    assert lay.pa_csv == root / "GLC24_PA_metadata_train.csv" and lay.climate_dir == root / GLC24_CLIMATE
    assert lay.landsat_dir == root / GLC24_LANDSAT and lay.s2_rgb_dir == root / GLC24_RGB
    assert lay.po_csv == root / GLC24_PO_CSV
    assert lay.po_climate_dir == root / GLC24_PO_CLIMATE and lay.po_landsat_dir == root / GLC24_PO_LANDSAT
    assert lay.po_s2_rgb_dir == root / GLC24_PO_RGB and lay.po_s2_nir_dir == root / GLC24_PO_NIR
    assert lay.po_s2_source == "glc24-jpeg"
    off = GeoPlantLayout.discover(root, po=False)
    assert off.po_csv is None and off.po_climate_dir is None and off.pa_csv == lay.pa_csv
    plain = GeoPlantLayout.discover(glc24[0])  # no PO file: no PO part
    assert plain.po_csv is None and plain.po_s2_source is None


def test_po_samples_are_the_generated_paths_cells(glc24_po):
    """One sample per 50 m cell, labelled with every species recorded in it, flagged presence-only:
    exactly what the generated path's po_samples makes of the same file."""
    root, expected, data = glc24_po
    n_pa = len(SURVEY_IDS)
    records = _po_records()
    ref = po_samples(root / GLC24_PO_CSV, data.species_ids)
    assert len(data) == n_pa + len(ref) and len(ref) == 2 * len(SITES)
    assert not data.is_po[:n_pa].any() and data.is_po[n_pa:].all()
    np.testing.assert_array_equal(data.x[n_pa:], ref.x)
    np.testing.assert_array_equal(data.y[n_pa:], ref.y)
    np.testing.assert_array_equal(data.labels[n_pa:], ref.labels)
    assert data.labels[n_pa:].sum(1).tolist().count(2) == len(SITES)  # the two-record cells
    # Species: the PA file's and the PO records'; the PO-only species is present in PO samples only.
    pa_species = set(read_geoplant_pa(root / "GLC24_PA_metadata_train.csv").species_ids.tolist())
    assert set(data.species_ids.tolist()) == pa_species | {r[3] for r in records}
    j = data.species_ids.tolist().index(PO_ONLY_SPECIES)
    assert data.labels[n_pa:, j].sum() == 1 and not data.labels[:n_pa, j].any()
    # Survey areas for calibration; none for presence-only samples.
    np.testing.assert_array_equal(data.area[:n_pa], AREAS)
    assert np.isnan(data.area[n_pa:]).all()
    # Each cell's inputs are those of its first record.
    for i, sid in enumerate(_first_of_cells(records)):
        clim, land, s2 = expected[sid]
        np.testing.assert_array_equal(data.inputs["climate"][n_pa + i], clim)
        np.testing.assert_array_equal(data.inputs["landsat"][n_pa + i], land)
        np.testing.assert_array_equal(data.inputs["s2"][n_pa + i], s2)
    # Blocks over every sample; calibration and test keep the surveys only (the trainer's parts).
    for b in np.unique(data.block):
        assert len(np.unique(data.split[data.block == b])) == 1
    for split in (CAL, TEST):
        part = data.part(split, pa_only=True)
        assert not part.is_po.any() and np.isfinite(part.area).all()
    s = data.summary
    assert s.po_csv == str(root / GLC24_PO_CSV) and s.po_records_in_file == s.po_records_read == len(records)
    assert s.po_cells_in_file == s.po_cells_selected == s.po_samples == len(ref) and s.po_dropped == 0
    assert s.species_only_in_po == 1 and s.surveys_read == n_pa
    assert sum(s.surveys_per_split.values()) == n_pa and sum(s.samples_per_split.values()) == len(data)
    assert f"{len(ref)} samples (50 m cells) holding {len(records)} records" in str(s)


def test_po_limit_draws_cells_reproducibly(glc24_po):
    root, _, full = glc24_po
    n_pa = len(SURVEY_IDS)
    a = geoplant_samples(root, seed=3, po_limit=4, use_po=True, progress=False)
    b = geoplant_samples(root, seed=3, po_limit=4, use_po=True, progress=False)
    assert a.is_po.sum() == 4 and a.summary.po_cells_selected == 4 and a.summary.po_cells_in_file == 12
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.inputs["s2"], b.inputs["s2"])
    cells = {(x, y) for x, y in zip(full.x[n_pa:], full.y[n_pa:])}
    assert {(x, y) for x, y in zip(a.x[n_pa:], a.y[n_pa:])} <= cells
    draws = {tuple(geoplant_samples(root, seed=s, po_limit=4, use_po=True, progress=False).x[n_pa:])
             for s in range(4)}
    assert len(draws) > 1  # the seed draws
    assert a.summary.po_records_read == int(a.labels[n_pa:].sum())  # every record of a drawn cell
    off = geoplant_samples(root, seed=3, progress=False)  # surveys only unless asked
    assert not off.is_po.any() and len(off) == n_pa and off.summary.po_csv is None


def test_po_missing_files_fall_back_drop_or_error(tmp_path):
    records = _po_records()
    build_glc24(tmp_path)
    first, second = records[0][0], records[1][0]  # the two records of site 0's shared cell
    alone = records[2][0]  # site 0's single-record cell
    expected = build_po_glc24(tmp_path, skip_climate=(first, alone))
    data = geoplant_samples(tmp_path, use_po=True, progress=False)
    n_pa = len(SURVEY_IDS)
    s = data.summary
    assert s.po_samples == 11 and s.po_dropped == 1 and s.po_missing_files["climate"] == 2
    assert list(s.po_missing) == [alone] and s.po_missing[alone][0].endswith(f"_{alone}_cube.pt")
    # The shared cell takes its second record's inputs; its labels still hold both records.
    cell = int(np.argmin(np.hypot(data.x[n_pa:] - _TO_3035.transform(*records[0][1:3])[0],
                                  data.y[n_pa:] - _TO_3035.transform(*records[0][1:3])[1])))
    np.testing.assert_array_equal(data.inputs["climate"][n_pa + cell], expected[second][0])
    assert data.labels[n_pa + cell].sum() == 2
    with pytest.raises(DataFormatError) as err:
        geoplant_samples(tmp_path, on_missing="error", use_po=True, progress=False)
    msg = str(err.value)
    assert err.value.file.endswith(f"GLC24-PO-train-bioclimatic_monthly_{first}_cube.pt")
    assert f"presence-only record {first}" in msg and f"{GLC24_PO_CSV} line 2" in msg


def test_po_missing_folders_and_malformed_files(tmp_path):
    build_glc24(tmp_path)
    write_po_csv(tmp_path / "GLC25_P0_metadata_train.csv", _po_records())
    with pytest.raises(FileNotFoundError) as err:  # a PO file without its cubes and patches
        GeoPlantLayout.discover(tmp_path)
    msg = str(err.value)
    for part in ("po_climate_dir", "po_landsat_dir", "presence-only Sentinel-2", "GLC25_P0_metadata_train.csv",
                 "--no-po"):
        assert part in msg
    assert "pa_csv" not in msg and GeoPlantLayout.discover(tmp_path, po=False).po_csv is None
    (tmp_path / "GLC25_P0_metadata_train.csv").unlink()

    build_po_glc24(tmp_path)
    po_csv = tmp_path / GLC24_PO_CSV
    text = po_csv.read_text().splitlines()
    row = text[3].split(",")
    row[PO_COLUMNS.index("lat")] = "north"
    po_csv.write_text("\n".join([*text[:3], ",".join(row), *text[4:]]) + "\n")
    with pytest.raises(DataFormatError) as err:
        geoplant_samples(tmp_path, use_po=True, progress=False)
    assert err.value.file == str(po_csv) and err.value.line == 4 and err.value.field == "lat"
    assert f"{GLC24_PO_CSV} line 4, field 'lat'" in str(err.value)
    po_csv.write_text("\n".join([text[0], text[1], text[2] + ",extra", *text[3:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"line 3: expected 12 comma-separated fields") as err:
        geoplant_samples(tmp_path, use_po=True, progress=False)
    po_csv.write_text(text[0].replace("speciesId", "taxon") + "\n" + "\n".join(text[1:]) + "\n")
    with pytest.raises(DataFormatError, match=r"line 1, field 'speciesId': expected a column 'speciesId'"):
        geoplant_samples(tmp_path, use_po=True, progress=False)
    po_csv.write_text("\n".join(text) + "\n")
    bad_cube = tmp_path / GLC24_PO_CLIMATE / f"GLC24-PO-train-bioclimatic_monthly_{_po_records()[0][0]}_cube.pt"
    torch.save(torch.zeros(4, 19), bad_cube)
    with pytest.raises(DataFormatError) as err:
        geoplant_samples(tmp_path, use_po=True, progress=False)
    assert err.value.file == str(bad_cube) and err.value.field == "shape"


def test_glc25_po_tree_layout(tmp_path):
    """GLC25 files PO cubes in {id[-2:]}/{id[-4:-2]}/ trees, writes P0 in the climate file names."""
    import rasterio
    from rasterio.transform import from_origin

    build_glc25(tmp_path)
    records = _po_records()
    write_po_csv(tmp_path / "GLC25_P0_metadata_train.csv", records)
    base, _ = read_s2_glc25(REF / "s2.tiff")
    expected = {}
    for i, (sid, *_rest) in enumerate(records):
        clim, land = _po_cubes(i)
        for folder, name, cube in (("BioclimTimeSeries/cubes/PO-train", "GLC25-P0-train-bioclimatic_monthly", clim),
                                   ("SateliteTimeSeries-Landsat/cubes/PO-train", "GLC25-PO-train-landsat_time_series",
                                    land)):
            path = glc24_patch_path(tmp_path / folder, sid, ext="pt").with_name(f"{name}_{sid}_cube.pt")
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(cube, path)
        arr = (np.roll(base, 3 * i, axis=-2).astype(np.int64) + 11 * i).clip(0, 65535).astype(np.uint16)
        path = glc24_patch_path(tmp_path / "SatelitePatches/PO-train", sid, ext="tiff")
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=4, dtype="uint16",
                           crs="EPSG:3035", transform=from_origin(4400000, 2800000, 10, 10)) as ds:
            ds.write(arr)
        expected[sid] = (clim.numpy(), land.numpy(), glc25_to_glc24_uint8(arr))
    lay = GeoPlantLayout.discover(tmp_path)
    assert lay.po_csv == tmp_path / "GLC25_P0_metadata_train.csv"
    assert lay.po_climate_dir == tmp_path / "BioclimTimeSeries/cubes/PO-train"
    assert lay.po_landsat_dir == tmp_path / "SateliteTimeSeries-Landsat/cubes/PO-train"
    assert lay.po_s2_tiff_dir == tmp_path / "SatelitePatches/PO-train" and lay.po_s2_source == "glc25-tiff"
    assert lay.climate_dir == tmp_path / "BioclimTimeSeries/cubes/PA-train"  # the PA part is unchanged
    data = geoplant_samples(lay, use_po=True, progress=False)
    n_pa = len(SURVEY_IDS)
    assert data.is_po.sum() == 12 and data.inputs["s2"].shape == (n_pa + 12, 4, 64, 64)
    for i, sid in enumerate(_first_of_cells(records)):
        for k, name in enumerate(("climate", "landsat", "s2")):
            np.testing.assert_array_equal(data.inputs[name][n_pa + i], expected[sid][k])


def _train(data, out: Path, monkeypatch) -> tuple[dict, list]:
    """Train the tiny SDM for an epoch, recording what calibration is fitted on."""
    from inference.sdm import train as sdm_train
    from tests.conftest import TINY_SDM

    seen = []

    def spy(logits, labels, area_m2=None, **kw):
        calib = fit_calibration(logits, labels, area_m2, **kw)
        seen.append((logits, labels, area_m2, calib))
        return calib

    fit_calibration = sdm_train.fit_calibration
    monkeypatch.setattr(sdm_train, "fit_calibration", spy)
    config = sdm_train.TrainConfig(epochs=1, batch_size=8, model_overrides=TINY_SDM)
    report = sdm_train.train_sdm(data, out, config, progress=False, log=lambda *_: None)
    return report, seen


def test_training_uses_po_samples_and_survey_areas(glc24_po, tmp_path, monkeypatch):
    """The trainer gets the PO samples for training and the surveys' own areas for calibration; with
    four times the area, the same records mean a lower probability per 100 m2 plot."""
    root, _, data = glc24_po
    n_pa = len(SURVEY_IDS)
    report, seen = _train(data, tmp_path / "sdm.pt", monkeypatch)
    assert report["n_train"] == int((data.split == TRAIN).sum()) > int((data.split[:n_pa] == TRAIN).sum())
    assert report["n_cal"] == data.summary.surveys_per_split["calibration"]
    (logits, labels, area, calib), = seen
    cal = (data.split == CAL) & ~data.is_po
    np.testing.assert_array_equal(area, np.asarray(AREAS)[cal[:n_pa]])
    np.testing.assert_array_equal(labels, data.labels[cal])

    surveys = [PASurvey(**{**vars(s), "area_m2": 4 * s.area_m2}) for s in _surveys()]
    write_geoplant_pa(tmp_path / "GLC24_PA_metadata_train.csv", surveys)
    larger = geoplant_samples(GeoPlantLayout.discover(root, pa_csv=tmp_path / "GLC24_PA_metadata_train.csv"),
                              seed=1, use_po=True, progress=False)
    np.testing.assert_array_equal(larger.area[:n_pa], 4 * np.asarray(AREAS))
    _, seen4 = _train(larger, tmp_path / "sdm4.pt", monkeypatch)
    (logits4, _, area4, calib4), = seen4
    np.testing.assert_array_equal(area4, 4 * area)

    def q(c, z):
        return 1 / (1 + np.exp(-c.apply_logits(z)))

    assert calib.nll_after < calib.nll_before and calib4.nll_after < calib4.nll_before
    assert q(calib4, logits4).mean() < 0.8 * q(calib, logits).mean()


def test_cli_trains_on_geoplant_with_po(glc24_po, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from backend.cli import main
    from backend.core.settings import get_settings

    root, _, _ = glc24_po
    monkeypatch.setenv("GEOFLORA_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(main, ["train", "sdm", "--geoplant", str(root), "--epochs", "1", "--batch-size", "8",
                                 "--po-limit", "5", "--out", str(tmp_path / "sdm.pt")])
        assert r.exit_code == 0, r.output
        drawn = geoplant_samples(root, seed=0, po_limit=5, use_po=True, progress=False).summary  # what the command drew
        assert (f"{len(SURVEY_IDS)} presence-absence surveys (0 dropped for missing files), {drawn.po_records_read} "
                f"presence-only records in 5 samples (50 m cells; 0 dropped), {drawn.n_species} species") in r.output
        assert "| macro AUC |" in r.output and "held-out test surveys" in r.output
        assert (tmp_path / "sdm.pt").is_file()
        r = runner.invoke(main, ["train", "sdm", "--geoplant", str(root), "--epochs", "1", "--no-po",
                                 "--out", str(tmp_path / "sdm_pa.pt")])
        assert r.exit_code == 0, r.output
        assert "0 presence-only records in 0 samples" in r.output
        bad = tmp_path / "bad"
        build_glc24(bad)
        write_po_csv(bad / GLC24_PO_CSV, [(1, 11.0, 95.0, 3)])
        r = runner.invoke(main, ["train", "sdm", "--geoplant", str(bad), "--epochs", "1"])
        assert r.exit_code != 0 and "po_climate_dir" in r.output
    finally:
        get_settings.cache_clear()
