"""Per-meta-tile outputs: valid COGs, atomic writes, idempotent recomputation, mosaics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from inference.grid import MetaTile
from tiles.cog import is_valid_cog, write_cog, write_cog_band
from tiles.mosaic import build_vrt


def _cogs(computed) -> list[Path]:
    settings, _, run_id = computed
    return sorted((settings.data_dir / "runs" / run_id / "metatiles").rglob("*.tif"))


def test_every_output_is_a_valid_cog_with_nodata_and_overviews(computed):
    settings, _, run_id = computed
    cogs = _cogs(computed)
    assert cogs
    rio = shutil.which("rio", path=str(Path(__import__("sys").executable).parent))
    for cog in cogs:
        assert is_valid_cog(cog), cog
        # The command line users run, too.
        proc = subprocess.run([rio, "cogeo", "validate", str(cog)], capture_output=True, text=True)
        assert proc.returncode == 0 and "is a valid cloud optimized GeoTIFF" in proc.stdout, proc.stdout
        with rasterio.open(cog) as src:
            assert src.crs.to_epsg() == 3035
            assert src.res == (50.0, 50.0)
            assert src.shape == (500, 500)
            assert src.nodata is not None
            assert src.overviews(1), "COG without overviews"
            left, bottom = src.bounds.left, src.bounds.bottom
            assert left % 25000 == 0 and bottom % 25000 == 0
            tile_dir = cog.relative_to(settings.data_dir / "runs" / run_id / "metatiles").parts[0]
            assert tile_dir == MetaTile(int(left), int(bottom)).id


def _read(computed, file_name, band=1):
    (cog,) = [c for c in _cogs(computed) if c.stem == file_name]
    with rasterio.open(cog) as src:
        return MetaTile.from_id(cog.parent.name), src.read(band), src.nodata


def test_true_richness_equals_the_sum_of_true_probabilities(computed, tiny_region):
    from inference.data.region import load_region

    tile, got, nodata = _read(computed, "truth.richness")
    expected = load_region(tiny_region).true_probability(tile).sum(axis=0)
    assert (got != nodata).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_indicator_layers_match_a_direct_computation(computed, tiny_region, tiny_sdm):
    """Every indicator band against numpy sums over the model run the slow way (one patch per cell)."""
    from backend.db.models import Run
    from inference.data.region import load_region
    from inference.sdm.model import load_sdm
    from inference.sdm.predict import per_patch_probabilities

    settings, sessions, run_id = computed
    with sessions() as session:
        profile = session.get(Run, run_id).config["profile"]
    t = profile["threshold"]
    region = load_region(tiny_region)
    model, norm, ck = load_sdm(tiny_sdm)
    assert t == ck["thresholds"]["conformal_global"]
    tile, _, _ = _read(computed, "indicator.richness")
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 500, 64), rng.integers(0, 500, 64)
    x, y = region.cell_centres(tile)
    p = per_patch_probabilities(model, norm, region, x[rows, cols], y[rows, cols])  # [64, S]
    p = np.where(p >= t, p, 0.0)  # the assemblage
    sp = region.species
    specialist = np.zeros(len(sp), bool)
    specialist[profile["specialists"]] = True
    sets = {
        "richness": np.ones(len(sp), bool),
        "eu_directive": np.array([s.eu_directive for s in sp]),
        "threatened": np.array([s.iucn in ("VU", "EN", "CR") for s in sp]),
        "trees": np.array([s.tree for s in sp]),
        "invasive": np.array([s.invasive for s in sp]),
        "specialists": specialist,
    }
    for name, member in sets.items():
        _, mean, _ = _read(computed, f"indicator.{name}", 1)
        _, half, _ = _read(computed, f"indicator.{name}", 2)
        expected_mean = p[:, member].sum(1)
        expected_half = 2 * np.sqrt((p[:, member] * (1 - p[:, member])).sum(1))
        # The meta-tile path differs from cutting patches only at patch borders (see test_sdm); a
        # species near the threshold may cross it, which moves a sum by about the threshold.
        assert np.abs(mean[rows, cols] - expected_mean).mean() < 0.02 * max(expected_mean.mean(), 1) + t, name
        assert np.abs(half[rows, cols] - expected_half).mean() < 0.05 * max(expected_half.mean(), 1) + t, name
    rank = np.array([{"LC": 1, "NT": 2, "VU": 3, "EN": 4, "CR": 5}.get(s.iucn, 0) for s in sp])
    _, most, nodata = _read(computed, "indicator.status.most")
    assert nodata == 255
    expected_most = np.where(p > 0, rank[None, :], 0).max(1)
    assert (most[rows, cols] == expected_most).mean() >= 0.9
    for band, status in enumerate(("NT", "VU", "EN", "CR"), start=1):
        _, prob, _ = _read(computed, "indicator.status", band)
        expected = 1 - np.prod(1 - p[:, rank == {"NT": 2, "VU": 3, "EN": 4, "CR": 5}[status]], axis=1)
        assert np.abs(prob[rows, cols] - expected).mean() < 0.02, status
        assert ((prob >= 0) & (prob <= 1)).all()
    # It is the model's map, not the truth's (whether the model learned is tests/sdm's job).
    _, got, _ = _read(computed, "indicator.richness")
    _, truth, _ = _read(computed, "truth.richness")
    assert not np.allclose(got, truth, rtol=0.01)


def test_trait_layers_are_community_weighted_means(computed, tiny_region, tiny_sdm):
    from backend.db.models import Run
    from inference.data.region import load_region
    from inference.sdm.model import load_sdm
    from inference.sdm.predict import per_patch_probabilities

    settings, sessions, run_id = computed
    with sessions() as session:
        t = session.get(Run, run_id).config["profile"]["threshold"]
    region = load_region(tiny_region)
    model, norm, _ = load_sdm(tiny_sdm)
    tile, _, _ = _read(computed, "trait.height")
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 500, 48), rng.integers(0, 500, 48)
    x, y = region.cell_centres(tile)
    w = per_patch_probabilities(model, norm, region, x[rows, cols], y[rows, cols])
    w = np.where(w >= t, w, 0.0)
    for name in ("Height", "LeafArea", "SLA", "Leaf_N"):
        mu = np.log([sp.traits[name].median for sp in region.species])
        _, got, nodata = _read(computed, f"trait.{name.lower()}", 1)
        _, spread, _ = _read(computed, f"trait.{name.lower()}", 2)
        ok = w.sum(1) > 0.5  # cells with a clear assemblage (near-empty ones are threshold-sensitive)
        expected = (w @ mu) / w.sum(1).clip(1e-12)
        assert np.abs(np.log(got[rows, cols][ok]) - expected[ok]).mean() < 0.05, name
        dev = np.sqrt((w * (mu[None, :] - expected[:, None]) ** 2).sum(1) / w.sum(1).clip(1e-12))
        assert np.abs(spread[rows, cols][ok] - dev[ok]).mean() < 0.05, name
        assert ((got == nodata) == (spread == nodata)).all()


def test_embedding_layer_is_the_botaclip_pca_of_each_cell(computed, tiny_region, tiny_botaclip):
    from inference.botaclip.embed import embed_points, pca_rgb
    from inference.botaclip.model import load_botaclip
    from inference.data.region import load_region

    tile, _, nodata = _read(computed, "embedding.pca")
    (cog,) = [c for c in _cogs(computed) if c.stem == "embedding.pca"]
    with rasterio.open(cog) as src:
        rgb = src.read()
    assert rgb.shape == (3, 500, 500) and nodata == 0 and (rgb > 0).all()
    region = load_region(tiny_region)
    model = load_botaclip(tiny_botaclip)
    rng = np.random.default_rng(4)
    rows, cols = rng.integers(0, 500, 32), rng.integers(0, 500, 32)
    x, y = region.cell_centres(tile)
    emb = embed_points(region, model, x[rows, cols], y[rows, cols])  # [N, D], one patch per cell
    expected = pca_rgb(emb.T[:, :, None], model)[:, :, 0]  # [3, N]
    assert np.abs(rgb[:, rows, cols].astype(int) - np.maximum(expected, 1).astype(int)).max() <= 1
    assert rgb.reshape(3, -1).std(1).min() > 5  # a picture, not a flat colour


def test_habitat_layers_follow_the_eunis_hierarchy_and_the_model(computed, tiny_plantbert):
    from sqlalchemy import select

    from backend.db.models import Layer
    from inference.data import eunis
    from inference.habitat.plantbert import load_plantbert

    settings, sessions, run_id = computed
    with sessions() as session:
        layers = {lay.id: lay for lay in session.scalars(select(Layer).where(Layer.run_id == run_id))}
    codes = {}
    for level in (3, 2, 1):
        legend = layers[f"habitat.l{level}"].legend
        assert legend["type"] == "categorical"
        codes[level] = {item["value"]: item["code"] for item in legend["items"]}
        assert all(eunis.code_level(c) == level for c in codes[level].values())
        (cog,) = [c for c in _cogs(computed) if c.stem == f"habitat.l{level}"]
        with rasterio.open(cog) as src:
            assert src.colormap(1)[1][3] == 255 and src.nodata == 0  # a colour table for the classes
    _, l3, _ = _read(computed, "habitat.l3")
    _, l2, _ = _read(computed, "habitat.l2")
    _, l1, _ = _read(computed, "habitat.l1")
    _, prob, _ = _read(computed, "habitat.l3.probability")
    assert ((l3 == 0) == (l2 == 0)).all() and ((l3 == 0) == (prob == -1)).all()
    assert (l3 > 0).mean() > 0.5  # most cells have an assemblage
    pairs = np.unique(np.stack([l3.ravel(), l2.ravel(), l1.ravel()]), axis=1)
    for v3, v2, v1 in pairs.T:
        if v3:  # every cell's level-2 and level-1 codes are the ancestors of its level-3 code
            assert eunis.at_level(codes[3][v3], 2) == codes[2][v2]
            assert eunis.at_level(codes[3][v3], 1) == codes[1][v1]
    valid = prob[prob >= 0]
    labels = load_plantbert(tiny_plantbert).labels
    assert (valid >= 1 / len(labels) - 1e-6).all() and (valid <= 1).all()  # the winning softmax share


def test_habitat_suitability_layers_hold_each_cells_top_classes(computed, tiny_plantbert):
    from sqlalchemy import select

    from backend.db.models import Layer
    from inference.habitat.plantbert import load_plantbert
    from inference.pipeline.outputs import HABITAT_TOP_K, SUITABILITY_FILE, suitability_layer_id

    settings, sessions, run_id = computed
    labels = load_plantbert(tiny_plantbert).labels
    with sessions() as session:
        layers = {lay.id: lay for lay in session.scalars(select(Layer).where(Layer.run_id == run_id))}
    legend3 = {item["value"]: item["code"] for item in layers["habitat.l3"].legend["items"]}
    for band, code in enumerate(labels, start=1):  # one catalog layer per level-3 class, one band each
        lay = layers[suitability_layer_id(code)]
        assert lay.kind == "habitat-suitability" and lay.band == band and code in lay.title
    (cog,) = [c for c in _cogs(computed) if c.stem == SUITABILITY_FILE]
    with rasterio.open(cog) as src:
        suit = src.read()
        assert src.count == len(labels) and src.descriptions[0] == suitability_layer_id(labels[0])
    _, l3, _ = _read(computed, "habitat.l3")
    _, prob, _ = _read(computed, "habitat.l3.probability")
    has = l3 > 0
    assert (suit[:, ~has] == -1).all()  # no assemblage: nodata in every band
    s = suit[:, has]  # [C, cells]
    assert (s >= 0).all() and (s.sum(0) <= 1 + 1e-5).all()
    positive = (s > 0).sum(0)
    assert positive.max() == HABITAT_TOP_K and positive.min() >= 1
    # the map's class at every cell is the most suitable one, with the map's probability
    winner = np.array([labels.index(legend3[v]) for v in l3[has]])
    assert np.array_equal(s.argmax(0), winner)
    assert np.array_equal(s[winner, np.arange(s.shape[1])], prob[has])


def test_species_layers_hold_the_probabilities_of_species_present_somewhere(computed, tiny_region, tiny_sdm):
    import json

    from sqlalchemy import select

    from backend.db.models import Layer, Run
    from inference.data.region import load_region
    from inference.sdm.model import load_sdm
    from inference.sdm.predict import per_patch_probabilities

    settings, sessions, run_id = computed
    with sessions() as session:
        config = session.get(Run, run_id).config
        t, t_map = config["profile"]["threshold"], config["species_map_threshold"]
        layers = {lay.id: lay for lay in session.scalars(select(Layer).where(Layer.run_id == run_id))}
    (manifest_path,) = (settings.data_dir / "runs" / run_id / "metatiles").glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    tile = MetaTile.from_id(manifest["tile"])
    region = load_region(tiny_region)
    model, norm, ck = load_sdm(tiny_sdm)
    assert t == ck["thresholds"]["conformal_global"] and t_map == ck["thresholds"]["f1_optimal"]
    rng = np.random.default_rng(2)
    rows, cols = rng.integers(0, 500, 48), rng.integers(0, 500, 48)
    x, y = region.cell_centres(tile)
    p = per_patch_probabilities(model, norm, region, x[rows, cols], y[rows, cols])
    ids = [int(s) for s in region.species_ids]
    assert manifest["species"], "no species layer written"
    for sid in manifest["species"]:
        path = manifest_path.parent / "species" / f"{sid}.tif"
        assert manifest["files"][f"species/{sid}.tif"] == path.stat().st_size
        with rasterio.open(path) as src:
            codes = src.read(1)
            assert src.scales == (1 / 250,) and src.nodata == 255
        assert codes.max() >= t * 250 - 0.5  # written because it is in some cell's assemblage
        got = codes[rows, cols] / 250
        # quantisation (1/500) plus the meta-tile path's patch-border deviation (larger for the tiny
        # 32 px model than for the demo model; see tests/sdm)
        assert np.abs(got - p[:, ids.index(sid)]).mean() < 0.025
        assert layers[f"species.{sid}"].species_id == sid
        # presence maps at the F1-optimal threshold of the checkpoint, assemblages at the conformal one
        assert layers[f"species.{sid}.presence"].colormap == f"presence-{int(np.ceil(t_map * 250 - 1e-9)):03d}"
    # Species in no assemblage anywhere get no file and no layer.
    for sid in set(ids) - set(manifest["species"]):
        assert f"species.{sid}" not in layers
    # Bytes per cell of every layer together (the cascade issue's goal is 300 B).
    per_cell = sum(manifest["files"].values()) / manifest["cells"]
    assert per_cell < 300, per_cell


def test_write_cog_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out" / "layer.tif"
    data = np.arange(256 * 256, dtype=np.float32).reshape(256, 256)
    tile = MetaTile.from_id("E4200N2800")
    write_cog(target, data, transform=tile.transform(), nodata=-1.0)
    before = target.read_bytes()

    import tiles.cog as cog_mod

    def boom(*_a, **_k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cog_mod, "cog_translate", boom)
    with pytest.raises(RuntimeError):
        write_cog(target, data * 2, transform=tile.transform(), nodata=-1.0)
    # The old complete file is still there, and no temporary file is left behind.
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["layer.tif"]


def test_recomputing_a_finished_metatile_does_nothing(computed):
    from backend.jobs.runs import process_metatile

    settings, sessions, run_id = computed
    cog = _cogs(computed)[0]
    mtime = cog.stat().st_mtime_ns
    assert process_metatile(settings, sessions, run_id, cog.parent.name) == "skipped"
    assert cog.stat().st_mtime_ns == mtime


def test_vrt_mosaic_places_metatiles_on_the_grid(tmp_path):
    a, b = MetaTile.from_id("E4200N2800"), MetaTile.from_id("E4225N2825")
    write_cog(tmp_path / "a.tif", np.full((500, 500), 1, np.uint8), transform=a.transform(), nodata=0)
    write_cog(tmp_path / "b.tif", np.full((500, 500), 2, np.uint8), transform=b.transform(), nodata=0)
    vrt = build_vrt(tmp_path / "m.vrt", [tmp_path / "a.tif", tmp_path / "b.tif"])
    with rasterio.open(vrt) as src:
        assert src.shape == (1000, 1000)
        assert src.bounds == (4200000, 2800000, 4250000, 2850000)
        data = src.read(1)
    assert (data[500:, :500] == 1).all()  # a: lower left
    assert (data[:500, 500:] == 2).all()  # b: upper right
    assert (data[:500, :500] == 0).all() and (data[500:, 500:] == 0).all()  # no tile: nodata


def test_vrt_mosaic_carries_its_overviews_and_scale(tmp_path):
    """GDAL (and so TiTiler and QGIS) finds the region overviews from the VRT alone, with the
    directory listing off as the servers run it, at every level; scale and offset travel too."""
    from tiles.cog import GDAL_ENV

    tiles = [MetaTile.from_id(f"E42{x}N28{y}") for x in ("00", "25") for y in ("00", "25")]
    for i, t in enumerate(tiles):
        write_cog_band(tmp_path / f"{i}.tif", np.full((500, 500), 50 * (i + 1), np.uint8), transform=t.transform(),
                  nodata=255, scale=1 / 250)
    vrt = build_vrt(tmp_path / "m.vrt", [tmp_path / f"{i}.tif" for i in range(4)])
    with rasterio.Env(**GDAL_ENV), rasterio.open(vrt) as src:
        assert src.overviews(1) == [4]
        assert src.scales == (1 / 250,) and src.offsets == (0.0,)
        for factor in (4, 8, 16):  # the first level from the VRT, the further ones from the .ovr's pages
            low = src.read(1, out_shape=(1000 // factor, 1000 // factor))
            a, b = 500 // factor, -(-500 // factor)  # around the tile edges a pixel may mix two tiles
            assert (low[b:, :a] == 50).all() and (low[:a, :a] == 100).all(), factor
            assert (low[b:, b:] == 150).all() and (low[:a, b:] == 200).all(), factor
    (tmp_path / "0.tif").unlink()  # a low-zoom read touches the overviews only, not the meta-tiles
    with rasterio.Env(**GDAL_ENV), rasterio.open(vrt) as src:
        assert (src.read(1, out_shape=(125, 125))[63:, :62] == 50).all()


def test_first_rows_of_a_metatile_equal_the_whole_computation(computed, tiny_region, tiny_sdm, tiny_botaclip,
                                                              tiny_plantbert):
    """``n_rows`` (benchmarks of paper-size models on a CPU) computes exactly the first rows."""
    from inference.data.region import load_region
    from inference.pipeline.stages import RunProfile, compute_metatile, models_for

    settings, sessions, run_id = computed
    from backend.db.models import Run

    with sessions() as session:
        profile = RunProfile.from_dict(session.get(Run, run_id).config["profile"])
    region = load_region(tiny_region)
    tile = next(region.grid.metatiles())
    part = compute_metatile(region, tile, models_for({"sdm": tiny_sdm, "plantbert": tiny_plantbert, "botaclip": tiny_botaclip}, "cpu"), profile,
                            n_rows=37)
    # (habitats are left out: refinement on a 37-row band has another lattice than on the whole tile)
    for layer in ("indicator.richness", "embedding.pca", "trait.height", "truth.richness"):
        _, whole, _ = _read(computed, layer)
        got = part[layer] if part[layer].ndim == 2 else part[layer][0]
        assert got.shape == (37, 500), layer
        np.testing.assert_allclose(got, whole[:37], rtol=1e-4, atol=1e-3, err_msg=layer)


def test_sdm_files_are_written_while_plantbert_computes_and_a_crash_leaves_no_manifest(
        tmp_path, monkeypatch, tiny_region, tiny_sdm, tiny_plantbert):
    """The worker path overlaps writing with compute: the indicator, species and trait files are
    complete before Pl@ntBERT returns. A crash in Pl@ntBERT leaves those (complete) files but no
    manifest, the meta-tile failed; a retry finishes it."""
    import inference.pipeline.stages as infer  # the stage that calls Pl@ntBERT
    from backend.core.paths import MANIFEST
    from backend.db.engine import make_engine, make_sessionmaker, migrate
    from backend.db.models import MetaTileRecord
    from backend.jobs.runs import create_run, process_metatile
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "data")
    migrate(settings.db_url)
    sessions = make_sessionmaker(make_engine(settings.db_url))
    settings = settings.model_copy(update={"device": "cpu", "habitat_step": 8})
    run_id = create_run(settings, sessions, "tiny", tiny_region, {"sdm": tiny_sdm, "plantbert": tiny_plantbert})
    tile_id = "E4200N2800"
    folder = settings.layout.metatile_dir(run_id, tile_id)
    real = infer.classify_metatile
    seen = {}

    def classify_then_crash(*args, **kwargs):
        import time

        deadline = time.monotonic() + 60  # the early files are being written meanwhile
        while time.monotonic() < deadline and not (folder / "assemblage.bin").is_file():
            time.sleep(0.05)
        seen["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        raise RuntimeError("GPU fell off the bus")

    monkeypatch.setattr(infer, "classify_metatile", classify_then_crash)
    with pytest.raises(RuntimeError, match="bus"):
        process_metatile(settings, sessions, run_id, tile_id)
    assert "assemblage.bin" in seen["files"] and any(f.startswith("species/") for f in seen["files"])
    assert not (folder / MANIFEST).exists()
    assert not list(folder.rglob(".*.tmp"))
    assert all(is_valid_cog(p) for p in folder.rglob("*.tif"))
    assert not list(folder.glob("habitat*.tif"))
    with sessions() as session:
        record = session.query(MetaTileRecord).filter_by(run_id=run_id, tile_id=tile_id).one()
        assert record.status == "failed" and "bus" in record.error

    monkeypatch.setattr(infer, "classify_metatile", real)
    assert process_metatile(settings, sessions, run_id, tile_id) == "done"
    assert (folder / MANIFEST).is_file() and list(folder.glob("habitat*.tif"))
