"""The MapProxy file cache: seeding low zooms, WMTS serving the seeded tiles, and a new live run
never seeing the old run's tiles."""

from __future__ import annotations

import morecantile
import numpy as np
import pytest
from sqlalchemy import select, update

from backend.db.models import Layer, Run
from tests.pixels import decode_png
from tiles.render import renderer_for
from tiles.xyz import mercator_bounds

LAYER = "indicator.richness"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def _centre_tile(client, z):
    west, south, east, north = client.get(f"/api/layers/{LAYER}").json()["bounds"]
    return WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, z)


def _cached_file(settings, run_id, tile):
    # MapProxy's "tc" layout: zz/xxx/xxx/xxx/yyy/yyy/yyy.png (GLOBAL_WEBMERCATOR: y from the top)
    x, y, z = tile.x, tile.y, tile.z
    return (settings.layout.mapproxy_cache_dir / run_id / f"{LAYER}_cache_EPSG3857" / f"{z:02d}" /
            f"{x // 1000000:03d}" / f"{x // 1000 % 1000:03d}" / f"{x % 1000:03d}" / f"{y // 1000000:03d}" /
            f"{y // 1000 % 1000:03d}" / f"{y % 1000:03d}.png")


@pytest.mark.slow
def test_seeded_low_zoom_tiles_are_what_wmts_serves(client, computed, app):
    from tiles.seed import seed_low_zooms

    settings, _, run_id = computed
    snap = app.state.catalog.require()
    levels = seed_low_zooms(settings, snap, [LAYER], max_zoom=9, concurrency=1)
    assert levels["GLOBAL_WEBMERCATOR"] == 9 and 0 < levels["LAEA_EUROPE"] <= levels["WGS84"] + 1
    tile = _centre_tile(client, 9)
    path = _cached_file(settings, run_id, tile)
    assert path.is_file(), sorted(p.name for p in path.parents[2].iterdir()) if path.parents[2].exists() else path
    seeded = path.read_bytes()
    resp = client.get(f"/wmts/{LAYER}/GLOBAL_WEBMERCATOR/{tile.z}/{tile.x}/{tile.y}.png")
    assert resp.status_code == 200 and resp.content == seeded
    expected = renderer_for(snap.layers[LAYER]).render(mercator_bounds(tile.z, tile.x, tile.y), "EPSG:3857", 256, 256)
    assert np.array_equal(decode_png(seeded).transpose(1, 2, 0), expected.rgba())
    assert (expected.rgba()[..., 3] > 0).any()


def test_a_new_live_run_never_serves_the_old_runs_cached_tiles(client, computed, app):
    settings, sessions, run_id = computed
    tile = _centre_tile(client, 12)
    url = f"/wmts/{LAYER}/GLOBAL_WEBMERCATOR/{tile.z}/{tile.x}/{tile.y}.png"
    old = client.get(url).content
    assert _cached_file(settings, run_id, tile).is_file()
    new_run = f"{run_id}-next"
    with sessions.begin() as session:
        run = session.get(Run, run_id)
        truth = session.scalars(select(Layer).where(Layer.run_id == run_id, Layer.id == "truth.richness")).one()
        session.add(Run(id=new_run, region=run.region, status="complete", is_live=False, config=dict(run.config)))
        # the "new run" draws richness from another file, so its tiles differ from the cached ones
        session.add(Layer(run_id=new_run, id=LAYER, kind="indicator", title="Species richness", description="",
                          units="species", path=truth.path, band=1, colormap="viridis", rescale_min=0.0,
                          rescale_max=truth.rescale_max, legend=truth.legend))
        session.execute(update(Run).values(is_live=Run.id == new_run))
    try:
        app.state.catalog.invalidate()
        new = client.get(url)
        assert new.status_code == 200 and new.content != old
        assert not (settings.layout.mapproxy_cache_dir / run_id).exists()  # the old run's cache is gone
        assert _cached_file(settings, new_run, tile).read_bytes() == new.content
        assert client.get("/api/health").json()["live_run"] == new_run
    finally:
        with sessions.begin() as session:
            session.execute(update(Run).values(is_live=Run.id == run_id))
            session.delete(session.get(Run, new_run))
        app.state.catalog.invalidate()
    assert client.get(url).content == old  # back on the first run, rendered afresh
