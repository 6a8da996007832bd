"""The real-data path end to end: the tiny generated region is written out in the layouts real
inputs come in (UTM Sentinel-2 tiles in L2A DN, CHELSA-named EPSG:4326 monthly files, Landsat
quarterly composites, a land/water raster, species lists with author names), made into a region
with the commands of the "Map your own region" guide, and computed with the same models. Its maps
and reports must reproduce the generated region's run up to resampling (the tolerances below)."""

from __future__ import annotations

import csv
import os
import shutil

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from inference.grid import MetaTile
from tests.reports_data import polygon

pytestmark = pytest.mark.slow

TILE = MetaTile(4200000, 2800000)
# Agreement with the generated run (land cells): correlation and relative difference of the means
# for continuous layers, the share of equal cells for categorical ones. Measured 2026-12-04 (this
# machine): r >= 0.98 for every indicator and trait layer, habitats identical; the differences come
# from nearest-neighbour resampling through UTM (Sentinel-2) and EPSG:4326 (CHELSA).
MIN_R = 0.97
MAX_MEAN_DIFF = 0.01
MIN_SAME_CLASS = 0.97


@pytest.fixture(scope="module")
def real(tmp_path_factory, tiny_region, tiny_sdm, tiny_plantbert, tiny_botaclip):
    """A data dir whose region 'tinyreal' was made from the exported files and computed."""
    from backend.cli import main
    from backend.core.settings import get_settings

    data = tmp_path_factory.mktemp("realdata")
    exported = tmp_path_factory.mktemp("exported")
    (data / "regions").mkdir()
    os.symlink(tiny_region, data / "regions" / "tiny")
    env = {"GEOFLORA_DATA_DIR": str(data), "GEOFLORA_DEVICE": "cpu", "GEOFLORA_HABITAT_STEP": "8"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    runner = CliRunner()
    outputs = {}
    try:
        def run(*args):
            r = runner.invoke(main, [str(a) for a in args])
            assert r.exit_code == 0, r.output
            outputs[args[0] if args[0] != "region" else "region"] = r.output
            return r.output

        run("generate", "--name", "tiny", "--export-rasters", exported)
        sp = exported / "species"
        run("species", "import", sp / "species_list.csv", "--out", sp / "imported.csv", "--directive", sp / "art17.csv",
            "--invasive", sp / "invasive.csv", "--redlist", sp / "redlist.csv", "--growth-form", sp / "growth_form.csv",
            "--endemic", sp / "endemic.csv", "--traits", sp / "traits.csv")
        run("region", "create", "tinyreal", "--bbox", "4200000,2800000,4225000,2825000",
            "--sources", exported / "sources.yaml")
        # a named model set (data/models/<set>/), with Pl@ntBERT given by path
        (data / "models" / "tiny-set").mkdir(parents=True)
        shutil.copyfile(tiny_sdm, data / "models" / "tiny-set" / "sdm.pt")
        shutil.copyfile(tiny_botaclip, data / "models" / "tiny-set" / "botaclip.pt")
        run("compute", "--region", "tinyreal", "--models", "tiny-set", "--plantbert", tiny_plantbert)
        settings = get_settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
    return settings, exported, outputs


def _tile_dir(settings):
    (run_dir,) = (settings.data_dir / "runs").iterdir()
    return run_dir / "metatiles" / TILE.id


def _read(folder, name, band=1):
    with rasterio.open(folder / f"{name}.tif") as src:
        return src.read(band).astype(np.float64), src.nodata


def test_the_imported_species_table_is_the_one_the_export_wrote(real):
    _, exported, outputs = real
    sp = exported / "species"
    with open(sp / "imported.csv") as a, open(sp / "species_table.csv") as b:
        assert list(csv.reader(a)) == list(csv.reader(b))
    assert "Ameiurus melas" not in (sp / "imported.csv").read_text()  # the animal row of the lists


def test_region_create_reports_full_coverage(real):
    out = real[2]["region"]
    assert f"{TILE.id}: 100.0% of cells have every input" in out


def test_the_run_used_the_named_model_set_and_the_given_plantbert(real, tiny_plantbert):
    from sqlalchemy import select

    from backend.db.engine import make_engine, make_sessionmaker
    from backend.db.models import Run

    settings = real[0]
    with make_sessionmaker(make_engine(settings.db_url))() as session:
        (run,) = session.scalars(select(Run)).all()
    ck = run.config["checkpoints"]
    assert ck["sdm"].endswith("models/tiny-set/sdm.pt") and ck["botaclip"].endswith("models/tiny-set/botaclip.pt")
    assert ck["plantbert"] == str(tiny_plantbert.resolve())


def test_maps_of_the_raster_region_reproduce_the_generated_run(real, computed):
    gen_settings, _, _ = computed
    gen, ras = _tile_dir(gen_settings), _tile_dir(real[0])
    from inference.data.region import load_region

    land = load_region(real[0].layout.region_dir("tinyreal"))._land(TILE)
    assert 0.9 < land.mean() < 1.0  # the tiny region has some water
    checked = 0
    assert {p.name for p in gen.glob("*.tif")} - {p.name for p in ras.glob("*.tif")} == {"truth.richness.tif"}
    for path in sorted(gen.glob("*.tif")):
        name = path.stem
        if name.startswith("truth."):  # a real region has no truth layers
            continue
        with rasterio.open(path) as src:
            count = src.count
        for band in range(1, count + 1):
            a, nodata = _read(gen, name, band)
            b, _ = _read(ras, name, band)
            ok = land & (a != nodata) & (b != nodata)
            x, y = a[ok], b[ok]
            if name.startswith("habitat.l") and not name.endswith("probability") or name == "indicator.status.most":
                assert (x == y).mean() >= MIN_SAME_CLASS, name
            elif x.std() > 0:
                r = np.corrcoef(x, y)[0, 1]
                assert r >= MIN_R, (name, band, r)
                assert abs(x.mean() - y.mean()) <= MAX_MEAN_DIFF * abs(x.mean()) + 1e-9, (name, band)
            checked += 1
    assert checked >= 20
    # a water cell takes the prediction of its nearest land cell
    rich, _ = _read(ras, "indicator.richness")
    water = np.argwhere(~land)
    if len(water):
        r, c = water[0]
        near = np.argwhere(land)
        d = ((near - [r, c]) ** 2).sum(1)
        assert rich[r, c] in {rich[tuple(p)] for p in near[d == d.min()]}


def test_reports_on_the_raster_region_match_the_generated_run(real, computed, client):
    from fastapi.testclient import TestClient

    from backend.app import create_app

    left, bottom = TILE.x0, TILE.y0
    pts = [(left + 3013, bottom + 4007), (left + 17011, bottom + 2989), (left + 15493, bottom + 16013),
           (left + 6007, bottom + 19511)]
    body = polygon(pts)
    gen = client.post("/api/reports", json=body, params={"species_limit": 1000}).json()
    with TestClient(create_app(real[0])) as c:
        ras = c.post("/api/reports", json=body, params={"species_limit": 1000})
    assert ras.status_code == 200, ras.text
    ras = ras.json()
    assert ras["area"]["cells"] == gen["area"]["cells"]
    g = {e["id"]: e for e in gen["indicators"]["items"]}
    for e in ras["indicators"]["items"]:
        if g[e["id"]]["mean"]:
            assert e["mean"] == pytest.approx(g[e["id"]]["mean"], rel=0.02), e["id"]
    gs = {s["id"]: s["cells"] for s in gen["species"]["items"]}
    rs = {s["id"]: s["cells"] for s in ras["species"]["items"]}
    assert set(rs) == set(gs)
    for sid, n in gs.items():
        assert abs(rs[sid] - n) <= 0.05 * n + 5, sid


def test_wms_serves_the_raster_regions_maps_like_the_generated_runs(real, client):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from tests.pixels import decode_png

    params = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": "indicator.richness",
              "STYLES": "", "CRS": "EPSG:3035", "FORMAT": "image/png", "WIDTH": 100, "HEIGHT": 100,
              "BBOX": ",".join(str(v) for v in (TILE.y0, TILE.x0, TILE.y0 + 25000, TILE.x0 + 25000))}
    gen = client.get("/wms", params=params)
    with TestClient(create_app(real[0])) as c:
        ras = c.get("/wms", params=params)
    assert gen.status_code == ras.status_code == 200 and ras.headers["content-type"] == "image/png"
    a, b = decode_png(gen.content).astype(int), decode_png(ras.content).astype(int)
    assert a.shape == b.shape and a.shape[1:] == (100, 100)
    a, b = a[:3], b[:3]
    assert len(np.unique(b.reshape(3, -1), axis=1).T) > 20  # a map, not a blank image
    assert (np.abs(a - b).max(0) <= 24).mean() > 0.9
