"""MapProxy (WMS 1.1.1/1.3.0 and WMTS) in front of TiTiler, configured from the live catalog.

The configuration is generated from the live run's layers; when another run goes live the app
is rebuilt with a new cache directory, which is how the tile cache is invalidated.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
import yaml
from mapproxy.wsgiapp import make_wsgi_app
from rasterio.warp import transform_bounds

from backend.catalog import LiveCatalog, LiveSnapshot
from backend.settings import Settings
from tiles.cog import GDAL_ENV

log = logging.getLogger(__name__)

WMS_SRS = ["EPSG:3857", "EPSG:4326", "EPSG:3035"]


def layer_bounds_wgs84(path: Path) -> list[float]:
    with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
        return list(transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))


def mapproxy_config(snapshot: LiveSnapshot, settings: Settings) -> dict:
    """MapProxy configuration (as a dict) serving every layer of ``snapshot``."""
    base = settings.tiles_base_url
    cache_root = settings.cache_dir / "mapproxy" / snapshot.run_id
    sources, caches, layers = {}, {}, []
    for lyr in sorted(snapshot.layers.values(), key=lambda item: item.id):
        # MapProxy formats the URL with %-substitution: literal % must be doubled.
        url = (base + lyr.tiles_path()).replace("%", "%%")
        url = url.replace("{z}", "%(z)s").replace("{x}", "%(x)s").replace("{y}", "%(y)s")
        bbox = layer_bounds_wgs84(lyr.path)
        sources[f"{lyr.id}_src"] = {
            "type": "tile",
            "grid": "GLOBAL_WEBMERCATOR",
            "url": url,
            "transparent": True,
            "coverage": {"bbox": bbox, "srs": "EPSG:4326"},
            # TiTiler answers 404 outside the data: that is an empty tile, not an error.
            "on_error": {404: {"response": "transparent", "cache": True}},
        }
        caches[f"{lyr.id}_cache"] = {
            "grids": ["GLOBAL_WEBMERCATOR"],
            "sources": [f"{lyr.id}_src"],
            "format": "image/png",
            "request_format": "image/png",
            "meta_size": [1, 1],
            "meta_buffer": 0,
            "cache": {"type": "file", "directory": str(cache_root / lyr.id), "directory_layout": "tc"},
        }
        layers.append(
            {
                "name": lyr.id,
                "title": lyr.title,
                "sources": [f"{lyr.id}_cache"],
                "md": {"abstract": lyr.description or lyr.title},
            }
        )
    return {
        "services": {
            "wms": {
                "srs": WMS_SRS,
                "bbox_srs": WMS_SRS,
                "versions": ["1.1.1", "1.3.0"],
                "image_formats": ["image/png", "image/jpeg"],
                "strict": True,
                "max_output_pixels": [settings.max_image_px, settings.max_image_px],
                "md": {
                    "title": "GeoFlora",
                    "abstract": "Plant species, EUNIS habitats, biodiversity indicators and plant traits "
                    f"at 50 m. Run {snapshot.run_id} ({snapshot.region}).",
                    "fees": "none",
                    "access_constraints": "none",
                },
            },
            "wmts": {"restful": True, "kvp": True, "md": {"title": "GeoFlora"}},
        },
        "layers": [{"title": "GeoFlora", "layers": layers}],
        "caches": caches,
        "sources": sources,
        "grids": {},
        "globals": {
            "cache": {
                "base_dir": str(cache_root),
                "lock_dir": str(settings.cache_dir / "mapproxy" / "locks"),
                "tile_lock_dir": str(settings.cache_dir / "mapproxy" / "tile_locks"),
            },
            # Nearest keeps class values (habitats) intact when reprojecting to 4326 / 3035.
            "image": {"resampling_method": "nearest", "paletted": False},
            "http": {"client_timeout": 30},
        },
    }


def write_config(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    os.replace(tmp, path)
    return path


def _service_exception(message: str, status: str, start_response) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ServiceExceptionReport version="1.3.0" xmlns="http://www.opengis.net/ogc">'
        f"<ServiceException>{escape(message)}</ServiceException></ServiceExceptionReport>"
    ).encode()
    start_response(status, [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


class MapProxyMount:
    """WSGI app serving ``/wms`` and ``/wmts`` from the live run; rebuilt when the live run changes."""

    def __init__(self, catalog: LiveCatalog, settings: Settings) -> None:
        self._catalog = catalog
        self._settings = settings
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._app = None

    def _app_for(self, snap: LiveSnapshot):
        key = (snap.run_id, tuple(sorted(snap.layers)))
        with self._lock:
            if key != self._key:
                path = self._settings.data_dir / "mapproxy" / f"{snap.run_id}.yaml"
                write_config(path, mapproxy_config(snap, self._settings))
                app = make_wsgi_app(str(path))
                # Serve WMS at /wms as well as MapProxy's own /service.
                app.handlers["wms"] = app.handlers["service"]
                self._app, self._key = app, key
                log.info("MapProxy configured for run %s (%d layers)", snap.run_id, len(snap.layers))
            return self._app

    def __call__(self, environ, start_response):
        snap = self._catalog.snapshot()
        if snap is None:
            return _service_exception("No run is live yet: compute a region first.", "503 Service Unavailable",
                                      start_response)
        app = self._app_for(snap)
        # Mounted under /wms or /wmts: hand MapProxy the full path so its URLs point back here.
        environ["PATH_INFO"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        environ["SCRIPT_NAME"] = ""
        return app(environ, start_response)
