"""A raster-backed region read from small hand-made rasters with known values: each input's CRS,
resolution, scale and offset, nodata, the UTM seam, water snapping, and the refusals of
``region create``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from rasterio.warp import transform_bounds

from backend.core.errors import RegionError
from inference.data.raster_region import (
    CLIMATE_VARS,
    CLIMATE_YEARS,
    LANDSAT_BANDS,
    LANDSAT_YEARS,
    create_raster_region,
)
from inference.data.region import load_region
from inference.grid import METATILE_M, MetaTile

TILE = MetaTile(4200000, 2800000)
GEOPLANT_SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "geoplant_samples"
BBOX = TILE.bounds
MID = TILE.x0 + METATILE_M / 2


def _tif(path: Path, arr: np.ndarray, crs, transform, nodata=None, scales=None, offsets=None) -> Path:
    arr = arr if arr.ndim == 3 else arr[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
                       dtype=arr.dtype.name, crs=crs, transform=transform, nodata=nodata, compress="deflate") as d:
        d.write(arr)
        if scales is not None:
            d.scales, d.offsets = scales, offsets
    return path


def _grid(crs: str, res: float, bounds_3035, margin: float = 0.0):
    b = transform_bounds("EPSG:3035", crs, *bounds_3035, densify_pts=21)
    left, bottom = np.floor((b[0] - margin) / res) * res, np.floor((b[1] - margin) / res) * res
    right, top = np.ceil((b[2] + margin) / res) * res, np.ceil((b[3] + margin) / res) * res
    w, h = int(round((right - left) / res)), int(round((top - bottom) / res))
    return Affine(res, 0, left, 0, -res, top), w, h


def _s2_utm(path, zone, x_range, dn, nodata=0, hole=None):
    """A 4-band UTM tile covering the tile's x_range (EPSG:3035), each band a constant DN."""
    bounds = (x_range[0], TILE.y0 - 2000, x_range[1], TILE.y0 + METATILE_M + 2000)
    t, w, h = _grid(f"EPSG:326{zone}", 10.0, bounds)
    arr = np.stack([np.full((h, w), v, np.uint16) for v in dn])
    if hole is not None:  # a nodata block in the tile's own pixel rows / cols
        arr[:, hole[0], hole[1]] = nodata
    return _tif(path, arr, f"EPSG:326{zone}", t, nodata)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Every input of one meta-tile, with values that say where they come from."""
    root = tmp_path_factory.mktemp("world")
    box = (BBOX[0] - 3000, BBOX[1] - 3000, BBOX[2] + 3000, BBOX[3] + 3000)
    # Sentinel-2: two UTM tiles meeting with a 2 km overlap; L2A DN (reflectance x 10,000 + 1,000)
    _s2_utm(root / "s2" / "west.tif", 32, (BBOX[0] - 2000, MID + 1000), (1100, 1200, 1300, 1400))
    _s2_utm(root / "s2" / "east.tif", 33, (MID - 1000, BBOX[2] + 2000), (2100, 2200, 2300, 2400))
    # CHELSA: EPSG:4326 at 30", uint16 DN with CHELSA's scale in the metadata; value = f(var, year, month)
    t, w, h = _grid("EPSG:4326", 1 / 120, box)
    lon = t.c + (np.arange(w) + 0.5) * t.a
    for vi, v in enumerate(CLIMATE_VARS):
        sc, of = (0.01, 0.0) if v == "pr" else (0.1, -273.15)
        for year in CLIMATE_YEARS:
            for month in range(1, 13):
                base = 3000 + 100 * month + (year - 2000) if v == "pr" else 2800 + 10 * vi + month
                arr = np.broadcast_to(base + (lon > 8.7)[None, :].astype(np.int64), (h, w)).astype(np.uint16)
                _tif(root / "chelsa" / f"CHELSA_{v}_{month:02d}_{year}_V.2.1.tif", arr, "EPSG:4326", t, 65535,
                     (sc,), (of,))
    # Landsat: EPSG:3035 at 1 km, float32, value = band * 100 + quarter * 10 + year % 10
    t3, w3, h3 = _grid("EPSG:3035", 1000.0, box)
    for b, band in enumerate(LANDSAT_BANDS):
        for year in LANDSAT_YEARS:
            for q in (1, 2, 3, 4):
                _tif(root / "landsat" / f"{band}_{year}_q{q}.tif",
                     np.full((h3, w3), b * 100 + q * 10 + year % 10, np.float32), "EPSG:3035", t3)
    # land / water at 50 m in EPSG:3035: a 1 km square lake (2 = water, 1 = land) in the tile's middle
    tm, wm, hm = _grid("EPSG:3035", 50.0, box)
    mask = np.ones((hm, wm), np.uint8)
    r0 = int((tm.f - (TILE.y0 + 12500)) / 50)
    c0 = int((TILE.x0 + 12000 - tm.c) / 50)
    mask[r0:r0 + 20, c0:c0 + 20] = 2
    _tif(root / "landwater.tif", mask, "EPSG:3035", tm, 0)
    with open(root / "species.csv", "w", newline="") as fh:
        w_ = csv.writer(fh)
        w_.writerow(["id", "name", "genus", "family", "growth_form", "iucn", "eu_directive", "invasive", "woody",
                     "tree", "endemic", "conifer"])
        w_.writerow([11, "Abies alba", "Abies", "Pinaceae", "tree", "LC", 0, 0, 1, 1, 0, 1])
        w_.writerow([12, "Arnica montana", "Arnica", "Asteraceae", "herb", "LC", 1, 0, 0, 0, 0, 0])
    return root


def _sources(root: Path, **changes) -> Path:
    spec = {
        "sentinel2": {"files": ["s2/*.tif"], "scale": 0.0001, "offset": -0.1},
        "climate": {"pattern": "chelsa/CHELSA_{var}_{month:02d}_{year}_V.2.1.tif"},
        "landsat": {"pattern": "landsat/{band}_{year}_q{quarter}.tif"},
        "land_mask": {"file": "landwater.tif", "land": [1], "water": "nearest"},
        "species": "species.csv",
    }
    for k, v in changes.items():
        if v is None:
            spec.pop(k)
        elif isinstance(v, dict) and isinstance(spec.get(k), dict):
            spec[k] = {**spec[k], **v}
        else:
            spec[k] = v
    path = root / f"sources-{abs(hash(repr(changes)))}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def region(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("regions") / "real"
    create_raster_region(out, "real", BBOX, _sources(world), log=lambda *_: None)
    return load_region(out)


def test_sentinel2_from_two_utm_zones_in_l2a_dn(region):
    # a window across the seam: west of it zone 32's values, east of it zone 33's, no gap
    w = region.s2_window(MID - 6000, TILE.y0 + 12000, 1200, 10)
    assert (w > 0).all()
    assert (w[:, :, :150] == np.array([100, 200, 300, 400])[:, None, None]).all()  # DN - 1000: reflectance x 1e4
    assert (w[:, :, -150:] == np.array([1100, 1200, 1300, 1400])[:, None, None]).all()
    p = region.extract_s2([TILE.x0 + 1025.0, BBOX[2] - 1025.0], [TILE.y0 + 5025.0] * 2, size=16)
    assert p.shape == (2, 4, 16, 16) and p.dtype == np.uint16
    assert (p[0, 0] == 100).all() and (p[1, 3] == 1400).all()


def test_an_s2_offset_of_zero_is_the_older_baseline(world, tmp_path):
    create_raster_region(tmp_path / "old", "old", BBOX, _sources(world, sentinel2={"offset": 0.0}), log=lambda *_: None)
    w = load_region(tmp_path / "old").s2_window(TILE.x0 + 1000, TILE.y0 + 3000, 4, 4)
    assert (w[:, 0, 0] == [1100, 1200, 1300, 1400]).all()


def test_climate_cube_in_chelsa_units_from_epsg4326_months(region):
    x = np.array([TILE.x0 + 2025.0, BBOX[2] - 2025.0])
    y = np.array([TILE.y0 + 10025.0] * 2)
    cube = region.extract_climate(x, y)
    assert cube.shape == (2, 4, 19, 12) and cube.dtype == np.float32
    lon_east = (rasterio.warp.transform("EPSG:3035", "EPSG:4326", list(x), list(y))[0][1] > 8.7)
    assert cube[0, 0, 5, 2] == pytest.approx(3000 + 100 * 3 + 5)       # pr, 2005, March
    assert cube[0, 1, 0, 6] == pytest.approx(2800 + 10 + 7)            # tas, July: K x 10
    assert cube[1, 3, 18, 11] == pytest.approx(2800 + 30 + 12 + lon_east)
    keys = region.cube_keys("climate", x, y)
    assert keys[0] != keys[1]


def test_climate_given_in_degrees_celsius_is_converted(world, tmp_path):
    # the same tas files declared as physical degrees C (no metadata scale): DN = (C + 273.15) x 10
    folder = tmp_path / "celsius"
    for v in CLIMATE_VARS:
        for year in CLIMATE_YEARS:
            for month in range(1, 13):
                src = world / "chelsa" / f"CHELSA_{v}_{month:02d}_{year}_V.2.1.tif"
                with rasterio.open(src) as d:
                    a = d.read(1).astype(np.float32) * d.scales[0] + d.offsets[0]
                    _tif(folder / src.name, a, d.crs, d.transform)
    spec = _sources(world, climate={"pattern": str(folder / "CHELSA_{var}_{month:02d}_{year}_V.2.1.tif"),
                                    "scale": {v: 1.0 for v in CLIMATE_VARS},
                                    "offset": {v: 0.0 for v in CLIMATE_VARS}})
    create_raster_region(tmp_path / "c", "c", BBOX, spec, log=lambda *_: None)
    cube = load_region(tmp_path / "c").extract_climate([TILE.x0 + 2025.0], [TILE.y0 + 10025.0])
    assert cube[0, 1, 0, 6] == pytest.approx(2817, abs=0.01)
    assert cube[0, 0, 5, 2] == pytest.approx(3305, abs=0.01)


def test_landsat_cube_order(region):
    cube = region.extract_landsat([TILE.x0 + 7000.0], [TILE.y0 + 7000.0])
    assert cube.shape == (1, 6, 4, 21)
    assert cube[0, 4, 2, 13] == 4 * 100 + 3 * 10 + 2013 % 10
    assert cube[0, 0, 0, 0] == 10


def test_water_takes_the_nearest_land_cell(region, world, tmp_path):
    keep, index = region.land_mask(TILE), region.input_index(TILE)
    assert keep.all()  # water: nearest maps every cell
    lake_r, lake_c = 255, 245  # a cell inside the lake (rows 250-269, cols 240-259; row 0 north)
    jr, jc = divmod(int(index[lake_r * 500 + lake_c]), 500)
    assert not (250 <= jr < 270 and 240 <= jc < 260)  # a land cell...
    assert (jr - lake_r) ** 2 + (jc - lake_c) ** 2 == 36  # ...the nearest: 6 cells away (left or up)
    assert index[0] == 0 and index[123_456] == 123_456  # land keeps its own inputs
    create_raster_region(tmp_path / "m", "m", BBOX, _sources(world, land_mask={"water": "mask"}), log=lambda *_: None)
    masked = load_region(tmp_path / "m")
    keep = masked.land_mask(TILE)
    assert masked.input_index(TILE) is None
    assert (~keep).sum() == 400 and not keep[lake_r, lake_c]


def test_nodata_in_sentinel2_is_reported_and_masked(world, tmp_path):
    holed = tmp_path / "s2"
    _s2_utm(holed / "west.tif", 32, (BBOX[0] - 2000, MID + 1000), (1100, 1200, 1300, 1400),
            hole=(slice(1000, 1100), slice(600, 700)))
    _s2_utm(holed / "east.tif", 33, (MID - 1000, BBOX[2] + 2000), (2100, 2200, 2300, 2400))
    lines = []
    create_raster_region(tmp_path / "h", "h", BBOX, _sources(world, sentinel2={"files": [str(holed / "*.tif")]}),
                         log=lines.append)
    assert "sentinel2" in "\n".join(lines) and "west.tif" in "\n".join(lines) and "window col" in "\n".join(lines)
    r = load_region(tmp_path / "h")
    keep = r.land_mask(TILE)
    assert 0 < (~keep).sum() < 500  # the hole's cells, no more
    cov = r.meta["coverage"][TILE.id]
    assert cov["cells_with_inputs"] < 1 and cov["gaps"][0]["input"] == "sentinel2"


def test_climate_in_the_wrong_units_is_refused(world, tmp_path):
    # CHELSA files read as if they held degrees C: tas would be about 2800 C
    spec = _sources(world, climate={"scale": {"tas": 1.0}, "offset": {"tas": 0.0}})
    with pytest.raises(RegionError, match="reads as tas = 30.*give the files' scale and offset"):
        create_raster_region(tmp_path / "u", "u", BBOX, spec, log=lambda *_: None)


@pytest.mark.parametrize("change, message", [
    ({"sentinel2": {"bands": [1, 2, 5, 4]}}, "has 4 band"),
    ({"sentinel2": {"files": ["nowhere/*.tif"]}}, "cannot open"),
    ({"climate": {"pattern": "chelsa/CHELSA_{var}_{month:02d}_{year}_V.2.2.tif"}}, "912 file(s) of the pattern"),
    ({"landsat": {"pattern": "landsat/{band}_{year}_{season}.tif"}}, "cannot be filled"),
    ({"land_mask": {"water": "sea"}}, "'nearest' or 'mask'"),
    ({"species": None}, "'species' source is missing"),
])
def test_unreadable_sources_are_refused_naming_the_source(world, tmp_path, change, message):
    with pytest.raises(RegionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_raster_region(tmp_path / "x", "x", BBOX, _sources(world, **change), log=lambda *_: None)
    assert not (tmp_path / "x" / "region.json").exists()


def test_a_bbox_outside_the_rasters_is_refused(world, tmp_path):
    far = (5_000_000, 3_000_000, 5_010_000, 3_010_000)
    with pytest.raises(RegionError, match="sentinel2: no file overlaps"):
        create_raster_region(tmp_path / "far", "far", far, _sources(world), log=lambda *_: None)


def test_the_species_table_must_cover_the_model(region):
    from inference.data.interface import species_for

    assert [s.name for s in species_for(region, [12, 11])] == ["Arnica montana", "Abies alba"]
    with pytest.raises(RegionError, match="lacks 2 of the model's 3 species \\(ids 99, 98\\)"):
        species_for(region, [11, 99, 98])


def test_the_regions_eunis_list_is_its_habitat_table(world, tmp_path, monkeypatch):
    from inference.data import eunis

    monkeypatch.setattr(eunis, "_TABLE", eunis.table().copy())
    (world / "eunis.csv").write_text("Code,Name\nR,Grasslands\nR2,Mesic grasslands\nR2Z,A made-up mesic type\n"
                                     "R22,Low and medium altitude hay meadow\n")
    with pytest.raises(KeyError, match="R2Z"):
        eunis.habitat("R2Z")
    create_raster_region(tmp_path / "e", "e", BBOX, _sources(world, habitats="eunis.csv"), log=lambda *_: None)
    region = load_region(tmp_path / "e")
    assert region.habitat_codes == ["R2Z", "R22"]
    assert eunis.habitat("R2Z").name == "A made-up mesic type" and eunis.at_level("R2Z", 1) == "R"


@pytest.mark.skipif(not GEOPLANT_SAMPLES.is_dir(), reason="shared reference samples not available")
def test_an_sdm_trained_on_geoplant_maps_a_raster_region(world, tmp_path, monkeypatch):
    """`geoflora train sdm --geoplant` (GLC24 JPEG patches, cubes) gives a checkpoint that the
    cascade runs on a raster region whose species table covers its species."""
    from click.testing import CliRunner

    from backend.cli import main
    from backend.core.settings import get_settings
    from inference.pipeline import run as cascade
    from inference.pipeline.stages import compute_metatile, models_for, run_profile
    from tests.sdm.test_geoplant import build_glc24

    folder = tmp_path / "glc24"
    folder.mkdir()
    build_glc24(folder)
    monkeypatch.setenv("GEOFLORA_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(main, ["train", "sdm", "--geoplant", str(folder), "--epochs", "1", "--batch-size", "8",
                                      "--out", str(tmp_path / "sdm.pt")])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    models = models_for({"sdm": tmp_path / "sdm.pt"}, "cpu")
    with open(tmp_path / "species.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "genus", "family", "growth_form", "iucn", "eu_directive", "invasive", "woody",
                    "tree", "endemic", "conifer"])
        for sid in models.species_ids:
            w.writerow([int(sid), f"Genus{sid} species{sid}", f"Genus{sid}", "Fam", "herb", "LC", 0, 0, 0, 0, 0, 0])
    create_raster_region(tmp_path / "g", "g", BBOX, _sources(world, species=str(tmp_path / "species.csv")),
                         log=lambda *_: None)
    region = load_region(tmp_path / "g")
    cascade.check_models(region, models)
    out = compute_metatile(region, TILE, models, run_profile(region, models, n_cells=200))
    rich = out["indicator.richness"]
    assert rich.shape == (500, 500) and np.isfinite(rich).all() and (rich >= 0).all()
    # the two UTM tiles differ, and so do the predictions west and east of the seam
    assert abs(float(rich[:, :100].mean()) - float(rich[:, -100:].mean())) > 1e-6


def test_commands_that_need_a_generated_region_say_so_for_a_raster_region(region, tmp_path, monkeypatch):
    import shutil

    from click.testing import CliRunner

    from backend.cli import main
    from backend.core.settings import get_settings

    data = tmp_path / "data"
    shutil.copytree(region.path, data / "regions" / "real")
    monkeypatch.setenv("GEOFLORA_DATA_DIR", str(data))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        for args, needs in ((["train", "sdm"], "--geoplant DIR"), (["train", "botaclip"], "survey plots"),
                            (["train", "traits"], "--csv"), (["train", "plantbert"], "--plots DIR")):
            r = runner.invoke(main, [*args, "--region", "real"])
            assert r.exit_code == 1 and "is made from rasters" in r.output and needs in r.output, (args, r.output)
            assert "Traceback" not in r.output
    finally:
        get_settings.cache_clear()
