"""Every bad report input gets a 4xx whose message names the problem (and how to fix it)."""

from __future__ import annotations

import json
import math

import pytest
from pyproj import Transformer

from tests.reports_data import rclient, synth  # noqa: F401 (fixtures)

TO_WGS = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)


def ring(points_3035):
    r = [list(TO_WGS.transform(x, y)) for x, y in points_3035]
    return r + [r[0]]


INSIDE = ring([(4210013, 2810013), (4214013, 2810013), (4214013, 2814013), (4210013, 2814013)])


def post(client, body, **kw):
    if isinstance(body, (dict, list)):
        return client.post("/api/reports", content=json.dumps(body), headers={"content-type": "application/json"}, **kw)
    return client.post("/api/reports", content=body, headers={"content-type": "application/json"}, **kw)


CASES = [
    ("invalid JSON", b'{"type": "Polygon", "coordinates": [[[1, 2]', 400, ["invalid JSON", "line 1"]),
    ("not UTF-8", b"\xff\xfe{", 400, ["invalid JSON"]),
    ("a JSON array", [1, 2], 422, ["expected a GeoJSON object"]),
    ("a point", {"type": "Point", "coordinates": [10.0, 50.0]}, 422, ["wrong geometry type 'Point'", "Polygon or MultiPolygon"]),
    ("a line", {"type": "LineString", "coordinates": INSIDE}, 422, ["wrong geometry type 'LineString'"]),
    ("no type", {"coordinates": [INSIDE]}, 422, ["wrong geometry type"]),
    ("no coordinates", {"type": "Polygon"}, 422, ["no 'coordinates'"]),
    ("a feature without geometry", {"type": "Feature", "properties": {}}, 422, ["no geometry"]),
    ("two features", {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [INSIDE]}}] * 2}, 422, ["exactly one Feature"]),
    ("self-intersection", {"type": "Polygon", "coordinates": [ring([(4210013, 2810013), (4214013, 2814013),
                                                                    (4214013, 2810013), (4210013, 2814013)])]},
     422, ["Self-intersection", "crosses itself", "MultiPolygon", "make_valid"]),
    ("outside the mapped region", {"type": "Polygon", "coordinates": [[[-3.7, 40.4], [-3.6, 40.4], [-3.6, 40.5], [-3.7, 40.4]]]},
     422, ["outside the mapped region", "longitude"]),
    ("too many vertices", {"type": "Polygon", "coordinates": [[
        [10.5 + 0.01 * math.cos(2 * math.pi * k / 10_001), 48.5 + 0.01 * math.sin(2 * math.pi * k / 10_001)]
        for k in range(10_001)] + [[10.51, 48.5]]]}, 422, ["too many vertices", "at most 10000", "simplify"]),
    ("too large", {"type": "Polygon", "coordinates": [[[5, 45], [8, 45], [8, 48], [5, 48], [5, 45]]]},
     413, ["area too large", "at most 20,000 km2"]),
    ("a non-WGS84 CRS member", {"type": "Polygon", "crs": {"type": "name", "properties": {"name": "EPSG:3035"}},
                                "coordinates": [[[4210013, 2810013], [4214013, 2810013], [4214013, 2814013],
                                                 [4210013, 2810013]]]}, 422, ["non-WGS84 CRS EPSG:3035", "reproject"]),
    ("projected coordinates", {"type": "Polygon", "coordinates": [[[4210013, 2810013], [4214013, 2810013],
                                                                   [4214013, 2814013], [4210013, 2810013]]]},
     422, ["is not a WGS84 longitude/latitude", "reproject"]),
    ("an open ring", {"type": "Polygon", "coordinates": [INSIDE[:-1]]}, 422, ["not closed"]),
    ("a ring of three positions", {"type": "Polygon", "coordinates": [INSIDE[:2] + INSIDE[:1]]}, 422,
     ["at least 4 positions"]),
    ("a text coordinate", {"type": "Polygon", "coordinates": [[["10", 50], [10.1, 50], [10.1, 50.1], ["10", 50]]]},
     422, ["[longitude, latitude] (numbers)"]),
    ("a flat polygon", {"type": "Polygon", "coordinates": [[[10, 50], [10.1, 50], [10.2, 50], [10, 50]]]}, 422,
     ["encloses no area"]),
    ("a polygon with no cell centre", {"type": "Polygon", "coordinates": [ring([(4210001, 2810001), (4210010, 2810001),
                                                                                (4210010, 2810010)])]},
     422, ["no cell centre"]),
]


@pytest.mark.parametrize("what,body,status,words", CASES, ids=[c[0] for c in CASES])
def test_bad_area_gets_a_clear_4xx(rclient, what, body, status, words):
    r = post(rclient, body)
    assert r.status_code == status, (what, r.text)
    detail = r.json()["detail"]
    for w in words:
        assert w in detail, (what, detail)


def test_too_large_body_is_refused(rclient, synth):
    r = post(rclient, b" " * 2_000_001)
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_unknown_run_and_reports(rclient):
    r = post(rclient, {"type": "Polygon", "coordinates": [INSIDE]}, params={"run": "nope"})
    assert r.status_code == 404 and "unknown run 'nope'" in r.json()["detail"]
    r = rclient.get("/api/reports/" + "0" * 32)
    assert r.status_code == 404 and "POST the area" in r.json()["detail"]
    assert rclient.get("/api/reports/not-a-report-id").status_code == 422
    r = rclient.get("/api/reports/" + "0" * 32 + "/species")
    assert r.status_code == 404


def test_no_live_run_gives_503(tmp_path):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from backend.db.engine import migrate
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    migrate(settings.db_url)
    with TestClient(create_app(settings)) as c:
        r = post(c, {"type": "Polygon", "coordinates": [INSIDE]})
        assert r.status_code == 503 and "no run is live" in r.json()["detail"]


def test_a_run_without_assemblage_stores_says_to_recompute(tmp_path):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from tests.conftest import make_settings
    from tests.reports_data import make_synthetic_run

    run = make_synthetic_run(tmp_path, ["E4200N2800"], n_species=10, pool=10, keep_truth=False)
    (tmp_path / "runs" / run.run_id / "metatiles" / "E4200N2800" / "assemblage.bin").unlink()
    with TestClient(create_app(make_settings(tmp_path))) as c:
        r = post(c, {"type": "Polygon", "coordinates": [INSIDE]})
    assert r.status_code == 409 and "predates area reports" in r.json()["detail"]
