"""REST API: health, layers catalog, runs, errors and limits."""

from __future__ import annotations

import numpy as np
import rasterio


def test_health_reports_the_live_run(client, computed):
    _, _, run_id = computed
    body = client.get("/api/health").json()
    assert body == {"status": "ok", "version": "0.1.0", "database": "sqlite", "live_run": run_id}


def test_layers_lists_the_computed_layer_with_usable_metadata(client, computed, tiny_region):
    settings, _, run_id = computed
    body = client.get("/api/layers").json()
    assert body["run"]["id"] == run_id
    (layer,) = [lyr for lyr in body["layers"] if lyr["id"] == "indicator.richness"]
    assert layer["tiles_url"] == "/tiles/indicator.richness/{z}/{x}/{y}.png"
    assert layer["wms_layer"] == "indicator.richness"
    legend = layer["legend"]
    assert legend["type"] == "continuous" and legend["min"] == 0 and len(legend["colors"]) >= 5
    # The legend's top is at or above the 99th percentile of the data it colours.
    with rasterio.open(settings.data_dir / "runs" / run_id / "mosaics" / "indicator.richness.vrt") as src:
        data = src.read(1)
        valid = data[data != src.nodata]
    assert np.percentile(valid, 99) <= legend["max"] <= 2 * max(valid.max(), 1)
    # Bounds: the 25 km meta-tile, in WGS84, somewhere in Europe.
    west, south, east, north = layer["bounds"]
    assert -25 < west < east < 45 and 34 < south < north < 72
    assert 0.2 < east - west < 0.6 and 0.15 < north - south < 0.35


def test_runs_report_each_metatile(client, computed):
    _, _, run_id = computed
    runs = client.get("/api/runs").json()
    assert runs[0]["id"] == run_id and runs[0]["is_live"] and runs[0]["status"] == "complete"
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["progress"] == 1.0
    (tile,) = detail["metatiles"]
    left, bottom, right, top = tile["bounds_3035"]
    assert (right - left, top - bottom) == (25000, 25000)
    assert tile["tile_id"] == f"E{int(left) // 1000}N{int(bottom) // 1000}"


def test_unknown_resources_are_404_with_a_message(client):
    r = client.get("/api/runs/nope")
    assert r.status_code == 404 and "unknown run 'nope'" in r.json()["detail"]
    r = client.get("/api/layers/nope")
    assert r.status_code == 404 and "unknown layer" in r.json()["detail"]


def test_oversized_bodies_are_refused_before_reading(client, computed):
    settings, _, _ = computed
    r = client.post("/api/layers", content=b"x" * (settings.max_body_bytes + 1))
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert "/api/health" in paths and "/api/layers" in paths
    assert any(p.startswith("/tiles/{layer_id}/tiles/") for p in paths)
    # No TiTiler route accepts a `url` parameter: files come from the catalog only.
    for path, ops in paths.items():
        for op in ops.values():
            names = {p["name"] for p in op.get("parameters", [])}
            assert "url" not in names, path
    assert client.get("/docs").status_code == 200


def test_no_live_run_gives_503_not_a_crash(tmp_path):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from backend.db.engine import migrate
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    migrate(settings.db_url)
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/layers").json() == {"run": None, "layers": []}
        assert c.get("/api/health").json()["live_run"] is None
        for url in ("/tiles/indicator.richness/tiles/WebMercatorQuad/1/1/1.png", "/tiles/indicator.richness/1/1/1.png",
                    "/stac/runs/x/collection.json"):
            r = c.get(url)
            assert r.status_code in (503, 404) and "live" in r.json()["detail"]
        assert c.get("/stac").json()["links"][-1]["rel"] != "child"  # no run: no collection
        r = c.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities")
        assert r.status_code == 503 and "ServiceException" in r.text
