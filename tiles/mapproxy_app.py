"""MapProxy (WMS 1.1.1/1.3.0 and WMTS) over the live catalog, rendering in-process.

The configuration is generated from the live run's layers. Each layer has a ``geoflora`` source
(tiles/mapproxy_source.py: GetMap straight from the COG mosaic in any offered CRS,
GetFeatureInfo, GetLegendGraphic) and a file cache in three tile grids (Web Mercator, ETRS89-LAEA
on the 50 m cell lattice, WGS84) for WMTS. When another run goes live the app is rebuilt with a
new cache directory: that is how cached tiles are invalidated (the old run's directory is
deleted by the pipeline when the new run goes live).

In front of MapProxy, :class:`OWSGuard` checks every WMS request (sizes, CRS, layers, points,
formats) and answers errors with an OGC exception document and a 4xx status; MapProxy's own
exception documents get a 4xx status too.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

import rasterio
import yaml
from mapproxy.config.loader import load_configuration
from mapproxy.wsgiapp import MapProxyApp
from rasterio.warp import transform_bounds

from backend.core.atomic import atomic_open
from backend.core.layers import LayerInfo, LiveSnapshot, SnapshotSource
from backend.core.settings import Settings
from tiles.cog import GDAL_ENV
from tiles.featureinfo import INFO_FORMATS
from tiles.mapproxy_source import register

log = logging.getLogger(__name__)

WMS_SRS = ["EPSG:3857", "EPSG:4326", "EPSG:3035"]
IMAGE_FORMATS = ["image/png", "image/jpeg"]
WMS_VERSIONS = ("1.1.1", "1.3.0")
# Tile grids of the WMTS caches. LAEA Europe: origin on the 25 km meta-tile lattice, resolutions
# 50 m x 2^k so that at 50 m every tile pixel is one cell.
LAEA_GRID = "LAEA_EUROPE"
LAEA_BBOX = [1_000_000.0, 500_000.0, 8_000_000.0, 7_500_000.0]
LAEA_RES = [50.0 * 2**k for k in range(10, -1, -1)]
GRIDS = {
    LAEA_GRID: {"srs": "EPSG:3035", "bbox": LAEA_BBOX, "bbox_srs": "EPSG:3035", "origin": "ul", "res": LAEA_RES},
    "WGS84": {"base": "GLOBAL_GEODETIC", "origin": "ul", "num_levels": 19},
}
CACHE_GRIDS = ["GLOBAL_WEBMERCATOR", LAEA_GRID, "WGS84"]
KIND_GROUPS = {
    "indicator": "Biodiversity indicators", "indicator-uncertainty": "Biodiversity indicators: 2-sigma uncertainty",
    "habitat": "EUNIS habitats", "habitat-probability": "EUNIS habitats",
    "habitat-suitability": "EUNIS habitats: suitability per habitat",
    "species": "Species: probability of presence", "species-presence": "Species: predicted presence",
    "trait": "Plant traits", "trait-uncertainty": "Plant traits", "embedding": "Embeddings", "truth": "Generated truth",
}


def layer_bounds_wgs84(path: Path) -> list[float]:
    with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
        return list(transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))


def _abstract(lyr: LayerInfo) -> str:
    units = f" Units: {lyr.units}." if lyr.units else ""
    return f"{lyr.description or lyr.title}{units} GeoFlora layer id: {lyr.id}."


def mapproxy_config(snapshot: LiveSnapshot, settings: Settings) -> dict:
    """MapProxy configuration (as a dict) serving every layer of ``snapshot``."""
    cache_root = settings.layout.mapproxy_cache_dir / snapshot.run_id
    sources, caches, groups = {}, {}, {}
    for lyr in sorted(snapshot.layers.values(), key=lambda item: item.id):
        sources[f"{lyr.id}_src"] = {"type": "geoflora", "layer": lyr.id, "bbox": layer_bounds_wgs84(lyr.path)}
        caches[f"{lyr.id}_cache"] = {
            "grids": CACHE_GRIDS,
            "sources": [f"{lyr.id}_src"],
            "format": "image/png",
            "request_format": "image/png",
            "meta_size": [1, 1],
            "meta_buffer": 0,
            "link_single_color_images": True,
            "cache": {"type": "file", "directory_layout": "tc"},
        }
        groups.setdefault(KIND_GROUPS.get(lyr.kind, "Other layers"), []).append({
            "name": lyr.id,
            "title": lyr.title,
            "sources": [f"{lyr.id}_src"],  # WMS: rendered for the exact request grid
            "tile_sources": [f"{lyr.id}_cache"],  # WMTS: the file cache
            "md": {
                "abstract": _abstract(lyr),
                "keyword_list": [{"keywords": ["GeoFlora", lyr.kind] + (["EUNIS"] if "habitat" in lyr.kind else [])}],
                "attribution": {"title": f"GeoFlora run {snapshot.run_id}"},
            },
        })
    layers = [{"title": title, "layers": items} for title, items in sorted(groups.items())]
    return {
        "services": {
            "wms": {
                "srs": WMS_SRS,
                "bbox_srs": WMS_SRS,
                "versions": list(WMS_VERSIONS),
                "image_formats": IMAGE_FORMATS,
                "featureinfo_types": ["text", "html", "json"],
                "strict": True,
                "max_output_pixels": [settings.max_image_px, settings.max_image_px],
                "md": {
                    "title": "GeoFlora",
                    "abstract": "Plant species, EUNIS habitats, biodiversity indicators and plant traits of Europe "
                    f"at 50 m. Run {snapshot.run_id} ({snapshot.region}), live since {snapshot.created_at}.",
                    "keyword_list": [{"keywords": ["biodiversity", "plants", "species distribution", "EUNIS",
                                                   "habitats", "plant traits"]}],
                    "fees": "none",
                    "access_constraints": "none",
                },
            },
            "wmts": {"restful": True, "kvp": True,
                     "md": {"title": "GeoFlora", "abstract": f"GeoFlora layers of run {snapshot.run_id} as tiles "
                            "in Web Mercator, ETRS89-LAEA (EPSG:3035) and WGS84."}},
        },
        "layers": [{"title": "GeoFlora", "layers": layers}],
        "caches": caches,
        "sources": sources,
        "grids": GRIDS,
        "globals": {
            "cache": {
                "base_dir": str(cache_root),
                "lock_dir": str(settings.layout.mapproxy_cache_dir / "locks"),
                "tile_lock_dir": str(settings.layout.mapproxy_cache_dir / "tile_locks"),
                "max_tile_limit": settings.max_tiles_per_request,
            },
            # Nearest keeps class values (habitats) intact when MapProxy resamples cached tiles.
            "image": {"resampling_method": "nearest", "paletted": False},
        },
    }


def write_config(path: Path, config: dict) -> Path:
    with atomic_open(path) as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    return path


def drop_stale_caches(settings: Settings, live_run: str) -> None:
    """Delete the tile caches of every run but the live one (cached tiles of an old run must never
    be served, and they take disk space)."""
    root = settings.layout.mapproxy_cache_dir
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and child.name not in (live_run, "locks", "tile_locks"):
                shutil.rmtree(child, ignore_errors=True)


def load_mapproxy(path: Path, snapshot: LiveSnapshot):
    """MapProxy's configuration object for the YAML at ``path``, its ``geoflora`` sources bound to
    the layers of ``snapshot``."""

    register()
    conf = load_configuration(str(path))
    conf.geoflora_layers = snapshot.layers
    return conf


def make_mapproxy_app(path: Path, snapshot: LiveSnapshot):
    conf = load_mapproxy(path, snapshot)
    app = MapProxyApp(conf.configured_services(), conf.base_config)
    # Serve WMS at /wms as well as MapProxy's own /service.
    app.handlers["wms"] = app.handlers["service"]
    return app


class OWSError(Exception):
    """A bad OGC request: exception ``code`` (OGC vocabulary) and HTTP status."""

    def __init__(self, message: str, code: str = "InvalidParameterValue", status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


HTTP_REASONS = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


def exception_document(error: OWSError, version: str) -> tuple[bytes, str]:
    """An OGC WMS ServiceExceptionReport for ``version`` and its content type."""
    code = f" code={quoteattr(error.code)}" if error.code else ""
    if version == "1.1.1":
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<!DOCTYPE ServiceExceptionReport SYSTEM '
                '"http://schemas.opengis.net/wms/1.1.1/exception_1_1_1.dtd">\n'
                f'<ServiceExceptionReport version="1.1.1"><ServiceException{code}>{escape(error.message)}'
                "</ServiceException></ServiceExceptionReport>\n")
        return body.encode(), "application/vnd.ogc.se_xml"
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ServiceExceptionReport version="1.3.0" xmlns="http://www.opengis.net/ogc" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.opengis.net/ogc '
            'http://schemas.opengis.net/wms/1.3.0/exceptions_1_3_0.xsd">'
            f"<ServiceException{code}>{escape(error.message)}</ServiceException></ServiceExceptionReport>\n")
    return body.encode(), "text/xml; charset=utf-8"


def ows_exception_document(error: OWSError) -> tuple[bytes, str]:
    """An OWS 1.1 ExceptionReport (what WMTS clients read) and its content type."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ExceptionReport xmlns="http://www.opengis.net/ows/1.1" version="1.0.0" xml:lang="en">'
            f'<Exception exceptionCode={quoteattr(error.code or "NoApplicableCode")}>'
            f"<ExceptionText>{escape(error.message)}</ExceptionText></Exception></ExceptionReport>\n")
    return body.encode(), "text/xml; charset=utf-8"


# Parameters that would make a server fetch something a client names: never honoured.
URL_PARAMETERS = ("SLD", "SLD_BODY", "REMOTE_OWS_URL", "REMOTE_OWS_TYPE", "WFS", "URL", "PATH")
WMS_REQUESTS = {"getcapabilities": "GetCapabilities", "getmap": "GetMap", "getfeatureinfo": "GetFeatureInfo",
                "getlegendgraphic": "GetLegendGraphic"}


def _int(params: dict, name: str, lo: int, hi: int, code: str = "InvalidParameterValue") -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        raise OWSError(f"{name} is missing", "MissingParameterValue")
    try:
        value = int(raw)
    except ValueError:
        raise OWSError(f"{name}={raw!r} is not an integer", code) from None
    if not lo <= value <= hi:
        raise OWSError(f"{name}={value} is out of range: it must be between {lo} and {hi}", code)
    return value


def _listed(params: dict, key: str, allowed, message: str, code: str, status: int = 400) -> list[str]:
    """The comma-separated names of parameter ``key``, each one of ``allowed``."""
    names = [n for n in params.get(key, "").split(",") if n]
    if not names:
        raise OWSError(f"{key} is missing", "MissingParameterValue")
    for name in names:
        if name not in allowed:
            raise OWSError(message.format(name), code, status)
    return names


def check_wms(params: dict, layers: dict[str, LayerInfo], max_px: int) -> tuple[str, str]:
    """Validate a WMS request (upper-cased parameter names). Returns (request, version); raises
    OWSError naming what is wrong."""
    for name in URL_PARAMETERS:
        if name in params:
            raise OWSError(f"parameter {name} is not supported: GeoFlora never reads a URL or file a client names",
                           "OperationNotSupported")
    version = params.get("VERSION") or params.get("WMTVER") or "1.3.0"
    raw_request = params.get("REQUEST")
    if not raw_request:
        raise OWSError("REQUEST is missing (GetCapabilities, GetMap, GetFeatureInfo or GetLegendGraphic)",
                       "MissingParameterValue")
    request = WMS_REQUESTS.get(raw_request.lower())
    if request is None:
        raise OWSError(f"REQUEST={raw_request} is not supported: use GetCapabilities, GetMap, GetFeatureInfo "
                       "or GetLegendGraphic", "OperationNotSupported")
    if params.get("SERVICE", "WMS").upper() != "WMS":
        raise OWSError(f"SERVICE={params['SERVICE']} is not WMS", "InvalidParameterValue")
    if request == "GetCapabilities":
        return request, version
    if version not in WMS_VERSIONS:
        raise OWSError(f"VERSION={version} is not supported: use 1.1.1 or 1.3.0", "InvalidParameterValue")
    if request == "GetLegendGraphic":
        name = params.get("LAYER")
        if not name:
            raise OWSError("LAYER is missing", "MissingParameterValue")
        if name not in layers:
            raise OWSError(f"unknown layer {name!r}: see GetCapabilities", "LayerNotDefined", 404)
        fmt = params.get("FORMAT", "image/png")
        if fmt not in ("image/png", "application/json"):
            raise OWSError(f"FORMAT={fmt} is not supported for legends: use image/png or application/json",
                           "InvalidFormat")
        return request, version
    names = _listed(params, "LAYERS", layers, "unknown layer {!r}: see GetCapabilities", "LayerNotDefined", 404)
    styles = [s for s in params.get("STYLES", "").split(",") if s and s.lower() != "default"]
    if styles:
        raise OWSError(f"unknown style {styles[0]!r}: layers have only their default style", "StyleNotDefined")
    crs_key = "CRS" if version == "1.3.0" else "SRS"
    crs = params.get(crs_key)
    if not crs:
        raise OWSError(f"{crs_key} is missing", "MissingParameterValue")
    if crs.upper() not in WMS_SRS:
        raise OWSError(f"{crs_key}={crs} is not offered: use one of {', '.join(WMS_SRS)}",
                       "InvalidCRS" if version == "1.3.0" else "InvalidSRS")
    try:
        bbox = [float(v) for v in params.get("BBOX", "").split(",")]
    except ValueError:
        bbox = []
    if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox):
        raise OWSError(f"BBOX={params.get('BBOX', '')!r} must be four numbers: minx,miny,maxx,maxy",
                       "MissingParameterValue" if "BBOX" not in params else "InvalidParameterValue")
    if bbox[0] >= bbox[2] or bbox[1] >= bbox[3]:
        raise OWSError(f"BBOX={params['BBOX']} is empty: minimum must be below maximum on both axes")
    width = _int(params, "WIDTH", 1, max_px)
    height = _int(params, "HEIGHT", 1, max_px)
    if request == "GetMap":
        fmt = params.get("FORMAT", "")
        if fmt.split(";")[0].strip() not in IMAGE_FORMATS:
            raise OWSError(f"FORMAT={fmt!r} is not offered: use image/png or image/jpeg", "InvalidFormat")
        return request, version
    _listed(params, "QUERY_LAYERS", names, "query layer {!r} is not in LAYERS", "LayerNotQueryable")
    i_key, j_key = ("I", "J") if version == "1.3.0" else ("X", "Y")
    _int(params, i_key, 0, width - 1, "InvalidPoint")
    _int(params, j_key, 0, height - 1, "InvalidPoint")
    info_format = params.get("INFO_FORMAT", "text/plain")
    if info_format.split(";")[0].strip() not in INFO_FORMATS:
        raise OWSError(f"INFO_FORMAT={info_format!r} is not offered: use {', '.join(INFO_FORMATS)}", "InvalidFormat")
    if "FEATURE_COUNT" in params:
        _int(params, "FEATURE_COUNT", 1, 1000)
    return request, version


WMTS_REQUESTS = {"getcapabilities": "GetCapabilities", "gettile": "GetTile"}
_WMTS_REST = re.compile(r"/wmts(?:/1\.0\.0/WMTSCapabilities\.xml"
                        r"|/(?P<layer>[A-Za-z0-9_.\-]{1,128})/(?P<grid>[A-Za-z0-9_\-]{1,64})/\d{1,2}/\d{1,10}/\d{1,10}"
                        r"\.(?:png|jpeg))")


def check_wmts(params: dict, path: str, layers: dict[str, LayerInfo]) -> None:
    """Validate a WMTS request, KVP or RESTful (MapProxy answers some malformed ones with a 500);
    raises OWSError naming what is wrong."""
    if path.rstrip("/") != "/wmts" or not params:
        match = _WMTS_REST.fullmatch(path)
        if match is None:
            raise OWSError(f"no WMTS resource {path[:80]!r}: tiles are /wmts/{{layer}}/{{TileMatrixSet}}/{{z}}/{{x}}/"
                           "{y}.png, capabilities /wmts/1.0.0/WMTSCapabilities.xml", "", 404)
        if match.group("layer") and match.group("layer") not in layers:
            raise OWSError(f"unknown layer {match.group('layer')!r}: see the capabilities", "", 404)
        if match.group("grid") and match.group("grid") not in CACHE_GRIDS:
            raise OWSError(f"unknown TileMatrixSet {match.group('grid')!r}: use one of {', '.join(CACHE_GRIDS)}",
                           "", 404)
        return
    for name, value in params.items():
        if len(value) > 256:
            raise OWSError(f"{name} is {len(value)} characters long; at most 256 are accepted")
    if params.get("SERVICE", "WMTS").upper() != "WMTS":
        raise OWSError(f"SERVICE={params['SERVICE']} is not WMTS")
    raw = params.get("REQUEST", "")
    request = WMTS_REQUESTS.get(raw.lower())
    if request is None:
        raise OWSError(f"REQUEST={raw!r} is not supported: use GetCapabilities or GetTile",
                       "OperationNotSupported" if raw else "MissingParameterValue")
    if request == "GetCapabilities":
        return
    layer = params.get("LAYER", "")
    if layer not in layers:
        raise OWSError(f"unknown layer {layer!r}: see the capabilities" if layer else "LAYER is missing",
                       "InvalidParameterValue" if layer else "MissingParameterValue")
    grid = params.get("TILEMATRIXSET", "")
    if grid not in CACHE_GRIDS:
        raise OWSError(f"TILEMATRIXSET={grid!r} is not offered: use one of {', '.join(CACHE_GRIDS)}")
    for name in ("TILEMATRIX", "TILEROW", "TILECOL"):
        _int(params, name, 0, 2**31 - 1)
    fmt = params.get("FORMAT", "image/png")
    if fmt not in IMAGE_FORMATS:
        raise OWSError(f"FORMAT={fmt!r} is not offered: use image/png or image/jpeg", "InvalidParameterValue")


EXCEPTION_TYPES = ("application/vnd.ogc.se_xml", "text/xml", "application/xml")


class MapProxyMount:
    """WSGI app serving ``/wms`` and ``/wmts`` from the live run; rebuilt when the live run changes."""

    def __init__(self, catalog: SnapshotSource, settings: Settings) -> None:
        self._catalog = catalog
        self._settings = settings
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._app = None

    def config_path(self, run_id: str) -> Path:
        return self._settings.layout.mapproxy_config(run_id)

    def _app_for(self, snap: LiveSnapshot):
        key = (snap.run_id, tuple(sorted(snap.layers)))
        with self._lock:
            if key != self._key:
                path = write_config(self.config_path(snap.run_id), mapproxy_config(snap, self._settings))
                self._app, self._key = make_mapproxy_app(path, snap), key
                drop_stale_caches(self._settings, snap.run_id)
                log.info("MapProxy configured for run %s (%d layers)", snap.run_id, len(snap.layers))
            return self._app

    def warm(self) -> None:
        """Build the MapProxy app of the live run ahead of the first request (errors are logged)."""
        try:
            snap = self._catalog.snapshot()
            if snap is not None:
                self._app_for(snap)
        except Exception:  # noqa: BLE001 - the first request builds it again and reports its own error
            log.exception("could not configure MapProxy ahead of the first request")

    def __call__(self, environ, start_response):
        params = {k.upper(): v for k, v in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)}
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        is_wms = not path.startswith("/wmts")
        version = params.get("VERSION") or params.get("WMTVER") or "1.3.0"

        def fail(error: OWSError):
            body, ctype = (exception_document(error, version if version in WMS_VERSIONS else "1.3.0") if is_wms
                           else ows_exception_document(error))
            start_response(f"{error.status} {HTTP_REASONS.get(error.status, 'Error')}",
                           [("Content-Type", ctype), ("Content-Length", str(len(body)))])
            return [body]

        snap = self._catalog.snapshot()
        if snap is None:
            return fail(OWSError("No run is live yet: compute a region first.", "", 503))
        app = self._app_for(snap)
        # Mounted under /wms or /wmts: hand MapProxy the full path so its URLs point back here.
        environ["PATH_INFO"] = path
        environ["SCRIPT_NAME"] = ""
        if not is_wms:  # WMTS: MapProxy's own OWS exception reports carry 4xx statuses already
            try:
                check_wmts(params, path, snap.layers)
            except OWSError as error:
                return fail(error)
            return app(environ, start_response)
        try:
            request, _ = check_wms(params, snap.layers, self._settings.max_image_px)
        except OWSError as error:
            return fail(error)
        if request == "GetCapabilities":
            return app(environ, start_response)
        if request == "GetLegendGraphic" and "SLD_VERSION" not in params:
            # SLD_VERSION is mandatory in the SLD profile, but clients often leave it out
            environ["QUERY_STRING"] = environ.get("QUERY_STRING", "") + "&SLD_VERSION=1.1.0"

        def ogc_status(status: str, headers, exc_info=None):
            # MapProxy answers some request errors with 200 or 500 and an exception document.
            ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
            if ctype.split(";")[0].strip() in EXCEPTION_TYPES and not status.startswith("4"):
                status = "400 Bad Request" if status.startswith("200") else status
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return app(environ, ogc_status)
