"""Per-meta-tile outputs: valid COGs, atomic writes, idempotent recomputation, mosaics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from inference.grid import MetaTile
from tiles.cog import is_valid_cog, write_cog
from tiles.mosaic import build_vrt


def _cogs(computed) -> list[Path]:
    settings, _, run_id = computed
    return sorted((settings.data_dir / "runs" / run_id / "metatiles").rglob("*.tif"))


def test_every_output_is_a_valid_cog_with_nodata_and_overviews(computed):
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
            assert cog.parent.name == MetaTile(int(left), int(bottom)).id


def _read(computed, layer_id):
    (cog,) = [c for c in _cogs(computed) if c.stem == layer_id]
    with rasterio.open(cog) as src:
        return MetaTile.from_id(cog.parent.name), src.read(1), src.nodata


def test_true_richness_equals_the_sum_of_true_probabilities(computed, tiny_region):
    from inference.data.region import load_region

    tile, got, nodata = _read(computed, "truth.richness")
    expected = load_region(tiny_region).true_probability(tile).sum(axis=0)
    assert (got != nodata).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_richness_is_the_sum_of_the_sdm_probabilities(computed, tiny_region, tiny_sdm):
    """Check the map against the model run the slow way (one patch per cell) on sample cells."""
    from inference.data.region import load_region
    from inference.sdm.predict import per_patch_probabilities
    from inference.sdm.train import load_sdm

    tile, got, _ = _read(computed, "indicator.richness")
    region = load_region(tiny_region)
    model, norm, _ = load_sdm(tiny_sdm)
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 500, 64), rng.integers(0, 500, 64)
    x, y = region.cell_centres(tile)
    ref = per_patch_probabilities(model, norm, region, x[rows, cols], y[rows, cols]).sum(1)
    # The meta-tile path differs from cutting patches only at patch borders (see test_sdm).
    np.testing.assert_allclose(got[rows, cols], ref, rtol=0.06)
    assert np.mean(np.abs(got[rows, cols] - ref) / ref) < 0.02
    # It is the model's map, not the truth's (whether the model learned is tests/sdm's job).
    _, truth, _ = _read(computed, "truth.richness")
    assert not np.allclose(got, truth, rtol=0.01)


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
    from inference.pipeline.run import process_metatile

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
