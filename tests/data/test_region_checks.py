"""A region's rasters and a run's models are checked before anything is computed: a raster in
another CRS or at another resolution than the region says is refused, never read as wrong inputs;
models that do not fit the region are refused with what does not fit."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from backend.core.errors import RegionError, RunError
from inference.data.region import load_region


def _copy_with(tiny_region, tmp_path, s2_writer):
    """The tiny region with links to its files, except a rewritten Sentinel-2 raster."""
    out = tmp_path / "copy"
    for src in tiny_region.rglob("*"):
        dst = out / src.relative_to(tiny_region)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        elif src.name != "s2_rgbnir_10m.tif":
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, dst) if src.name != "region.json" else shutil.copyfile(src, dst)
    meta = json.loads((tiny_region / "region.json").read_text())
    with rasterio.open(tiny_region / meta["files"]["s2"]) as ds:
        s2_writer(ds, out / meta["files"]["s2"])
    return load_region(out)


def _utm(ds, path):
    t, w, h = calculate_default_transform(ds.crs, "EPSG:32632", ds.width, ds.height, *ds.bounds, resolution=10)
    dst = np.zeros((ds.count, h, w), np.uint16)
    reproject(ds.read(), dst, src_transform=ds.transform, src_crs=ds.crs, dst_transform=t, dst_crs="EPSG:32632",
              resampling=Resampling.nearest)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=ds.count, dtype="uint16",
                       crs="EPSG:32632", transform=t) as out:
        out.write(dst)


def _coarse(ds, path):
    a = ds.read(out_shape=(ds.count, ds.height // 2, ds.width // 2))
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[2], height=a.shape[1], count=ds.count,
                       dtype="uint16", crs=ds.crs, transform=ds.transform * ds.transform.scale(2, 2)) as out:
        out.write(a)


def test_a_generated_region_raster_in_another_crs_is_refused(tiny_region, tmp_path):
    region = _copy_with(tiny_region, tmp_path, _utm)
    with pytest.raises(RegionError, match="expected an EPSG:3035 raster, found EPSG:32632"):
        region.extract_s2([4_210_000.0], [2_810_000.0])
    with pytest.raises(RegionError, match="EPSG:3035"):
        region.s2_window(4_210_000.0, 2_810_000.0, 8, 8)


def test_a_generated_region_raster_at_another_resolution_is_refused(tiny_region, tmp_path):
    region = _copy_with(tiny_region, tmp_path, _coarse)
    with pytest.raises(RegionError, match="expected 10 m pixels, found 20 m"):
        region.extract_s2([4_210_000.0], [2_810_000.0])


def test_models_that_do_not_fit_the_region_are_refused(tiny_region, tiny_sdm, tiny_plantbert, monkeypatch):
    from inference.pipeline import run as cascade
    from inference.pipeline.stages import models_for

    region = load_region(tiny_region)
    models = models_for({"sdm": tiny_sdm, "plantbert": tiny_plantbert}, "cpu")
    cascade.check_models(region, models)  # they fit
    table = region.species
    monkeypatch.setattr(type(region), "species", property(lambda self: table[:-2]))
    missing = [str(s.id) for s in table[-2:]]
    with pytest.raises(RunError, match=f"does not fit region 'tiny'.*lacks 2 of the model's.*{missing[0]}, {missing[1]}"):
        cascade.check_models(region, models)
    monkeypatch.undo()
    monkeypatch.setattr(models.plantbert, "labels", ("T17", "X99"))
    with pytest.raises(RunError, match=r"labels \['X99'\] are not in the EUNIS habitat table"):
        cascade.check_models(region, models)


def test_an_sdm_without_conformal_threshold_is_refused(tiny_region, tiny_sdm, monkeypatch):
    from inference.pipeline import run as cascade
    from inference.pipeline.stages import models_for

    models = models_for({"sdm": tiny_sdm}, "cpu")
    monkeypatch.setattr(models, "thresholds", {"f1_optimal": 0.5})  # as an import without calibration data
    with pytest.raises(RunError, match="has no conformal threshold: calibrate it"):
        cascade.check_models(load_region(tiny_region), models)


def test_cells_whose_inputs_give_no_prediction_are_masked(tiny_region, tiny_sdm, monkeypatch):
    """A nodata value inside a cube's time series (a CHELSA month with a hole) makes the cell's
    prediction NaN: the cell is masked in every layer and counted, never written as a number."""
    import torch

    from inference.grid import MetaTile
    from inference.pipeline.stages import compute_metatile, models_for, run_profile

    region = load_region(tiny_region)
    models = models_for({"sdm": tiny_sdm}, "cpu")
    profile = run_profile(region, models, n_cells=200)
    tile = MetaTile(4200000, 2800000)
    real = models.sdm.probabilities(region, tile)
    holed = real.clone()
    holed[:, 10:12, 20:25] = float("nan")
    monkeypatch.setattr(models.sdm, "probabilities", lambda *a, **k: holed.clone())
    info = {}
    out = compute_metatile(region, tile, models, profile, info=info)
    assert info["cells_without_inputs"] == 10
    assert (out["indicator.richness"][10:12, 20:25] == -1).all() and (out["trait.height"][10:12, 20:25] == -1).all()
    assert np.isfinite(out["indicator.richness"]).all() and (out["indicator.richness"][0] >= 0).all()
    assert torch.isfinite(real).all()
