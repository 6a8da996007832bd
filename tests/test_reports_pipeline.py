"""Reports on a run the pipeline computed (the tiny region): the numbers equal a direct computation
from its COGs and assemblage store, and the layer ids a report names are served."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from shapely.geometry import Polygon

from inference.grid import MetaTile
from inference.pipeline.assemblage import read_assemblage
from tests.reports_data import cell_mask, polygon

pytestmark = pytest.mark.slow


def test_report_on_a_pipeline_run_matches_its_rasters_and_store(client, computed):
    settings, _, run_id = computed
    (tile_dir,) = (settings.data_dir / "runs" / run_id / "metatiles").iterdir()
    tile = MetaTile.from_id(tile_dir.name)
    left, bottom, _, _ = tile.bounds
    pts = [(left + 3013, bottom + 4007), (left + 17011, bottom + 2989), (left + 15493, bottom + 16013),
           (left + 6007, bottom + 19511)]
    r = client.post("/api/reports", json=polygon(pts), params={"species_limit": 1000})
    assert r.status_code == 200, r.text
    report = r.json()
    mask = cell_mask(tile, Polygon(pts))
    assert report["area"]["cells"] == mask.sum()
    a = read_assemblage(tile_dir / "assemblage.bin")
    take = np.repeat(mask.ravel(), a.counts)
    cells = np.bincount(a.species[take], minlength=len(a.species_ids))
    got = {s["id"]: s["cells"] for s in report["species"]["items"]}
    assert got == {int(a.species_ids[k]): int(cells[k]) for k in np.flatnonzero(cells)}
    with rasterio.open(tile_dir / "indicator.richness.tif") as src:
        v = src.read(1)[mask]
        v = v[v != src.nodata].astype(np.float64)
    (rich,) = [e for e in report["indicators"]["items"] if e["id"] == "indicator.richness"]
    assert rich["mean"] == pytest.approx(v.mean(), rel=1e-5) and rich["max"] == pytest.approx(v.max(), rel=1e-5)
    with rasterio.open(tile_dir / "habitat.l3.tif") as src:
        l3 = src.read(1)[mask]
    counts = {h["value"]: h["cells"] for h in report["habitats"]["levels"]["3"]}
    assert counts == {int(k): int(n) for k, n in zip(*np.unique(l3[l3 > 0], return_counts=True))}
    assert {t["id"] for t in report["traits"]["items"]} == {"trait.height", "trait.leafarea", "trait.sla", "trait.leaf_n"}
    # every layer id the report names is a served layer
    layers = {lyr["id"] for lyr in client.get("/api/layers").json()["layers"]}
    for s in report["species"]["items"][:20]:
        assert set(s["layers"]) <= layers
    first = report["species"]["items"][0]
    detail = client.get(f"/api/species/{first['id']}").json()
    assert detail["layers"] == sorted(first["layers"]) and detail["predicted_in"][0]["tile_id"] == tile.id
    assert client.get("/api/species", params={"q": first["name"][:6]}).json()[0]["name"].startswith(first["name"][:6])
