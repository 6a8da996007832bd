"""MapProxy source ``type: geoflora``: renders a catalog layer in-process (no HTTP round trip).

Registered through MapProxy's plugin API (``register_source_configuration``). The source serves
GetMap (any CRS MapProxy accepts, straight from the COG mosaic, nearest neighbour), feeds the
WMTS file caches, answers GetFeatureInfo and draws GetLegendGraphic. The layers come from the
MapProxy configuration object: ``ProxyConfiguration.geoflora_layers`` (set by
``tiles.mapproxy_app`` before the services are built), never from a request.
"""

from __future__ import annotations

import io
import json
import logging

from mapproxy.config.configuration.base import ConfigurationError
from mapproxy.config.configuration.source import (
    SourceConfiguration,
    register_source_configuration,
    source_configuration_types,
)
from mapproxy.extent import MapExtent
from mapproxy.featureinfo import create_featureinfo_doc
from mapproxy.image import BlankImageResult, ImageResult
from mapproxy.image.opts import ImageOptions
from mapproxy.layer.map_layer import MapLayer
from mapproxy.source import InfoSource, LegendSource
from mapproxy.srs import SRS
from mapproxy.util.ext.dictspec.spec import required
from PIL import Image

from backend.core.layers import LayerInfo
from tiles.featureinfo import INFO_FORMATS, lonlat, point_record, render_records
from tiles.legend import legend_image
from tiles.render import OutsideLayer, renderer_for

log = logging.getLogger(__name__)


class GeoFloraMapSource(MapLayer):
    """GetMap and cache tiles of one layer, rendered in this process."""

    supports_meta_tiles = True

    def __init__(self, info: LayerInfo, bbox_wgs84: list[float]) -> None:
        super().__init__(ImageOptions(transparent=True, format="image/png"))
        self.info = info
        self.extent = MapExtent(tuple(bbox_wgs84), SRS(4326))

    def get_map(self, query):
        width, height = query.size
        try:
            picture = renderer_for(self.info).render(query.bbox, query.srs.srs_code, width, height)
        except OutsideLayer:
            return BlankImageResult(size=query.size, image_opts=ImageOptions(transparent=True), cacheable=True)
        # A PNG goes out as encoded here when the client wants transparency; otherwise MapProxy
        # lays it on the requested background colour.
        if "png" in str(query.format or "image/png"):
            return ImageResult(io.BytesIO(picture.png()), size=query.size,
                               image_opts=ImageOptions(transparent=True, format="image/png"))
        # other formats (JPEG): MapProxy encodes the image itself
        return ImageResult(Image.fromarray(picture.rgba(), "RGBA"), size=query.size,
                           image_opts=ImageOptions(transparent=True))


class GeoFloraInfoSource(InfoSource):
    """GetFeatureInfo of one layer: its value at the queried pixel."""

    def __init__(self, info: LayerInfo, layers: dict[str, LayerInfo]) -> None:
        self.info = info
        self.layers = layers

    def get_info(self, query):
        fmt = (query.info_format or "text/plain").split(";")[0].strip()
        if fmt not in INFO_FORMATS:
            fmt = "text/plain"
        minx, miny, maxx, maxy = query.bbox
        width, height = query.size
        i, j = query.pos
        # the centre of the queried pixel
        x = minx + (i + 0.5) * (maxx - minx) / width
        y = maxy - (j + 0.5) * (maxy - miny) / height
        crs = query.srs.srs_code
        record = point_record(self.info, x, y, crs, self.layers)
        lon, lat = lonlat(x, y, crs)
        return create_featureinfo_doc(render_records([record], fmt, {"x": x, "y": y, "crs": crs, "lon": lon, "lat": lat}),
                                      fmt)


class GeoFloraLegendSource(LegendSource):
    """GetLegendGraphic of one layer, drawn from its catalog legend."""

    def __init__(self, info: LayerInfo) -> None:
        self.info = info
        self._png: tuple[bytes, tuple[int, int]] | None = None

    def _legend(self) -> tuple[bytes, tuple[int, int]]:
        if self._png is None:
            img = legend_image(self.info)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            self._png = buf.getvalue(), img.size
        return self._png

    @property
    def size(self) -> tuple[int, int]:
        return self._legend()[1]

    def get_legend(self, query):
        if query.format and "json" in str(query.format):
            return json.dumps({"layer": self.info.id, "title": self.info.title, **self.info.legend})
        data, size = self._legend()
        # an encoded PNG passes through MapProxy as it is (a PIL image would be colour-quantised)
        return ImageResult(io.BytesIO(data), size=size, image_opts=ImageOptions(transparent=True, format="image/png"))


class GeoFloraSourceConfiguration(SourceConfiguration):
    source_type = ("geoflora",)
    required_keys = {"type", "layer"}
    supports_meta_tiles = True

    def _info(self) -> LayerInfo:
        layers = getattr(self.context, "geoflora_layers", None)
        if layers is None or self.conf["layer"] not in layers:
            raise ConfigurationError(f"geoflora source: unknown layer {self.conf['layer']!r}")
        return layers[self.conf["layer"]]

    def source(self, params=None):
        return GeoFloraMapSource(self._info(), self.conf["bbox"])

    def fi_source(self):
        return GeoFloraInfoSource(self._info(), self.context.geoflora_layers)

    def lg_source(self):
        return GeoFloraLegendSource(self._info())


SPEC = {required("layer"): "", required("bbox"): [0.0], "transparent": False, "coverage": {}}


def register() -> None:
    """Make ``type: geoflora`` known to MapProxy (idempotent)."""
    if source_configuration_types.get("geoflora") is not GeoFloraSourceConfiguration:
        register_source_configuration("geoflora", GeoFloraSourceConfiguration, "geoflora", SPEC)
