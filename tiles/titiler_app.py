"""TiTiler (XYZ tiles, TileJSON, point values) over catalog layers: ``/tiles/{layer_id}/...``.

The path dependency turns a catalog layer id into a file under the data dir; no endpoint takes a
URL or path from the client.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Path, Request
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
from titiler.core.dependencies import create_colormap_dependency
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


def gdal_env() -> dict:
    return dict(GDAL_ENV)


def mount_titiler(app: FastAPI) -> None:
    tiler = TilerFactory(
        path_dependency=layer_path,
        router_prefix="/tiles/{layer_id}",
        environment_dependency=gdal_env,
        colormap_dependency=create_colormap_dependency(COLORMAPS),  # rio-tiler's maps plus GeoFlora's categorical ones
        add_viewer=False,
        add_preview=False,  # unbounded full-image renders; WMS GetMap covers that, with limits
        add_part=False,
    )
    app.include_router(tiler.router, prefix="/tiles/{layer_id}", tags=["Tiles (XYZ)"])
    add_exception_handlers(app, TILER_STATUS_CODES)
