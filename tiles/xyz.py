"""XYZ tiles of catalog layers, rendered as their legends say: ``/tiles/{layer_id}/{z}/{x}/{y}.png``.

The lean path (tiles/render.py) plus an in-memory LRU of encoded tiles per process. TiTiler's own
endpoints stay under the same prefix for anything else (TileJSON, info, point values, custom
rendering with its query parameters).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from backend.core.errors import InvalidInput, NotFound
from backend.core.layers import request_snapshot
from tiles.render import OutsideLayer, renderer_for
from tiles.titiler_app import LAYER_ID_PATTERN

WEB_MERCATOR_HALF = math.pi * 6378137.0
TILE_SIZE = 256
MAX_ZOOM = 22

router = APIRouter(tags=["Tiles (XYZ)"])


class TileCache:
    """Thread-safe LRU of encoded tiles bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes += len(data) - (len(old) if old else 0)
            self._items[key] = data
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)


def mercator_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """EPSG:3857 bounds (left, bottom, right, top) of XYZ tile z/x/y."""
    size = 2 * WEB_MERCATOR_HALF / 2**z
    left = -WEB_MERCATOR_HALF + x * size
    top = WEB_MERCATOR_HALF - y * size
    return left, top - size, left + size, top


@router.get(
    "/tiles/{layer_id}/{z}/{x}/{y}.png",
    summary="XYZ tile (EPSG:3857) of a catalog layer, rendered as its legend",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "256 x 256 PNG"},
               304: {"description": "Not modified (same live run)"},
               404: {"description": "Unknown layer, or a tile outside the layer"}},
)
def xyz_tile(
    request: Request,
    layer_id: Annotated[str, Path(pattern=LAYER_ID_PATTERN,
                                  description="Catalog layer id of the live run, e.g. `indicator.richness`.")],
    z: Annotated[int, Path(ge=0, le=MAX_ZOOM, description="Zoom level.")],
    x: Annotated[int, Path(ge=0, description="Tile column, 0 at 180 degrees west.")],
    y: Annotated[int, Path(ge=0, description="Tile row, 0 at the top (XYZ / Google scheme, not TMS).")],
) -> Response:
    snap = request_snapshot(request)  # one snapshot: the cache key and the file read are of one run
    info = snap.layer(layer_id)
    if x >= 2**z or y >= 2**z:
        raise InvalidInput(f"tile {z}/{x}/{y} does not exist: x and y must be below {2**z} at zoom {z}")
    key = (snap.run_id, layer_id, z, x, y)
    etag = f'"{snap.run_id}/{layer_id}/{z}/{x}/{y}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    cache: TileCache = request.app.state.tile_cache
    data = cache.get(key)
    if data is None:
        try:
            picture = renderer_for(info).render(mercator_bounds(z, x, y), "EPSG:3857", TILE_SIZE, TILE_SIZE)
        except OutsideLayer:
            raise NotFound(f"tile {z}/{x}/{y} is outside layer {layer_id!r}") from None
        data = picture.png()
        cache.put(key, data)
    return Response(data, media_type="image/png", headers=headers)
