"""Per-request deadlines: a deliberately slow render (tile, WMS GetMap, TiTiler route, report) is
answered with 503 and Retry-After at its time limit while /api/health keeps answering; the render
stops at its next deadline check; abandoned renders keep their slot, so they cannot pile up; a
report past its limit is still stored and the retry is answered from the store."""

from __future__ import annotations

import threading
import time

import httpx
import morecantile
import pytest
import uvicorn

from tests.conftest import free_port
from tiles import deadline

LIMIT = 0.5  # seconds: the test server's render and report time limits
RETRY = 3
LAYER = "indicator.richness"


@pytest.fixture(scope="module")
def slow_server(computed):
    """The computed run served in-process (uvicorn thread) with short limits and one render slot."""
    from backend.app import create_app

    settings, _, _ = computed
    settings = settings.model_copy(update={"render_timeout_s": LIMIT, "report_timeout_s": LIMIT, "render_slots": 1,
                                           "busy_retry_after_s": RETRY, "tile_cache_mb": 0})
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.config.port}"
    layers = {lyr["id"]: lyr for lyr in httpx.get(f"{base}/api/layers").json()["layers"]}
    yield base, layers[LAYER]
    server.should_exit = True
    thread.join(timeout=10)


def _tile(layer, zoom=12) -> str:
    west, south, east, north = layer["bounds"]
    t = morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, zoom)
    return layer["tiles_url"].format(z=t.z, x=t.x, y=t.y)


class Cooperative:
    """A render that never finishes on its own: it only checks the deadline, as the renderer does."""

    def __init__(self) -> None:
        self.stopped_at: float | None = None

    def __call__(self, *args, **kwargs):
        try:
            while True:
                deadline.check()
                time.sleep(0.01)
        finally:
            self.stopped_at = time.monotonic()


def _in_background(fn):
    out = {}

    def run():
        t0 = time.monotonic()
        out["response"] = fn()
        out["seconds"] = time.monotonic() - t0
        out["done_at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _health_while(thread, base) -> list[float]:
    """/api/health latencies while ``thread`` runs."""
    times = []
    time.sleep(0.05)
    while thread.is_alive():
        t0 = time.perf_counter()
        assert httpx.get(f"{base}/api/health", timeout=5).status_code == 200
        times.append(time.perf_counter() - t0)
        time.sleep(0.05)
    return times


def _assert_503(resp: httpx.Response, seconds: float, words: str) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"] == str(RETRY)
    assert LIMIT * 0.9 < seconds < LIMIT + 0.8, seconds
    assert words in resp.text, resp.text


def test_slow_tile_gets_503_with_retry_after_health_stays_up_and_the_render_stops(slow_server, monkeypatch):
    from tiles.render import LayerRenderer

    base, layer = slow_server
    slow = Cooperative()
    monkeypatch.setattr(LayerRenderer, "render", slow)
    thread, out = _in_background(lambda: httpx.get(base + _tile(layer), timeout=10))
    health = _health_while(thread, base)
    thread.join()
    _assert_503(out["response"], out["seconds"], f"longer than its {LIMIT:g} s limit")
    assert health and max(health) < 0.3, health  # answered all along
    time.sleep(0.1)
    assert slow.stopped_at is not None and slow.stopped_at - out["done_at"] < 0.2  # the work stopped too
    monkeypatch.undo()
    ok = httpx.get(base + _tile(layer), timeout=10)
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"


def test_abandoned_renders_keep_their_slot_so_new_ones_are_refused_not_stacked(slow_server, monkeypatch):
    from tiles.render import LayerRenderer

    base, layer = slow_server
    release = threading.Event()
    monkeypatch.setattr(LayerRenderer, "render", lambda *a, **k: release.wait(10))  # ignores the deadline
    first = httpx.get(base + _tile(layer, 11), timeout=10)
    assert first.status_code == 503
    t0 = time.monotonic()
    second = httpx.get(base + _tile(layer, 10), timeout=10)
    _assert_503(second, time.monotonic() - t0, "busy")
    assert httpx.get(f"{base}/api/health", timeout=5).status_code == 200
    release.set()
    monkeypatch.undo()
    time.sleep(0.1)  # the abandoned render ends and gives its slot back
    for attempt in range(3):
        after = httpx.get(base + _tile(layer, 10), timeout=10)
        if after.status_code == 200:
            break
        # never "busy" again: the slot came back; a real render may still pass the short test limit
        # on a loaded machine, and then its next try renders it
        assert after.status_code == 503 and "busy" not in after.text, (attempt, after.status_code, after.text)
    assert after.status_code == 200, after.text


def test_slow_wms_getmap_gets_an_ogc_503(slow_server, monkeypatch):
    from tiles.render import LayerRenderer

    base, layer = slow_server
    monkeypatch.setattr(LayerRenderer, "render", Cooperative())
    west, south, east, north = layer["bounds"]
    t0 = time.monotonic()
    resp = httpx.get(f"{base}/wms", params={
        "SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": LAYER, "STYLES": "", "CRS": "EPSG:4326",
        "BBOX": f"{south},{west},{north},{east}", "WIDTH": 300, "HEIGHT": 300, "FORMAT": "image/png"}, timeout=10)
    _assert_503(resp, time.monotonic() - t0, "ServiceExceptionReport")


def test_slow_titiler_route_gets_503(slow_server, monkeypatch):
    import tiles.titiler_app

    base, layer = slow_server
    monkeypatch.setattr(tiles.titiler_app, "_band_count", Cooperative())
    west, south, east, north = layer["bounds"]
    t0 = time.monotonic()
    resp = httpx.get(f"{base}/tiles/{LAYER}/point/{(west + east) / 2},{(south + north) / 2}", timeout=10)
    _assert_503(resp, time.monotonic() - t0, "limit")


def test_report_past_its_limit_is_stored_and_the_retry_is_answered_from_the_store(slow_server, monkeypatch):
    from backend.reports.service import ReportService

    base, layer = slow_server
    original, calls = ReportService.compute, []

    def slow_compute(self, *args, **kwargs):
        calls.append(1)
        time.sleep(LIMIT * 2)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ReportService, "compute", slow_compute)
    west, south, east, north = layer["bounds"]
    x, y = west + (east - west) * 0.31, south + (north - south) * 0.37
    area = {"type": "Polygon", "coordinates": [[[x, y], [x + 0.01, y], [x + 0.01, y + 0.01], [x, y + 0.01], [x, y]]]}
    t0 = time.monotonic()
    first = httpx.post(f"{base}/api/reports", json=area, timeout=10)
    _assert_503(first, time.monotonic() - t0, "limit")
    time.sleep(LIMIT * 2)
    retry = httpx.post(f"{base}/api/reports", json=area, timeout=10)
    assert retry.status_code == 200, retry.text
    assert retry.json()["area"]["cells"] > 0
    assert len(calls) == 1  # computed once, answered from the store
