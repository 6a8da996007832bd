"""TiTiler (XYZ tiles, TileJSON, point values) over catalog layers: ``/tiles/{layer_id}/...``.

The path dependency turns a catalog layer id into a file under the data dir; no endpoint takes a
URL or path from the client.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Annotated

import morecantile
import rasterio
from fastapi import Depends, FastAPI, Path, Request
from rasterio.errors import RasterioError, RasterioIOError
from rio_tiler.errors import (
    InvalidColorFormat,
    InvalidExpression,
    InvalidFormat,
    MissingBands,
    PointOutsideBounds,
    RioTilerError,
    TileOutsideBounds,
)
from rio_tiler.io import Reader
from starlette import status
from titiler.core.algorithm import Algorithms, default_algorithms
from titiler.core.dependencies import BidxExprParams, create_colormap_dependency
from titiler.core.errors import BadRequestError, TileNotFoundError, add_exception_handlers
from titiler.core.factory import TilerFactory

from backend.core.layers import request_snapshot
from tiles.cog import GDAL_ENV
from tiles.colormaps import COLORMAPS
from tiles.expression import ExpressionError, validate_expression
from tiles.params import check_feature_budget, check_query
from tiles.render import raster_meta

LAYER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"

TILER_STATUS_CODES = {
    BadRequestError: status.HTTP_400_BAD_REQUEST,
    TileOutsideBounds: status.HTTP_404_NOT_FOUND,
    PointOutsideBounds: status.HTTP_404_NOT_FOUND,
    TileNotFoundError: status.HTTP_404_NOT_FOUND,
    MissingBands: status.HTTP_400_BAD_REQUEST,
    InvalidColorFormat: status.HTTP_400_BAD_REQUEST,
    InvalidExpression: status.HTTP_400_BAD_REQUEST,
    InvalidFormat: status.HTTP_400_BAD_REQUEST,
    RasterioIOError: status.HTTP_500_INTERNAL_SERVER_ERROR,
    RasterioError: status.HTTP_500_INTERNAL_SERVER_ERROR,
    RioTilerError: status.HTTP_500_INTERNAL_SERVER_ERROR,
}


def layer_path(
    request: Request,
    layer_id: Annotated[
        str,
        Path(
            pattern=LAYER_ID_PATTERN,
            description="Catalog layer id of the live run, e.g. `indicator.richness` (see GET /api/layers).",
        ),
    ],
) -> str:
    """Map a catalog layer id to its file (COG or VRT mosaic) in the live run."""
    return str(request_snapshot(request).layer(layer_id).path)


@lru_cache(maxsize=4096)
def _band_count(path: str, _mtime_ns: int) -> int:
    with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
        return src.count


def band_params(
    request: Request,
    layer_id: Annotated[str, Path(pattern=LAYER_ID_PATTERN)],
    params: Annotated[BidxExprParams, Depends()],
) -> BidxExprParams:
    """``bidx`` / ``expression`` checked against the layer's bands (400 naming the band, not a 500
    from deep inside the reader). The expression is validated in full (tiles/expression.py) and
    replaced by its canonical text, and every part is made numeric: a comparison such as ``b1>5``
    gives booleans, which rio-tiler cannot render, so each part becomes ``(part)*1`` (0/1)."""
    path = layer_path(request, layer_id)
    count = _band_count(path, os.stat(path).st_mtime_ns)
    bad = [b for b in params.indexes or [] if not 1 <= b <= count]
    if bad:
        raise BadRequestError(f"layer {layer_id!r} has {count} band(s) (b1..b{count}); there is no band {bad[0]}")
    if params.expression is not None:
        try:
            parts = validate_expression(params.expression, count)
        except ExpressionError as exc:
            raise BadRequestError(str(exc)) from None
        params.expression = ";".join(f"({p})*1" for p in parts)
    return params


# TiTiler warps a tile through GDAL at the layer's own resolution: each zoom level below the
# layer's coarsest overview doubles the work (measured on the test layer, 2026-12-04: 0.5 s two
# levels below, 3 s at seven, 24-46 s at zoom 0). Such a read cannot be stopped half-way, so a
# burst of them would hold every render slot; tiles further below are refused with a pointer to
# the lean XYZ path, which serves every zoom from the region overviews.
TITILER_ZOOMS_BELOW_MIN = 4


@lru_cache(maxsize=4096)
def _min_zoom(path: str, _mtime_ns: int, tms_id: str) -> int | None:
    try:
        tms = morecantile.tms.get(tms_id)
    except Exception:  # noqa: BLE001 - an unknown set is TiTiler's own 4xx
        return None
    with rasterio.Env(**GDAL_ENV), Reader(path, tms=tms) as reader:
        return reader.minzoom


def check_titiler_zoom(request: Request) -> None:
    """A TiTiler tile no more than :data:`TITILER_ZOOMS_BELOW_MIN` levels below the layer's minzoom."""
    params = request.path_params
    if "z" not in params or "tileMatrixSetId" not in params:
        return
    layer = params["layer_id"]
    path = layer_path(request, layer)
    lowest = _min_zoom(path, os.stat(path).st_mtime_ns, params["tileMatrixSetId"])
    if lowest is not None and int(params["z"]) < lowest - TITILER_ZOOMS_BELOW_MIN:
        raise BadRequestError(
            f"zoom {params['z']} is too low for TiTiler on layer {layer!r}: its tiles in {params['tileMatrixSetId']} "
            f"start at zoom {lowest - TITILER_ZOOMS_BELOW_MIN} (tilejson minzoom {lowest}); the XYZ tiles of "
            f"/tiles/{layer}/{{z}}/{{x}}/{{y}}.png serve every zoom")


async def guard_params(request: Request) -> None:
    """Every query (and path) parameter within its rule (tiles/params.py), and a POST statistics body
    whose reads fit the image limit; runs before TiTiler parses anything."""
    max_px = request.app.state.settings.max_image_px
    check_query(request, max_px)
    check_titiler_zoom(request)
    q = request.query_params
    if "color_formula" in q and "rescale" not in q:
        meta = raster_meta(layer_path(request, request.path_params["layer_id"]))
        if meta.dtype != "uint8" or "expression" in q:
            raise BadRequestError(f"color_formula works on 8-bit values: layer {request.path_params['layer_id']!r} "
                                  f"{'gives computed' if 'expression' in q else f'holds {meta.dtype}'} values, so "
                                  "give rescale=min,max too")
    if request.method == "POST":
        try:
            doc = json.loads(await request.body())
        except (ValueError, RecursionError):
            return  # TiTiler answers malformed JSON itself (422)
        meta = raster_meta(layer_path(request, request.path_params["layer_id"]))
        transform = meta.levels[0].transform
        check_feature_budget(doc, meta.crs, (abs(transform.a), abs(transform.e)), max_px, q.get("coord_crs"),
                             *(int(q[k]) if q.get(k) else None for k in ("max_size", "width", "height")),
                             int(q.get("cover_scale") or 10))


def gdal_env() -> dict:
    return dict(GDAL_ENV)


# TiTiler's post-processing algorithms that make sense for GeoFlora's layers; the elevation ones
# (hillshade, slope, contours, terrain encodings) read buffered windows of a DEM and are left out.
ALGORITHMS = Algorithms({k: v for k, v in default_algorithms.items()
                         if k not in ("hillshade", "slope", "contours", "terrarium", "terrainrgb")})


class _CheckedAlgorithm:
    """A post-processing algorithm whose failure on this layer's data is the client's 400 (a
    three-band algorithm on a one-band layer, say), not a server error."""

    def __init__(self, algorithm) -> None:
        self.algorithm = algorithm

    def __getattr__(self, name):
        return getattr(self.algorithm, name)

    def __call__(self, image):
        try:
            return self.algorithm(image)
        except Exception as exc:  # noqa: BLE001 - any failure here comes from the chosen algorithm and its input
            raise BadRequestError(f"algorithm {type(self.algorithm).__name__} cannot process this layer's values "
                                  f"({image.count} band(s), {image.data.dtype}): {exc}") from None


def checked_algorithm(algorithm=Depends(ALGORITHMS.dependency)):
    return None if algorithm is None else _CheckedAlgorithm(algorithm)


def mount_titiler(app: FastAPI) -> None:
    tiler = TilerFactory(
        path_dependency=layer_path,
        router_prefix="/tiles/{layer_id}",
        environment_dependency=gdal_env,
        layer_dependency=band_params,
        colormap_dependency=create_colormap_dependency(COLORMAPS),  # rio-tiler's maps plus GeoFlora's categorical ones
        add_viewer=False,
        add_preview=False,  # unbounded full-image renders; WMS GetMap covers that, with limits
        add_part=False,
        process_dependency=checked_algorithm,
    )
    app.include_router(tiler.router, prefix="/tiles/{layer_id}", tags=["Tiles (XYZ)"],
                       dependencies=[Depends(guard_params)])
    add_exception_handlers(app, TILER_STATUS_CODES)
