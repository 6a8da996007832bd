"""The GeoFlora grid: EPSG:3035, 50 m cells, 25 km meta-tiles aligned on multiples of 25 km.

A meta-tile id is built from its lower-left corner in km, ``E3800N2250``. Every part of the
system (generator, pipeline, tile layout, reports) derives windows and transforms from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from affine import Affine

from backend.core.errors import GridError

CRS = "EPSG:3035"
CELL_M = 50
METATILE_M = 25_000
CELLS_PER_METATILE = METATILE_M // CELL_M  # 500

_ID_RE = re.compile(r"^E(\d{3,5})N(\d{3,5})$")




@dataclass(frozen=True, order=True)
class MetaTile:
    """One 25 x 25 km meta-tile, identified by its lower-left corner in metres (EPSG:3035)."""

    x0: int
    y0: int

    def __post_init__(self) -> None:
        if self.x0 % METATILE_M or self.y0 % METATILE_M:
            raise GridError(f"meta-tile corner ({self.x0}, {self.y0}) is not on the 25 km grid")

    @property
    def id(self) -> str:
        return f"E{self.x0 // 1000}N{self.y0 // 1000}"

    @classmethod
    def from_id(cls, tile_id: str) -> MetaTile:
        m = _ID_RE.match(tile_id)
        if not m:
            raise GridError(f"invalid meta-tile id {tile_id!r}: expected e.g. 'E3800N2250'")
        return cls(int(m.group(1)) * 1000, int(m.group(2)) * 1000)

    @classmethod
    def containing(cls, x: float, y: float) -> MetaTile:
        return cls(int(x // METATILE_M) * METATILE_M, int(y // METATILE_M) * METATILE_M)

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """(left, bottom, right, top) in EPSG:3035 metres."""
        return (self.x0, self.y0, self.x0 + METATILE_M, self.y0 + METATILE_M)

    def transform(self, res: float = CELL_M) -> Affine:
        """Affine transform of a north-up raster covering this meta-tile at ``res`` metres."""
        return Affine(res, 0.0, self.x0, 0.0, -res, self.y0 + METATILE_M)

    def shape(self, res: float = CELL_M) -> tuple[int, int]:
        n = int(round(METATILE_M / res))
        return (n, n)

    def polygon_wkt(self) -> str:
        left, bottom, right, top = self.bounds
        return (
            f"POLYGON(({left} {bottom},{right} {bottom},{right} {top},{left} {top},{left} {bottom}))"
        )


@dataclass(frozen=True)
class Region:
    """A rectangle of whole meta-tiles: ``nx`` x ``ny`` meta-tiles from the lower-left ``origin``."""

    origin: MetaTile
    nx: int
    ny: int

    def __post_init__(self) -> None:
        if self.nx < 1 or self.ny < 1:
            raise GridError(f"region size must be at least 1 x 1 meta-tiles, got {self.nx} x {self.ny}")

    @classmethod
    def from_corner(cls, x0: float, y0: float, nx: int, ny: int) -> Region:
        return cls(MetaTile.containing(x0, y0), nx, ny)

    def metatiles(self) -> Iterator[MetaTile]:
        for j in range(self.ny):
            for i in range(self.nx):
                yield MetaTile(self.origin.x0 + i * METATILE_M, self.origin.y0 + j * METATILE_M)

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        x0, y0 = self.origin.x0, self.origin.y0
        return (x0, y0, x0 + self.nx * METATILE_M, y0 + self.ny * METATILE_M)

    def transform(self, res: float = CELL_M) -> Affine:
        left, _, _, top = self.bounds
        return Affine(res, 0.0, left, 0.0, -res, top)

    def shape(self, res: float = CELL_M) -> tuple[int, int]:
        left, bottom, right, top = self.bounds
        return (int(round((top - bottom) / res)), int(round((right - left) / res)))

    def window_of(self, tile: MetaTile, res: float = CELL_M) -> tuple[slice, slice]:
        """Row and column slices of ``tile`` inside the region raster at ``res`` metres."""
        left, _, _, top = self.bounds
        n = int(round(METATILE_M / res))
        r0 = int(round((top - (tile.y0 + METATILE_M)) / res))
        c0 = int(round((tile.x0 - left) / res))
        return slice(r0, r0 + n), slice(c0, c0 + n)
