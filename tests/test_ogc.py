"""WMS / WMTS as a GIS client sees them: capabilities valid against the OGC schemas, every layer
listed with title, abstract and legend; GetFeatureInfo numbers equal to the COGs; legends; OGC
exceptions with 4xx; layers read back through OWSLib and GDAL's WMS and WMTS drivers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import mapproxy
import numpy as np
import pytest
import rasterio
from lxml import etree
from owslib.wms import WebMapService
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from tests.pixels import compare_image, decode_png, pixel_centres
from tiles import legend

SCHEMAS = Path(mapproxy.__file__).parent / "test" / "schemas"  # OGC schemas shipped in MapProxy's wheel
RICHNESS = "indicator.richness"
ALL_CRS = ("EPSG:3857", "EPSG:4326", "EPSG:3035")


@pytest.fixture(scope="module")
def snapshot(app):
    return app.state.catalog.require()


@pytest.fixture(scope="module")
def inner_box(snapshot):
    """A 6 x 6 km box well inside the region (EPSG:3035)."""
    with rasterio.open(snapshot.layers[RICHNESS].path) as src:
        left, bottom = src.bounds.left + 9000, src.bounds.bottom + 9000
    return (left, bottom, left + 6000, bottom + 6000)


def _get(url: str, **params) -> httpx.Response:
    return httpx.get(url, params=params, timeout=60)


def _schema(name: str) -> etree.XMLSchema:
    assert (SCHEMAS / name).is_file(), f"OGC schema {name} missing from the MapProxy wheel"
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def _assert_valid(schema: etree.XMLSchema, content: bytes) -> etree._Element:
    doc = etree.fromstring(content)
    assert schema.validate(doc), schema.error_log.filter_from_errors()
    return doc


# --- capabilities ---------------------------------------------------------------------------

def test_wms_130_capabilities_validate_and_list_every_layer(live_server, snapshot):
    r = _get(f"{live_server}/wms", SERVICE="WMS", REQUEST="GetCapabilities", VERSION="1.3.0")
    assert r.status_code == 200
    # sld_capabilities.xsd is the WMS 1.3.0 schema plus the SLD GetLegendGraphic operation
    doc = _assert_valid(_schema("sld/1.1.0/sld_capabilities.xsd"), r.content)
    ns = {"w": "http://www.opengis.net/wms", "x": "http://www.w3.org/1999/xlink"}
    named = {el.findtext("w:Name", namespaces=ns): el for el in doc.iterfind(".//w:Layer", ns)
             if el.find("w:Name", ns) is not None}
    assert set(snapshot.layers) <= set(named)
    kinds = {lyr.kind for lyr in snapshot.layers.values()}
    assert {"species", "species-presence", "habitat", "indicator", "indicator-uncertainty", "trait",
            "embedding"} <= kinds
    for layer_id, info in snapshot.layers.items():
        el = named[layer_id]
        assert el.get("queryable") == "1", layer_id
        assert el.findtext("w:Title", namespaces=ns) == info.title
        assert info.id in el.findtext("w:Abstract", namespaces=ns)
        crs = {b.get("CRS") for b in el.iterfind("w:BoundingBox", ns)}
        assert set(ALL_CRS) <= crs, layer_id
        legend = el.find("w:Style/w:LegendURL/w:OnlineResource", ns)
        assert legend is not None and "GetLegendGraphic" in legend.get("{http://www.w3.org/1999/xlink}href")
    ops = doc.find(".//w:GetFeatureInfo", ns)
    assert {f.text for f in ops.iterfind("w:Format", ns)} == {"text/plain", "text/html", "application/json"}


def test_wms_111_capabilities_validate_against_the_dtd(live_server, snapshot):
    r = _get(f"{live_server}/wms", SERVICE="WMS", REQUEST="GetCapabilities", VERSION="1.1.1")
    dtd = etree.DTD(str(SCHEMAS / "wms/1.1.1/WMS_MS_Capabilities.dtd"))
    doc = etree.fromstring(r.content, etree.XMLParser(load_dtd=False, no_network=True))
    assert dtd.validate(doc), dtd.error_log.filter_from_errors()
    names = {el.text for el in doc.iterfind(".//Layer/Name")}
    assert set(snapshot.layers) <= names
    assert set(ALL_CRS) <= {el.text for el in doc.iterfind(".//Layer/SRS")}


def test_wmts_capabilities_validate_and_offer_three_tile_matrix_sets(live_server, snapshot):
    r = _get(f"{live_server}/wmts/1.0.0/WMTSCapabilities.xml")
    assert r.status_code == 200
    doc = _assert_valid(_schema("wmts/1.0/wmtsGetCapabilities_response.xsd"), r.content)
    ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    sets = {el.findtext("ows:Identifier", namespaces=ns): el.findtext("ows:SupportedCRS", namespaces=ns)
            for el in doc.iterfind("w:Contents/w:TileMatrixSet", ns)}
    assert {"GLOBAL_WEBMERCATOR", "LAEA_EUROPE", "WGS84"} <= set(sets)
    assert "3035" in sets["LAEA_EUROPE"] and "4326" in sets["WGS84"]
    layers = {el.findtext("ows:Identifier", namespaces=ns) for el in doc.iterfind("w:Contents/w:Layer", ns)}
    assert set(snapshot.layers) <= layers


# --- GetFeatureInfo ---------------------------------------------------------------------------

def _cell_values(path, x, y, crs):
    with rasterio.open(path) as src:
        (px,), (py,) = warp_transform(crs, src.crs, [x], [y])
        row, col = src.index(px, py)
        return src.read(window=((row, row + 1), (col, col + 1)))[:, 0, 0], src.nodata, src.scales


def _gfi_point(wms, layer, crs, bbox, fmt, i=37, j=91, size=(200, 200)):
    """GetFeatureInfo through OWSLib; returns the body and the map coordinates of pixel (i, j)'s centre."""
    resp = wms.getfeatureinfo(layers=[layer], query_layers=[layer], srs=crs, bbox=bbox, size=size,
                              format="image/png", info_format=fmt, xy=(i, j), styles=[""])
    x = bbox[0] + (i + 0.5) * (bbox[2] - bbox[0]) / size[0]
    y = bbox[3] - (j + 0.5) * (bbox[3] - bbox[1]) / size[1]
    return resp.read().decode(), x, y


@pytest.fixture(scope="module")
def wms130(live_server):
    return WebMapService(f"{live_server}/wms", version="1.3.0", timeout=60)


@pytest.mark.parametrize("crs", ALL_CRS)
def test_featureinfo_gives_indicator_mean_and_two_sigma_of_the_cog(wms130, snapshot, inner_box, crs):
    bbox = inner_box if crs == "EPSG:3035" else transform_bounds("EPSG:3035", crs, *inner_box)
    body, x, y = _gfi_point(wms130, RICHNESS, crs, bbox, "application/json")
    (feature,) = json.loads(body)["features"]
    props = feature["properties"]
    values, _, _ = _cell_values(snapshot.layers[RICHNESS].path, x, y, crs)
    assert props["layer"] == RICHNESS and props["units"] == "species"
    assert props["value"] == pytest.approx(float(values[0]), rel=1e-3)
    assert props["two_sigma"] == pytest.approx(float(values[1]), rel=1e-3)
    lon, lat = feature["geometry"]["coordinates"]
    w, s, e, n = transform_bounds("EPSG:3035", "EPSG:4326", *inner_box)
    assert w <= lon <= e and s <= lat <= n
    text, _, _ = _gfi_point(wms130, RICHNESS, crs, bbox, "text/plain")
    mean, sigma = map(float, re.search(r": ([\d.e+-]+) ± ([\d.e+-]+) species", text).groups())
    assert (mean, sigma) == (pytest.approx(props["value"]), pytest.approx(props["two_sigma"]))
    html, _, _ = _gfi_point(wms130, RICHNESS, crs, bbox, "text/html")
    cell = etree.HTML(html).xpath("//table//td")[-1].text
    assert f"{props['value']:g} ± {props['two_sigma']:g}" in cell


def test_featureinfo_names_the_habitat_and_gives_species_probability(wms130, snapshot, inner_box):
    for layer in ("habitat.l3", "habitat.l1"):
        body, x, y = _gfi_point(wms130, layer, "EPSG:3035", inner_box, "application/json", i=120, j=40)
        props = json.loads(body)["features"][0]["properties"]
        values, nodata, _ = _cell_values(snapshot.layers[layer].path, x, y, "EPSG:3035")
        item = next(it for it in snapshot.layers[layer].legend["items"] if it["value"] == int(values[0]))
        assert props["value"] == int(values[0]) and props["code"] == item["code"]
        assert props["name"] and props["name"] in item["label"]
    prob = json.loads(_gfi_point(wms130, "habitat.l3", "EPSG:3035", inner_box, "application/json", i=120, j=40)[0])
    assert 0.0 <= prob["features"][0]["properties"]["probability"] <= 1.0
    species = next(i for i in sorted(snapshot.layers) if i.startswith("species.") and i.endswith(".presence"))
    body, x, y = _gfi_point(wms130, species, "EPSG:3035", inner_box, "application/json")
    props = json.loads(body)["features"][0]["properties"]
    code = int(_cell_values(snapshot.layers[species].path, x, y, "EPSG:3035")[0][0])
    assert props["value"] == pytest.approx(code / 250, abs=1e-4)
    assert props["present"] == (code / 250 >= props["threshold"] - 1e-9)


def test_featureinfo_outside_the_data_says_no_data(wms130, inner_box):
    far = (inner_box[0] + 200_000, inner_box[1], inner_box[2] + 200_000, inner_box[3])
    body, _, _ = _gfi_point(wms130, RICHNESS, "EPSG:3035", far, "application/json")
    assert json.loads(body)["features"][0]["properties"]["value"] is None


# --- legends ----------------------------------------------------------------------------------

def test_legend_graphics_match_the_catalog_legends(live_server, snapshot):
    info = snapshot.layers[RICHNESS]
    r = _get(f"{live_server}/wms", SERVICE="WMS", VERSION="1.3.0", REQUEST="GetLegendGraphic", LAYER=RICHNESS,
             FORMAT="image/png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = decode_png(r.content)
    row = legend.PAD + legend.RAMP_H // 2
    ends = ["#{:02x}{:02x}{:02x}".format(*img[:3, row, x]) for x in (legend.PAD, legend.PAD + legend.RAMP_W - 1)]
    assert ends == [info.legend["colors"][0], info.legend["colors"][-1]]  # the ramp runs the legend's colours
    hab = snapshot.layers["habitat.l3"]
    r = _get(f"{live_server}/wms", SERVICE="WMS", VERSION="1.1.1", REQUEST="GetLegendGraphic", LAYER="habitat.l3",
             FORMAT="image/png")
    img = decode_png(r.content)
    rows = img.shape[1] // len(hab.legend["items"])
    assert rows >= 12  # one line per habitat class
    colors = {"#{:02x}{:02x}{:02x}".format(*img[:3, 4 + k * rows + 7, 10]) for k in range(len(hab.legend["items"]))}
    assert colors == {it["color"] for it in hab.legend["items"]}
    r = _get(f"{live_server}/wms", SERVICE="WMS", VERSION="1.3.0", REQUEST="GetLegendGraphic", LAYER=RICHNESS,
             FORMAT="application/json")
    assert r.json()["colors"] == info.legend["colors"]


# --- errors -----------------------------------------------------------------------------------

GETMAP = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": RICHNESS, "STYLES": "",
          "CRS": "EPSG:3857", "BBOX": "0,0,1000,1000", "WIDTH": "256", "HEIGHT": "256", "FORMAT": "image/png"}


@pytest.mark.parametrize("change, status, code, words", [
    ({"WIDTH": "20000"}, 400, "InvalidParameterValue", "WIDTH=20000"),
    ({"HEIGHT": "0"}, 400, "InvalidParameterValue", "HEIGHT=0"),
    ({"WIDTH": "abc"}, 400, "InvalidParameterValue", "WIDTH"),
    ({"CRS": "EPSG:2154"}, 400, "InvalidCRS", "EPSG:2154"),
    ({"BBOX": "1,2,3"}, 400, "InvalidParameterValue", "BBOX"),
    ({"BBOX": "10,0,0,10"}, 400, "InvalidParameterValue", "BBOX"),
    ({"LAYERS": "no.such.layer"}, 404, "LayerNotDefined", "no.such.layer"),
    ({"FORMAT": "image/tiff"}, 400, "InvalidFormat", "image/tiff"),
    ({"STYLES": "fancy"}, 400, "StyleNotDefined", "fancy"),
    ({"REQUEST": "GetPrint"}, 400, "OperationNotSupported", "GetPrint"),
    ({"SLD": "http://example.org/style.sld"}, 400, "OperationNotSupported", "SLD"),
    ({"REQUEST": "GetFeatureInfo", "QUERY_LAYERS": RICHNESS, "I": "300", "J": "5"}, 400, "InvalidPoint", "I=300"),
    ({"REQUEST": "GetFeatureInfo", "QUERY_LAYERS": RICHNESS, "I": "3", "J": "5", "INFO_FORMAT": "text/xml"}, 400,
     "InvalidFormat", "text/xml"),
    ({"REQUEST": "GetLegendGraphic", "LAYER": "nope"}, 404, "LayerNotDefined", "nope"),
])
def test_bad_wms_requests_get_an_ogc_exception_with_a_4xx_status(live_server, change, status, code, words):
    r = _get(f"{live_server}/wms", **{**GETMAP, **change})
    assert r.status_code == status, r.text
    doc = _assert_valid(_schema("wms/1.3.0/exceptions_1_3_0.xsd"), r.content)
    (exc,) = doc.iterfind("{http://www.opengis.net/ogc}ServiceException")
    assert exc.get("code") == code and words in exc.text


def test_wms_111_exceptions_follow_the_111_dtd(live_server):
    r = _get(f"{live_server}/wms", **{**GETMAP, "VERSION": "1.1.1", "SRS": "EPSG:9999"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/vnd.ogc.se_xml")
    dtd = etree.DTD(str(SCHEMAS / "wms/1.1.1/exception_1_1_1.dtd"))
    doc = etree.fromstring(r.content, etree.XMLParser(load_dtd=False, no_network=True))
    assert dtd.validate(doc) and "EPSG:9999" in doc.findtext("ServiceException")


# --- read back through OWSLib and GDAL --------------------------------------------------------

def _rgba(img: np.ndarray) -> np.ndarray:
    if img.shape[0] == 3:
        img = np.concatenate([img, np.full((1, *img.shape[1:]), 255, np.uint8)])
    return img


@pytest.mark.parametrize("crs", ALL_CRS)
def test_habitat_getmap_draws_the_colour_table_of_each_cell(wms130, snapshot, inner_box, crs):
    info = snapshot.layers["habitat.l3"]
    bbox = inner_box if crs == "EPSG:3035" else transform_bounds("EPSG:3035", crs, *inner_box)
    width, height = 160, 120  # not square: rows and columns must not be mixed up
    img = _rgba(decode_png(wms130.getmap(layers=["habitat.l3"], styles=[""], srs=crs, bbox=bbox,
                                         size=(width, height), format="image/png", transparent=True).read()))
    assert img.shape == (4, height, width)
    xs, ys = pixel_centres(bbox, width, height)
    with rasterio.open(info.path) as src:
        px, py = warp_transform(crs, src.crs, list(xs), list(ys))
        rows, cols = rasterio.transform.rowcol(src.transform, px, py)
        classes = src.read(1)[np.asarray(rows), np.asarray(cols)]
        table = src.colormap(1)
    expected = np.array([table[int(c)][:3] for c in classes]).T.reshape(3, height, width)
    assert (np.all(img[:3] == expected, axis=0)).mean() > 0.97  # pixel centres on cell edges may differ


def _gdal_read(source: str, out: Path, *args: str) -> np.ndarray:
    gdal = shutil.which("gdal_translate")
    assert gdal, "gdal_translate (Debian gdal-bin) is required: bash scripts/system-deps.sh --test"
    subprocess.run([gdal, "-q", "-of", "GTiff", *args, source, str(out)], check=True, timeout=120,
                   env={**os.environ, "GDAL_HTTP_TIMEOUT": "60",
                        "GDAL_DEFAULT_WMS_CACHE_PATH": str(out.parent / "gdalwmscache")})
    with rasterio.open(out) as src:
        return src.read()


def test_gdal_wms_driver_reads_pixels_of_the_cog(live_server, snapshot, inner_box, tmp_path):
    info = snapshot.layers[RICHNESS]
    bbox = ",".join(f"{v:.0f}" for v in inner_box)
    url = (f"WMS:{live_server}/wms?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS={RICHNESS}&SRS=EPSG:3035"
           f"&BBOX={bbox}&FORMAT=image/png&TRANSPARENT=TRUE")
    img = _rgba(_gdal_read(url, tmp_path / "wms.tif", "-outsize", "120", "120"))
    xs, ys = pixel_centres(inner_box, 120, 120)
    stats = compare_image(img, xs, ys, "EPSG:3035", info.path, info.legend["colormap"], info.legend["min"],
                          info.legend["max"])
    assert stats["n_data"] > 0.9 * 120 * 120
    assert stats["exact"] > 0.97 and stats["near"] > 0.995, stats


def test_gdal_wmts_driver_reads_the_laea_tiles_cell_for_cell(live_server, snapshot, inner_box, tmp_path):
    info = snapshot.layers[RICHNESS]
    left, bottom, right, top = inner_box
    src = f"WMTS:{live_server}/wmts/1.0.0/WMTSCapabilities.xml,layer={RICHNESS},tilematrixset=LAEA_EUROPE"
    img = _rgba(_gdal_read(src, tmp_path / "wmts.tif", "-projwin", *map(str, (left, top, right, bottom))))
    assert img.shape[1:] == (120, 120)  # 6 km at 50 m: the LAEA grid is the cell lattice
    xs, ys = pixel_centres(inner_box, 120, 120)
    stats = compare_image(img, xs, ys, "EPSG:3035", info.path, info.legend["colormap"], info.legend["min"],
                          info.legend["max"])
    assert stats["exact"] > 0.999, stats
