"""Hostile input against a real server process (`geoflora serve`, one gunicorn worker, so that one
stuck request would stop it): every route that takes an expression or a string parameter, with
exponent towers, 10,000-character values, deep nesting, NaN and inf, unknown functions, attribute
access, ``__import__`` and unicode tricks. Each request must get a 4xx within 1 s, and the same
process must answer /api/health right after."""

from __future__ import annotations

import json
import time
import urllib.parse

import httpx
import morecantile
import pytest

from tests.conftest import free_port
from tests.processes import Processes, server_env, start_server

pytestmark = pytest.mark.slow

LAYER = "indicator.richness"  # two bands: mean and 2-sigma
HABITAT = "habitat.l3"
LIMIT_S = 1.0

TOWERS = ["10**10**10*b1", "9**9**9**9", "(10**9)**9*b1", "2**64**64+b1", "b1**b1", "b1**100000", "b1**(10**10)",
          "((1e10)**10)**10*b1", "b1*99999999999999999999999999999999999999"]
HUGE = ["b1+" * 3333 + "b1", "1" * 10_000, "(" * 5_000 + "b1" + ")" * 5_000]
DEEP = ["(" * 250 + "b1" + ")" * 250, "-" * 400 + "b1", "sqrt(" * 80 + "b1" + ")" * 80,
        "b1" + "+b1" * 250, "where(" * 40 + "b1" + ",1,0)" * 40, "b1*(" * 40 + "b1" + ")" * 40]
NUMBERS = ["b1*nan", "b1*inf", "b1+1e999", "b1/0", "0/0*b1", "b1%0", "(-8)**0.5*b1", "0**-1*b1"]
NAMES = ["foo(b1)", "sum(b1)", "contains(b1,b1)", "complex(b1,b1)", "b1.real", "b1.__class__.__bases__",
         "().__class__", "__import__('os').system('true')", "eval('b1')", "exec('1')", "lambda: b1",
         "[b1 for b1 in b1]", "b1 if b1 else b1", "b1 and b1", "b1<<99", "b1[0]", "'a'*10**9", "b99", "b0",
         "where(b1)", "sqrt(b1, b1)", "abs(x=b1)"]
UNICODE = ["ｂ１*2", "b\u0661", "b1\u200b*2", "b1\x00", "ᵇ1+b1", "b1 ＊ 2", "b1\u202e2*", "b1;" * 10, ";;;;"]
EXPRESSIONS = TOWERS + HUGE + DEEP + NUMBERS + NAMES + UNICODE

# (parameter, value) pairs for every other client-given string of the TiTiler routes
PARAMS = [
    ("rescale", "0,1e999"), ("rescale", "nan,1"), ("rescale", "1,1"), ("rescale", "0," * 5_000), ("rescale", "a,b"),
    ("colormap", '{"1":"#ff0000"' + ',"1":"#ff0000"' * 2_000 + "}"), ("colormap", "[" * 10_000 + "]" * 10_000),
    ("colormap", "not json"), ("colormap", json.dumps({str(i): "#ff0000" for i in range(1000)})),
    ("colormap", '{"1": "x" }'), ("colormap_name", "x" * 10_000), ("colormap_name", "viridis\x00"),
    ("bidx", "0"), ("bidx", "99999"), ("bidx", "-1"), ("bidx", "1e9"),
    ("tilesize", "100000"), ("tilesize", "-1"), ("buffer", "1e9"), ("buffer", "nan"), ("padding", "99999"),
    ("nodata", "1e999"), ("nodata", "abc"), ("nodata", "nan" * 1000),
    ("color_formula", "gamma " * 1000), ("color_formula", "sigmoidal rgb 1e999 1e999"),
    ("color_formula", "__import__('os')"),
    ("algorithm", "hillshade"), ("algorithm", "contours"), ("algorithm", "x" * 10_000),
    ("algorithm_params", '{"buffer": 1e9}'), ("algorithm_params", "[" * 10_000),
    ("resampling", "x" * 10_000), ("reproject", "\u202e"), ("return_mask", "maybe"), ("unscale", "2"),
    ("crs", "+proj=pipeline " * 500), ("crs", "EPSG:99999999999"), ("crs", "http://evil.example/crs"),
    ("minzoom", "-5"), ("maxzoom", "1e9"), ("f", "x" * 10_000),
]
STATS_PARAMS = [
    ("histogram_bins", "1000000000"), ("histogram_bins", "1," * 5_000), ("histogram_bins", "3,2,1"),
    ("histogram_range", "1,nan"), ("p", "101"), ("p", "-5"), ("p", "1e9"), ("c", "nan"),
    ("max_size", "100000"), ("width", "100000"), ("height", "0"), ("categorical", "\u0000"),
]


@pytest.fixture(scope="module")
def server(computed, tmp_path_factory):
    settings, _, _ = computed
    processes = Processes(tmp_path_factory.mktemp("hostile"))
    port = free_port()
    try:
        start_server(processes, "api", port, 1, server_env(settings.data_dir))
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            layers = {lyr["id"]: lyr for lyr in client.get("/api/layers").json()["layers"]}
            # warm every route family once (MapProxy configuration, catalog, open files)
            west, south, east, north = layers[LAYER]["bounds"]
            lon, lat = (west + east) / 2, (south + north) / 2
            assert client.get(f"/tiles/{LAYER}/point/{lon},{lat}").status_code == 200
            tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 12)
            tile = f"{tile.z}/{tile.x}/{tile.y}"
            assert client.get(f"/tiles/{LAYER}/tiles/WebMercatorQuad/{tile}.png",
                              params={"expression": "b1*2"}).status_code == 200
            assert client.get("/wms", params={"SERVICE": "WMS", "REQUEST": "GetCapabilities"}).status_code == 200
            assert client.get(f"/tiles/{LAYER}/statistics", params={"max_size": 64}).status_code == 200
            yield base, layers, (lon, lat), tile
    finally:
        processes.close()


def _hostile(base: str, method: str, path: str, params=None, **kw) -> httpx.Response:
    """One hostile request: answered with a 4xx within LIMIT_S, and health answered right after."""
    with httpx.Client(base_url=base, timeout=10) as client:
        t0 = time.perf_counter()
        resp = client.request(method, path, params=params, **kw)
        took = time.perf_counter() - t0
        t1 = time.perf_counter()
        health = client.get("/api/health")
        health_took = time.perf_counter() - t1
    shown = f"{method} {path} {str(params)[:120]}"
    assert 400 <= resp.status_code < 500, (shown, resp.status_code, resp.text[:300])
    assert took < LIMIT_S, (shown, f"answered in {took:.2f} s")
    assert health.status_code == 200 and health_took < LIMIT_S, (shown, health.status_code, health_took)
    return resp


def _routes(point, tile) -> list[tuple[str, str]]:
    lon, lat = point
    return [("GET", f"/tiles/{LAYER}/tiles/WebMercatorQuad/{tile}.png"), ("GET", f"/tiles/{LAYER}/point/{lon},{lat}"),
            ("GET", f"/tiles/{LAYER}/statistics"), ("GET", f"/tiles/{LAYER}/WebMercatorQuad/tilejson.json"),
            ("GET", f"/tiles/{HABITAT}/tiles/WebMercatorQuad/{tile}")]


def test_hostile_expressions_get_a_4xx_at_once_on_every_route(server):
    base, _, point, tile = server
    for method, path in _routes(point, tile):
        for expression in EXPRESSIONS:
            resp = _hostile(base, method, path, {"expression": expression})
            assert resp.status_code == 400, (path, expression, resp.text[:200])
            detail = resp.json()["detail"]
            assert "expression" in detail, (expression, detail)
    # the tower that stopped the server, as the request
    resp = _hostile(base, "GET", f"/tiles/{LAYER}/point/8.7,48.5", {"expression": "10**10**10*b1"})
    assert "exponent" in resp.json()["detail"]


def test_hostile_expressions_in_statistics_bodies(server):
    base, layers, _, _ = server
    west, south, east, north = layers[LAYER]["bounds"]
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                                [west, north], [west, south]]]}}
    for expression in TOWERS + NAMES[:8]:
        _hostile(base, "POST", f"/tiles/{LAYER}/statistics", {"expression": expression, "max_size": 64},
                 json=feature)


@pytest.mark.parametrize("name,value", PARAMS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PARAMS)])
def test_every_other_tile_parameter_is_bounded(server, name, value):
    base, _, point, tile = server
    lon, lat = point
    for method, path in [("GET", f"/tiles/{LAYER}/tiles/WebMercatorQuad/{tile}.png"),
                         ("GET", f"/tiles/{LAYER}/WebMercatorQuad/tilejson.json")]:
        if name == "crs":
            path = f"/tiles/{LAYER}/info.geojson"
        _hostile(base, method, path, {name: value})
    if name in ("bidx", "nodata", "resampling", "reproject", "unscale", "crs"):
        key = "coord_crs" if name == "crs" else name
        _hostile(base, "GET", f"/tiles/{LAYER}/point/{lon},{lat}", {key: value})


@pytest.mark.parametrize("name,value", STATS_PARAMS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(STATS_PARAMS)])
def test_statistics_parameters_are_bounded(server, name, value):
    base, _, _, _ = server
    _hostile(base, "GET", f"/tiles/{LAYER}/statistics", {name: value})


def test_statistics_reads_that_do_not_fit_are_refused(server):
    base, layers, _, _ = server
    europe = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[-10, 35], [30, 35], [30, 70], [-10, 70], [-10, 35]]]}}
    resp = _hostile(base, "POST", f"/tiles/{LAYER}/statistics", json=europe)
    assert "max_size" in resp.json()["detail"]
    west, south, east, north = layers[LAYER]["bounds"]
    small = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[west, south], [west + 0.01, south], [west + 0.01, south + 0.01], [west, south + 0.01], [west, south]]]}}
    _hostile(base, "POST", f"/tiles/{LAYER}/statistics", {"cover_scale": "1000"}, json=small)
    many = {"type": "FeatureCollection", "features": [small] * 1000}
    assert "features" in _hostile(base, "POST", f"/tiles/{LAYER}/statistics", json=many).json()["detail"]
    nan = json.dumps(small).replace(str(west), "NaN", 1)
    _hostile(base, "POST", f"/tiles/{LAYER}/statistics", content=nan, headers={"content-type": "application/json"})
    # a sound request still works
    with httpx.Client(base_url=base, timeout=10) as client:
        ok = client.post(f"/tiles/{LAYER}/statistics", json=small)
        assert ok.status_code == 200, ok.text
        assert ok.json()["properties"]["statistics"]["b1"]["count"] > 0


def test_point_coordinates_must_be_finite(server):
    base, _, _, _ = server
    for lon, lat in (("nan", "45"), ("10", "inf"), ("1e308", "45"), ("200", "45"), ("-inf", "nan")):
        _hostile(base, "GET", f"/tiles/{LAYER}/point/{lon},{lat}")


def test_disabled_and_unknown_tiler_routes_are_4xx(server):
    base, _, _, _ = server
    for path in (f"/tiles/{LAYER}/preview.png", f"/tiles/{LAYER}/bbox/0,0,1,1.png", f"/tiles/{LAYER}/map",
                 "/tiles/" + "a" * 1000 + "/info", "/tiles/..%2F..%2Fetc%2Fpasswd/info", f"/tiles/{LAYER}/99/0/0.png",
                 f"/tiles/{LAYER}/3/99999999999/0.png", f"/tiles/{LAYER}/tiles/WebMercatorQuad/99/0/0.png",
                 f"/tiles/{LAYER}/point/0,0"):  # far outside the layer: 404, not a server error
        _hostile(base, "GET", path)
    _hostile(base, "GET", f"/tiles/{LAYER}/info", {"x": "y" * 10_000})  # an unknown parameter, bounded


def test_titiler_tiles_far_below_the_layer_zooms_are_refused(server):
    """A TiTiler read cannot be stopped half-way, and each zoom level below the layer's coarsest
    overview doubles it (zoom 0 of the test layer: 24 s): far below, a 400 points to the XYZ path,
    which serves every zoom; a few levels below still render."""
    base, layers, (lon, lat), _ = server
    tms = morecantile.tms.get("WebMercatorQuad")
    with httpx.Client(base_url=base, timeout=30) as client:
        minzoom = client.get(f"/tiles/{LAYER}/WebMercatorQuad/tilejson.json").json()["minzoom"]
        low = tms.tile(lon, lat, minzoom - 4)
        t0 = time.perf_counter()
        ok = client.get(f"/tiles/{LAYER}/tiles/WebMercatorQuad/{low.z}/{low.x}/{low.y}.png")
        assert ok.status_code == 200 and time.perf_counter() - t0 < 3, (ok.status_code, ok.text[:200])
    for z in (0, minzoom - 5):
        t = tms.tile(lon, lat, z)
        resp = _hostile(base, "GET", f"/tiles/{LAYER}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png")
        assert resp.status_code == 400 and "too low" in resp.text and f"/tiles/{LAYER}/{{z}}" in resp.text
    with httpx.Client(base_url=base, timeout=30) as client:  # the lean path answers the same zoom at once
        t = tms.tile(lon, lat, minzoom - 5)
        t0 = time.perf_counter()
        xyz = client.get(layers[LAYER]["tiles_url"].format(z=t.z, x=t.x, y=t.y))
        assert xyz.status_code == 200 and xyz.content[:4] == b"\x89PNG" and time.perf_counter() - t0 < LIMIT_S


WMS = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": LAYER, "STYLES": "", "CRS": "EPSG:4326",
       "BBOX": "47,8,48,9", "WIDTH": "256", "HEIGHT": "256", "FORMAT": "image/png"}
WMS_CHANGES = [{"BBOX": "nan,8,48,9"}, {"BBOX": "inf,-inf,1e999,1"}, {"BBOX": "1," * 5_000}, {"WIDTH": "100000"},
               {"HEIGHT": "1e9"}, {"LAYERS": "x" * 10_000}, {"CRS": "EPSG:" + "9" * 1000}, {"FORMAT": "x" * 10_000},
               {"SLD": "http://evil.example/sld.xml"}, {"SLD_BODY": "<x/>" * 1000}, {"STYLES": "s" * 10_000},
               {"REQUEST": "GetFeatureInfo", "QUERY_LAYERS": LAYER, "I": "1e9", "J": "nan", "INFO_FORMAT": "x"},
               {"REQUEST": "GetLegendGraphic", "LAYER": "\u202e" * 100}, {"VERSION": "9" * 1000},
               {"REQUEST": "x" * 10_000}]


@pytest.mark.parametrize("change", WMS_CHANGES, ids=[str(i) for i in range(len(WMS_CHANGES))])
def test_wms_string_parameters_are_bounded(server, change):
    base, _, _, _ = server
    _hostile(base, "GET", "/wms", {**WMS, **change})


def test_wmts_parameters_are_bounded(server):
    base, _, _, _ = server
    for params in ({"SERVICE": "WMTS", "REQUEST": "GetTile", "LAYER": LAYER, "TILEMATRIXSET": "GLOBAL_WEBMERCATOR",
                    "TILEMATRIX": "99", "TILEROW": "nan", "TILECOL": "1e999", "FORMAT": "image/png"},
                   {"SERVICE": "WMTS", "REQUEST": "x" * 10_000}):
        _hostile(base, "GET", "/wmts", params)
    _hostile(base, "GET", "/wmts/" + "x/" * 2_000 + "0.png")


API_STRINGS = [
    ("/api/species", {"q": "x" * 10_000}), ("/api/species", {"q": "\x00" * 10}), ("/api/species", {"q": ""}),
    ("/api/species", {"q": "a", "limit": "1e9"}), ("/api/layers/" + "x" * 10_000, None),
    ("/api/habitats/" + urllib.parse.quote("../../etc/passwd", safe=""), None), ("/api/habitats/" + "R" * 10_000, None),
    ("/api/habitats", {"depth": "nan"}), ("/api/runs/" + "x" * 10_000, None),
    ("/api/reports/compare", {"ids": ["x" * 10_000, "y"]}), ("/api/reports/" + "0" * 32 + "/species", {"q": "x" * 10_000}),
    ("/api/reports/" + "0" * 32 + "/species", {"family": "x" * 10_000}), ("/api/reports/" + "g" * 32, None),
    ("/api/reports/" + "0" * 32 + "/export", {"format": "x" * 10_000}),
    ("/stac/runs/" + "x" * 10_000 + "/collection.json", None),
    ("/stac/runs/r/files/E0/" + urllib.parse.quote("../../../etc/passwd", safe=""), None),
]


@pytest.mark.parametrize("path,params", API_STRINGS, ids=[str(i) for i in range(len(API_STRINGS))])
def test_api_string_parameters_are_bounded(server, path, params):
    base, _, _, _ = server
    _hostile(base, "GET", path, params)


REPORT_BODIES = [
    b"[" * 100_000, b"{" * 100_000, b'{"type": "Polygon", "coordinates": [[[1e999, 1], [2, 2], [3, 3], [1e999, 1]]]}',
    b'{"type": "Polygon", "coordinates": [[[NaN, 1], [2, 2], [3, 3], [NaN, 1]]]}',
    b'{"type": "Polygon", "coordinates": [[[' + b"1" * 5_000 + b', 1], [2, 2], [3, 3], [1, 1]]]}',
    b'{"type": "' + b"P" * 100_000 + b'"}', "{\"type\": \"Polygon\u202e\"}".encode(), b"\xff\xfe\x00",
]


@pytest.mark.parametrize("body", REPORT_BODIES, ids=[str(i) for i in range(len(REPORT_BODIES))])
def test_report_bodies_are_bounded(server, body):
    base, _, _, _ = server
    _hostile(base, "POST", "/api/reports", content=body, headers={"content-type": "application/json"})
