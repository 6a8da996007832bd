"""The layer through the map services: XYZ tiles (TiTiler) and WMS (MapProxy, read with OWSLib)."""

from __future__ import annotations

from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from owslib.wms import WebMapService
from rasterio.warp import transform_bounds

from tests.pixels import compare_image, decode_png, pixel_centres

LAYER = "indicator.richness"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def layer(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        layers = {lyr["id"]: lyr for lyr in c.get("/api/layers").json()["layers"]}
    return layers[LAYER]


@pytest.fixture(scope="module")
def mosaic(computed):
    settings, _, run_id = computed
    return settings.data_dir / "runs" / run_id / "mosaics" / f"{LAYER}.vrt"


def _compare(img, bbox, crs, mosaic, legend):
    xs, ys = pixel_centres(bbox, img.shape[2], img.shape[1])
    return compare_image(img, xs, ys, crs, mosaic, legend["colormap"], legend["min"], legend["max"])


def test_xyz_tile_pixels_match_the_cog(client, layer, mosaic):
    west, south, east, north = layer["bounds"]
    tile = WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, 13)
    resp = client.get(layer["tiles_url"].format(z=tile.z, x=tile.x, y=tile.y))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    img = decode_png(resp.content)
    assert img.shape == (4, 256, 256)
    b = WEB_MERCATOR.xy_bounds(tile)
    stats = _compare(img, (b.left, b.bottom, b.right, b.top), "EPSG:3857", mosaic, layer["legend"])
    assert stats["n_data"] > 1000
    assert stats["opaque_where_data"] > 0.99, stats
    assert stats["exact"] > 0.95, stats
    assert stats["near"] > 0.995, stats


def test_low_zoom_tile_covers_the_region_and_is_transparent_around_it(client, layer):
    west, south, east, north = layer["bounds"]
    tile = WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, 8)
    img = decode_png(client.get(layer["tiles_url"].format(z=tile.z, x=tile.x, y=tile.y)).content)
    opaque = img[3] > 0
    # 25 km at zoom 8 (~390 m/px at 50 deg N) is roughly 40 to 90 pixels across.
    assert 0.0 < opaque.mean() < 0.2
    rows, cols = np.nonzero(opaque)
    assert 30 < cols.max() - cols.min() < 110 and 30 < rows.max() - rows.min() < 110


def test_lean_tiles_equal_titilers_rendering_of_the_same_layer(client, app):
    """The catalog's XYZ URL (lean renderer) and TiTiler's own endpoint with the catalog's
    rendering parameters draw the same pixels: same colour maps, same rescaling, same nodata."""
    snap = app.state.catalog.require()
    for layer_id in (LAYER, "habitat.l3", "indicator.status.most", next(i for i in snap.layers if i.startswith("species."))):
        info = snap.layers[layer_id]
        west, south, east, north = client.get(f"/api/layers/{layer_id}").json()["bounds"]
        tile = WEB_MERCATOR.tile(west + 0.3 * (east - west), south + 0.6 * (north - south), 14)
        ours = decode_png(client.get(info.tiles_path().format(z=tile.z, x=tile.x, y=tile.y)).content)
        ref = decode_png(client.get(f"/tiles/{layer_id}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png?"
                                    f"{info.render_query()}").content)
        same_alpha = (ours[3] > 0) == (ref[3] > 0)
        opaque = (ours[3] > 0) & (ref[3] > 0)
        same_rgb = np.all(ours[:3] == ref[:3], axis=0)[opaque]
        # only pixel centres within a hair of a cell edge may fall in the neighbour cell
        assert same_alpha.mean() > 0.99 and same_rgb.mean() > 0.99, (layer_id, same_alpha.mean(), same_rgb.mean())


def test_titiler_band_math_comparisons_render_and_bad_bands_are_400(client, layer, mosaic):
    """A comparison (booleans) renders as 0/1; a band the layer lacks is a 400 naming it."""
    from tests.pixels import sample_cells

    west, south, east, north = layer["bounds"]
    tile = WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, 13)
    base = f"/tiles/{LAYER}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    values, nodata = sample_cells(mosaic, *pixel_centres(_bounds(tile), 256, 256), "EPSG:3857")
    values = values[0].reshape(256, 256)
    valid = values != nodata
    cut = float(np.median(values[valid]))
    resp = client.get(base, params={"expression": f"b1>{cut}", "rescale": "0,1", "colormap_name": "greys_r"})
    assert resp.status_code == 200, resp.text
    img = decode_png(resp.content)
    opaque = img[3] > 0
    assert (opaque == valid).mean() > 0.99
    bright = img[0] > 127
    both = opaque & valid
    assert (bright[both] == (values[both] > cut)).mean() > 0.99
    assert 0.2 < bright[both].mean() < 0.8  # both classes present
    for params, band in (({"expression": "b1+b9"}, 9), ({"bidx": "7"}, 7)):
        resp = client.get(base, params=params)
        assert resp.status_code == 400, resp.text
        assert f"no band {band}" in resp.json()["detail"]
    resp = client.get(base, params={"expression": "foo"})
    assert resp.status_code == 400 and "must use a band" in resp.json()["detail"]


def _bounds(tile):
    b = WEB_MERCATOR.xy_bounds(tile)
    return (b.left, b.bottom, b.right, b.top)


def test_low_zoom_tiles_read_the_region_overview_not_the_metatiles(computed, layer, tmp_path):
    """The mosaic and its region overview copied away from the meta-tile COGs: a zoom-8 tile still
    renders (it reads only the overview), a zoom-13 tile cannot (it needs the meta-tiles)."""
    import shutil

    from rasterio.errors import RasterioIOError

    from backend.core.layers import LayerInfo
    from tiles.render import LayerRenderer
    from tiles.xyz import mercator_bounds

    settings, _, run_id = computed
    mosaic = settings.data_dir / "runs" / run_id / "mosaics" / f"{LAYER}.vrt"
    shutil.copy(mosaic, tmp_path / mosaic.name)
    shutil.copy(Path(str(mosaic) + ".ovr"), tmp_path / (mosaic.name + ".ovr"))
    info = LayerInfo(id=LAYER, kind="indicator", title="", description="", units=None, path=tmp_path / mosaic.name,
                     band=1, colormap="viridis", rescale=(0.0, 1.0), legend={})
    west, south, east, north = layer["bounds"]
    centre = ((west + east) / 2, (south + north) / 2)
    tile = WEB_MERCATOR.tile(*centre, 8)
    picture = LayerRenderer(info).render(mercator_bounds(tile.z, tile.x, tile.y), "EPSG:3857", 256, 256)
    assert 500 < (picture.rgba()[..., 3] > 0).sum() < 0.2 * 256 * 256
    tile = WEB_MERCATOR.tile(*centre, 13)
    with pytest.raises(RasterioIOError):
        LayerRenderer(info).render(mercator_bounds(tile.z, tile.x, tile.y), "EPSG:3857", 256, 256)


def test_tile_outside_the_region_is_404_and_unknown_layer_is_404(client, layer):
    assert client.get(layer["tiles_url"].format(z=13, x=0, y=0)).status_code == 404
    resp = client.get("/tiles/no.such.layer/tiles/WebMercatorQuad/13/1/1.png")
    assert resp.status_code == 404
    assert "unknown layer" in resp.json()["detail"]


def test_tiles_take_no_url_or_path_from_the_client(client, layer):
    url = layer["tiles_url"].format(z=13, x=1, y=1) + "?url=/etc/passwd"
    assert client.get(url).status_code == 404  # still the catalog file, and this tile is outside it
    assert client.get("/tiles/..%2F..%2Fetc%2Fpasswd/tiles/WebMercatorQuad/1/1/1.png").status_code in (404, 422)


@pytest.fixture(scope="module")
def wms(live_server):
    return WebMapService(f"{live_server}/wms", version="1.3.0", timeout=60)


def test_wms_capabilities_list_the_layer_in_three_crs(wms, live_server):
    assert LAYER in wms.contents
    assert {"EPSG:3857", "EPSG:4326", "EPSG:3035"} <= set(wms[LAYER].crsOptions)
    assert "Species richness" in wms[LAYER].title
    assert LAYER in WebMapService(f"{live_server}/wms", version="1.1.1", timeout=60).contents


@pytest.mark.parametrize("crs", ["EPSG:3035", "EPSG:3857", "EPSG:4326"])
def test_wms_getmap_pixels_match_the_cog(wms, layer, mosaic, crs):
    with rasterio.open(mosaic) as src:
        left, bottom = src.bounds.left + 9000, src.bounds.bottom + 9000
    box3035 = (left, bottom, left + 6000, bottom + 6000)  # 6 x 6 km inside the region
    bbox = box3035 if crs == "EPSG:3035" else transform_bounds("EPSG:3035", crs, *box3035)
    # OWSLib swaps EPSG:4326 to the latitude, longitude order of WMS 1.3.0 itself.
    resp = wms.getmap(layers=[LAYER], styles=[""], srs=crs, bbox=bbox, size=(240, 240),
                      format="image/png", transparent=True)
    data = resp.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:300]
    img = decode_png(data)
    if img.shape[0] == 3:  # fully opaque images may come without alpha
        img = np.concatenate([img, np.full((1, *img.shape[1:]), 255, np.uint8)])
    stats = _compare(img, bbox, crs, mosaic, layer["legend"])
    assert stats["n_data"] > 0.9 * 240 * 240
    # Measured on the generated region: 0.98 (EPSG:3035) and 0.83 (EPSG:3857, resampled twice:
    # 50 m cells -> z12 tiles -> the request grid); the same image read half a cell off scores
    # about 0.6 and one cell off about 0.23. So 0.75 catches any misregistration.
    assert stats["exact"] > 0.75, stats
    assert stats["near"] > 0.98, stats


def test_wms_rejects_oversized_images_with_an_ogc_exception(live_server):
    r = httpx.get(
        f"{live_server}/wms",
        params={"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": LAYER, "STYLES": "",
                "CRS": "EPSG:3857", "BBOX": "0,0,1000,1000", "WIDTH": 20000, "HEIGHT": 20000,
                "FORMAT": "image/png"},
        timeout=30,
    )
    assert "ServiceException" in r.text
    assert "20000" in r.text or "size" in r.text.lower()
