"""TiTiler (XYZ tiles, TileJSON, point values) over catalog layers: ``/tiles/{layer_id}/...``.

The path dependency turns a catalog layer id into a file under the data dir; no endpoint takes a
URL or path from the client.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Annotated

import rasterio
from fastapi import Depends, FastAPI, Path, Request
from rasterio.errors import RasterioError, RasterioIOError
from rio_tiler.errors import (
    InvalidColorFormat,
    InvalidExpression,
    InvalidFormat,
    MissingBands,
    RioTilerError,
    TileOutsideBounds,
)
from starlette import status
from titiler.core.dependencies import BidxExprParams, create_colormap_dependency
from titiler.core.errors import BadRequestError, TileNotFoundError, add_exception_handlers
from titiler.core.factory import TilerFactory

from tiles.cog import GDAL_ENV
from tiles.colormaps import COLORMAPS

LAYER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"

TILER_STATUS_CODES = {
    BadRequestError: status.HTTP_400_BAD_REQUEST,
    TileOutsideBounds: status.HTTP_404_NOT_FOUND,
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
    return str(request.app.state.catalog.layer(layer_id).path)


@lru_cache(maxsize=4096)
def _band_count(path: str, _mtime_ns: int) -> int:
    with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
        return src.count


_BAND_REF = re.compile(r"\bb(\d+)\b")


def band_params(
    request: Request,
    layer_id: Annotated[str, Path(pattern=LAYER_ID_PATTERN)],
    params: Annotated[BidxExprParams, Depends()],
) -> BidxExprParams:
    """``bidx`` / ``expression`` checked against the layer's bands (400 naming the band, not a 500
    from deep inside the reader), and every expression made numeric: a comparison such as
    ``b1>5`` gives booleans, which rio-tiler cannot render, so each part becomes ``(part)*1`` (0/1)."""
    path = layer_path(request, layer_id)
    count = _band_count(path, os.stat(path).st_mtime_ns)
    wanted = list(params.indexes or []) + [int(b) for b in _BAND_REF.findall(params.expression or "")]
    bad = [b for b in wanted if not 1 <= b <= count]
    if bad:
        raise BadRequestError(f"layer {layer_id!r} has {count} band(s) (b1..b{count}); there is no band {bad[0]}")
    if params.expression:
        parts = [p.strip() for p in params.expression.split(";") if p.strip()]
        if not parts or not all(_BAND_REF.search(p) for p in parts):
            raise BadRequestError(f"expression {params.expression!r}: every part must use a band, b1..b{count}")
        params.expression = ";".join(f"({p})*1" for p in parts)
    return params


def gdal_env() -> dict:
    return dict(GDAL_ENV)


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
    )
    app.include_router(tiler.router, prefix="/tiles/{layer_id}", tags=["Tiles (XYZ)"])
    add_exception_handlers(app, TILER_STATUS_CODES)
