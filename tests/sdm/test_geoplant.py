"""GeoPlant-format SDM samples: a tiny GLC24 / GLC25 directory built from the real format samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pyproj import Transformer

from inference.data.readers import (
    DataFormatError,
    PASurvey,
    glc24_patch_path,
    glc25_to_glc24_uint8,
    read_s2_glc25,
    write_geoplant_pa,
)
from inference.sdm.geoplant import GeoPlantLayout, geoplant_samples
from inference.splits import CAL, TEST, TRAIN, spatial_blocks

REF = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "geoplant_samples"
pytestmark = pytest.mark.skipif(not REF.is_dir(), reason="shared reference samples not available")

# 6 sites ~10-15 km apart around Munich (well over 30 km in all), 2 surveys 300 m apart at each.
SITES = [(11.00, 48.00), (11.15, 48.05), (11.30, 48.10), (11.45, 48.15), (11.60, 48.25), (11.75, 48.35)]
SURVEY_IDS = [1322301, 1322302, 2410517, 2410533, 3000145, 3000199, 512, 4455667, 5123499, 5123400, 6000001, 6999918]
SPECIES_POOL = [3, 17, 250, 1042, 6874, 9999]
NAN_SURVEY = 2410517  # its climate cube gets a NaN, read back as 0 (fill_nan=0.0)

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
        out.append(PASurvey(sid, lon, lat, 2019, species, 10.0, 100.0, "CONTINENTAL", "Germany"))
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
