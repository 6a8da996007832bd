"""The STAC catalog at /stac, read the way a STAC client (pystac, QGIS) reads it."""

from __future__ import annotations

import httpx
import numpy as np
import pystac
import rasterio


def test_stac_catalog_lists_every_cog_of_the_live_run(live_server, computed, app):
    settings, _, run_id = computed
    catalog = pystac.Catalog.from_file(f"{live_server}/stac/catalog.json")
    (collection,) = list(catalog.get_children())
    assert collection.id == run_id and isinstance(collection, pystac.Collection)
    w, s, e, n = collection.extent.spatial.bboxes[0]
    assert 5 < w < e < 12 and 45 < s < n < 52  # the tiny region lies in south-west Germany
    items = list(collection.get_items())
    assert [i.id for i in items] == ["E4200N2800"]
    item = items[0]
    assert item.properties["proj:code"] == "EPSG:3035" and item.properties["proj:shape"] == [500, 500]
    on_disk = {p.relative_to(settings.layout.metatile_dir(run_id, item.id)).as_posix()
               for p in settings.layout.metatile_dir(run_id, item.id).rglob("*.tif")}
    assert {a.href.rsplit(f"/{item.id}/", 1)[1] for a in item.assets.values()} == on_disk
    layers = {lid for a in item.assets.values() for lid in a.extra_fields["geoflora:layers"]}
    assert layers == set(app.state.catalog.require().layers)  # every catalog layer is found through STAC
    asset = item.assets["indicator.richness"]
    assert asset.media_type == pystac.MediaType.COG and asset.roles == ["data"]
    # GDAL reads the COG over HTTP with range requests, as QGIS does
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(f"/vsicurl/{asset.href}") as remote:
        with rasterio.open(settings.layout.metatile_dir(run_id, item.id) / "indicator.richness.tif") as local:
            assert remote.crs == local.crs and remote.transform == local.transform
            window = ((100, 164), (200, 264))
            assert np.array_equal(remote.read(window=window), local.read(window=window))


def test_stac_serves_only_files_of_the_manifest(live_server, computed):
    _, _, run_id = computed
    base = f"{live_server}/stac/runs/{run_id}"
    assert httpx.get(f"{base}/files/E4200N2800/manifest.json").status_code == 404
    assert httpx.get(f"{base}/files/E4200N2800/..%2F..%2F..%2Fgeoflora.sqlite").status_code == 404
    assert httpx.get(f"{base}/files/../../etc/passwd").status_code == 404
    assert httpx.get(f"{live_server}/stac/runs/nope/collection.json").status_code == 404
    r = httpx.get(f"{base}/files/E4200N2800/indicator.richness.tif", headers={"Range": "bytes=0-15"})
    assert r.status_code == 206 and len(r.content) == 16 and r.content[:2] in (b"II", b"MM")
