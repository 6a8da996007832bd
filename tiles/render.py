"""The lean in-process renderer behind XYZ tiles, WMS GetMap, WMTS and GetFeatureInfo.

For a target grid (bounding box, CRS, width, height) it picks the source level (full resolution
or a region-wide overview), reads one window, samples it nearest-neighbour at the target pixel
centres and colours the values through a 256-entry table, exactly as TiTiler's rescale and
colour maps do (the legends are built from the same tables). What makes it fast:

- open datasets are kept per thread (no open per request), GDAL caches decoded blocks;
- reprojection maps a 17 x 17 grid of pixel centres through PROJ and interpolates the rest
  (the error is far below a pixel: map projections are smooth over one image);
- colours are a table lookup; the PNG is a palette image whenever the colours fit (tiles/png.py).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window

from backend.core.layers import LayerInfo
from tiles import deadline
from tiles.cog import GDAL_ENV
from tiles.colormaps import COLORMAPS
from tiles.png import encode_palette, encode_rgb, encode_rgba

# Pixel-centre grid spacing for reprojection: exact PROJ at every 16th pixel, interpolated between.
REPROJECT_STEP = 16
DATASETS_PER_THREAD = 128


class OutsideLayer(Exception):
    """The requested image does not touch the layer's data."""


@dataclass(frozen=True)
class Level:
    factor: float
    transform: Affine
    width: int
    height: int
    source: str  # what to open: the file, or one page of a region overview ``GTIFF_DIR:k:<mosaic>.ovr``
    overview_level: int | None = None  # an internal overview of ``source``


@dataclass(frozen=True)
class RasterMeta:
    """What the renderer needs to know of a file (read once per file and process)."""

    path: str
    crs: str
    levels: tuple[Level, ...]  # full resolution first, then overviews, finer to coarser
    count: int
    dtype: str
    nodata: float | None
    colormap: dict | None
    descriptions: tuple[str | None, ...]
    scales: tuple[float, ...]
    bounds: tuple[float, float, float, float]


_meta_lock = threading.Lock()
_meta: dict[tuple[str, float], RasterMeta] = {}
_local = threading.local()


def _open(level: Level):
    """The dataset of one level, kept open for this thread."""
    cache: OrderedDict | None = getattr(_local, "datasets", None)
    if cache is None:
        cache = _local.datasets = OrderedDict()
    key = (level.source, level.overview_level)
    ds = cache.get(key)
    if ds is not None:
        cache.move_to_end(key)
        return ds
    with rasterio.Env(**GDAL_ENV):
        if level.overview_level is None:
            ds = rasterio.open(level.source)
        else:
            ds = rasterio.open(level.source, overview_level=level.overview_level)
    cache[key] = ds
    if len(cache) > DATASETS_PER_THREAD:
        _, old = cache.popitem(last=False)
        old.close()
    return ds


def raster_meta(path: Path | str) -> RasterMeta:
    """Metadata of a raster (cached by path and modification time)."""
    path = str(path)
    key = (path, Path(path).stat().st_mtime)
    meta = _meta.get(key)
    if meta is not None:
        return meta
    with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
        levels = [Level(1.0, src.transform, src.width, src.height, path)]
        region_overview = Path(path + ".ovr")
        if region_overview.is_file():
            # A mosaic's region overviews (tiles/mosaic.py), opened page by page: with
            # GDAL_DISABLE_READDIR_ON_OPEN GDAL would not look for the .ovr beside the VRT and
            # would fall back to the meta-tiles' own overviews, opening every meta-tile.
            page = 1
            while True:
                source = f"GTIFF_DIR:{page}:{region_overview}"
                try:
                    with rasterio.open(source) as ovr:
                        fx, fy = src.width / ovr.width, src.height / ovr.height
                        levels.append(Level(fx, src.transform * Affine.scale(fx, fy), ovr.width, ovr.height, source))
                except rasterio.errors.RasterioIOError:
                    break
                page += 1
        else:
            for i, _ in enumerate(src.overviews(1)):
                with rasterio.open(path, overview_level=i) as ovr:
                    levels.append(Level(src.width / ovr.width, ovr.transform, ovr.width, ovr.height, path, i))
        colormap = None
        if src.count and src.colorinterp[0].name == "palette":
            colormap = src.colormap(1)
        meta = RasterMeta(path=path, crs=src.crs.to_string(), levels=tuple(levels), count=src.count,
                          dtype=src.dtypes[0], nodata=src.nodata, colormap=colormap,
                          descriptions=tuple(src.descriptions), scales=tuple(src.scales), bounds=tuple(src.bounds))
    with _meta_lock:
        _meta[key] = meta
    return meta


def _transform(src: str, dst: str, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # one Transformer per thread: PROJ contexts are per thread
    per_thread = getattr(_local, "transformers", None)
    if per_thread is None:
        per_thread = _local.transformers = {}
    t = per_thread.get((src, dst))
    if t is None:
        t = per_thread[(src, dst)] = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst),
                                                           always_xy=True)
    return t.transform(xs, ys)


@lru_cache(maxsize=64)
def _interp_axis(n: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coarse sample positions along an axis of ``n`` pixels, and for every pixel the coarse
    neighbours (i0, i1) and the weight of i1 for linear interpolation."""
    coarse = np.unique(np.r_[np.arange(0, n, step), n - 1]).astype(np.float64)
    pos = np.arange(n, dtype=np.float64)
    i1 = np.clip(np.searchsorted(coarse, pos, side="right"), 1, len(coarse) - 1)
    i0 = i1 - 1
    frac = (pos - coarse[i0]) / (coarse[i1] - coarse[i0])
    return coarse, i0, i1, frac


def _bilinear(grid: np.ndarray, ax: tuple, ay: tuple) -> np.ndarray:
    """Interpolate a coarse [ny, nx] grid to every pixel (elementwise: no BLAS threads involved)."""
    _, x0, x1, fx = ax
    _, y0, y1, fy = ay
    rows = grid[:, x0] * (1.0 - fx) + grid[:, x1] * fx  # [ny, width]
    return rows[y0] * (1.0 - fy)[:, None] + rows[y1] * fy[:, None]


def same_crs(a: str, b: str) -> bool:
    return a == b or CRS.from_user_input(a) == CRS.from_user_input(b)


@lru_cache(maxsize=256)
def _same_crs_cached(a: str, b: str) -> bool:
    return same_crs(a, b)


class Sampler:
    """Nearest-neighbour sampling of one raster on target grids."""

    def __init__(self, path: Path | str) -> None:
        self.meta = raster_meta(path)

    def _level_for(self, target_res: float) -> int:
        """The coarsest level whose cells are not larger than a target pixel (as GDAL does)."""
        base = abs(self.meta.levels[0].transform.a)
        best = 0
        for i, lvl in enumerate(self.meta.levels):
            if base * lvl.factor <= target_res * 1.0001:
                best = i
        return best

    def grid_coords(self, bbox, crs: str, width: int, height: int):
        """Source-CRS coordinates of the target pixel centres: 1-D x and y when the CRS is the
        source's (separable grid), else 2-D arrays."""
        minx, miny, maxx, maxy = bbox
        dx, dy = (maxx - minx) / width, (maxy - miny) / height
        if _same_crs_cached(crs, self.meta.crs):
            xs = minx + (np.arange(width) + 0.5) * dx
            ys = maxy - (np.arange(height) + 0.5) * dy
            return xs, ys, min(dx, dy)
        ax, ay = _interp_axis(width, REPROJECT_STEP), _interp_axis(height, REPROJECT_STEP)
        cx, cy = ax[0], ay[0]
        gx, gy = np.meshgrid(minx + (cx + 0.5) * dx, maxy - (cy + 0.5) * dy)
        sx, sy = _transform(crs, self.meta.crs, gx.ravel(), gy.ravel())
        sx = np.asarray(sx).reshape(gx.shape)
        sy = np.asarray(sy).reshape(gy.shape)
        # pixel size in source units: spacing of the coarse grid divided by its step
        if sx.shape[1] > 1 and sx.shape[0] > 1:
            i, j = sx.shape[0] // 2, sx.shape[1] // 2  # spacing at the image centre
            ddx = math.hypot(sx[i, j] - sx[i, j - 1], sy[i, j] - sy[i, j - 1]) / (cx[j] - cx[j - 1])
            ddy = math.hypot(sx[i, j] - sx[i - 1, j], sy[i, j] - sy[i - 1, j]) / (cy[i] - cy[i - 1])
            res = min(ddx, ddy)
        else:
            res = float(abs(self.meta.levels[0].transform.a))
        with np.errstate(invalid="ignore", over="ignore"):  # points PROJ cannot map are inf: invalid pixels
            xs = _bilinear(sx, ax, ay)
            ys = _bilinear(sy, ax, ay)
        return xs, ys, res

    def sample(self, bbox, crs: str, width: int, height: int, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Values [len(bands), height, width] at the pixel centres and a validity mask [height, width]
        (False outside the raster and at nodata). Raises OutsideLayer when nothing is inside."""
        xs, ys, res = self.grid_coords(bbox, crs, width, height)
        deadline.check()
        level_idx = self._level_for(res) if math.isfinite(res) and res > 0 else 0
        lvl = self.meta.levels[level_idx]
        t = lvl.transform
        separable = xs.ndim == 1
        with np.errstate(invalid="ignore"):
            cols = np.floor((xs - t.c) / t.a)
            rows = np.floor((ys - t.f) / t.e)
        if separable:  # 1-D columns [width] and rows [height]
            cin = np.isfinite(cols) & (cols >= 0) & (cols < lvl.width)
            rin = np.isfinite(rows) & (rows >= 0) & (rows < lvl.height)
            if not cin.any() or not rin.any():
                raise OutsideLayer()
            c0, c1 = int(cols[cin].min()), int(cols[cin].max()) + 1
            r0, r1 = int(rows[rin].min()), int(rows[rin].max()) + 1
        else:
            inside = np.isfinite(cols) & np.isfinite(rows)
            inside &= (cols >= 0) & (cols < lvl.width) & (rows >= 0) & (rows < lvl.height)
            if not inside.any():
                raise OutsideLayer()
            c0, c1 = int(cols[inside].min()), int(cols[inside].max()) + 1
            r0, r1 = int(rows[inside].min()), int(rows[inside].max()) + 1
        ds = _open(lvl)
        window = ds.read(bands, window=Window(c0, r0, c1 - c0, r1 - r0))  # [b, rh, cw]
        deadline.check()
        if separable:
            ci = np.where(cin, cols - c0, 0).astype(np.intp)
            ri = np.where(rin, rows - r0, 0).astype(np.intp)
            values = window[:, ri[:, None], ci[None, :]]
            valid = rin[:, None] & cin[None, :]
        else:
            flat = np.where(inside, (rows - r0) * (c1 - c0) + (cols - c0), 0).astype(np.intp)
            values = window.reshape(len(bands), -1)[:, flat]
            valid = inside
        nodata = self.meta.nodata
        if nodata is not None:
            valid = valid & ~np.all(values == nodata, axis=0) if len(bands) > 1 else valid & (values[0] != nodata)
        if values.dtype.kind == "f":
            valid = valid & np.all(np.isfinite(values), axis=0)
        return values, valid

    def values_at(self, x: float, y: float, crs: str) -> list[float | None] | None:
        """Every band's value of the full-resolution cell under a point (None at nodata), or None
        outside the raster."""
        if not _same_crs_cached(crs, self.meta.crs):
            sx, sy = _transform(crs, self.meta.crs, np.array([x]), np.array([y]))
            x, y = float(sx[0]), float(sy[0])
        t = self.meta.levels[0].transform
        col, row = math.floor((x - t.c) / t.a), math.floor((y - t.f) / t.e)
        lvl = self.meta.levels[0]
        if not (0 <= col < lvl.width and 0 <= row < lvl.height):
            return None
        ds = _open(self.meta.levels[0])
        cell = ds.read(window=Window(col, row, 1, 1))[:, 0, 0]
        out: list[float | None] = []
        for v in cell.tolist():
            bad = (self.meta.nodata is not None and v == self.meta.nodata) or (isinstance(v, float) and not math.isfinite(v))
            out.append(None if bad else v)
        return out


def rescale_index(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Colour-table index 0..255 of ``values`` exactly as rio-tiler's ``rescale`` computes it
    (float64 arithmetic, stored in the array's dtype, then truncated to uint8)."""
    scaled = (np.clip(values, vmin, vmax, dtype=np.float64) - vmin) / np.float64(vmax - vmin) * 255.0
    if values.dtype.kind == "f":
        scaled = scaled.astype(values.dtype)
    return scaled.astype(np.uint8)


def _table(name: str) -> np.ndarray:
    """A named colour map as a [256, 4] uint8 array (missing entries transparent)."""
    cmap = COLORMAPS.get(name)
    table = np.zeros((256, 4), np.uint8)
    for k, rgba in cmap.items():
        if 0 <= int(k) < 256:
            table[int(k)] = rgba
    return table


@dataclass
class Picture:
    """A rendered image: palette indices + palette, or RGB (+ one transparent colour), or RGBA."""

    index: np.ndarray | None = None
    palette: np.ndarray | None = None
    rgb: np.ndarray | None = None
    transparent: tuple[int, int, int] | None = None
    rgba_: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        arr = self.index if self.index is not None else self.rgb if self.rgb is not None else self.rgba_
        return arr.shape[1], arr.shape[0]

    def png(self) -> bytes:
        if self.index is not None:
            return encode_palette(self.index, self.palette)
        if self.rgb is not None:
            return encode_rgb(self.rgb, self.transparent)
        return encode_rgba(self.rgba_)

    def rgba(self) -> np.ndarray:
        if self.index is not None:
            return self.palette[self.index]
        if self.rgb is not None:
            alpha = np.full(self.rgb.shape[:2] + (1,), 255, np.uint8)
            if self.transparent is not None:
                alpha[np.all(self.rgb == self.transparent, axis=-1)] = 0
            return np.concatenate([self.rgb, alpha], axis=-1)
        return self.rgba_


class LayerRenderer:
    """Renders one catalog layer as its legend says."""

    def __init__(self, info: LayerInfo) -> None:
        self.info = info
        self.sampler = Sampler(info.path)
        meta = self.sampler.meta
        self.bands = [1, 2, 3] if info.kind == "embedding" else [info.band]
        self.mode = "rgb" if info.kind == "embedding" else "lut" if meta.dtype == "uint8" else "ramp"
        if self.mode == "lut":
            self.lut = self._uint8_lut(meta)
        elif self.mode == "ramp":
            self.table = _table(info.colormap or "viridis")
            self.vmin, self.vmax = info.rescale or (0.0, 1.0)

    def _uint8_lut(self, meta: RasterMeta) -> np.ndarray:
        info = self.info
        values = np.arange(256, dtype=np.uint8)
        if info.colormap and info.rescale is not None:
            lut = _table(info.colormap)[rescale_index(values, *info.rescale)]
        elif info.colormap:
            lut = _table(info.colormap)
        elif meta.colormap:
            lut = np.array([meta.colormap.get(v, (0, 0, 0, 0)) for v in range(256)], np.uint8)
        else:
            lut = np.stack([values, values, values, np.full(256, 255, np.uint8)], axis=1)
        lut = lut.copy()
        if meta.nodata is not None and 0 <= meta.nodata < 256:
            lut[int(meta.nodata)] = (0, 0, 0, 0)
        return lut

    def render(self, bbox, crs: str, width: int, height: int) -> Picture:
        """The layer on a target grid. Raises OutsideLayer when the grid misses the data."""
        values, valid = self.sampler.sample(bbox, crs, width, height, self.bands)
        deadline.check()
        if self.mode == "lut":
            nodata = self.sampler.meta.nodata
            index = values[0]
            if not valid.all():
                # positions outside the raster get the nodata entry (or any transparent one)
                fill = int(nodata) if nodata is not None and 0 <= nodata < 256 else _transparent_entry(self.lut)
                if fill is None:
                    return Picture(rgba_=np.where(valid[..., None], self.lut[index], 0).astype(np.uint8))
                index = np.where(valid, index, np.uint8(fill))
            return Picture(index=np.ascontiguousarray(index, dtype=np.uint8), palette=self.lut)
        if self.mode == "ramp":
            index = rescale_index(values[0], self.vmin, self.vmax)
            if valid.all():
                return Picture(index=index, palette=self.table)
            counts = np.bincount(index[valid], minlength=256)
            unused = np.flatnonzero(counts == 0)
            if len(unused):
                palette = self.table.copy()
                palette[unused[0]] = (0, 0, 0, 0)
                return Picture(index=np.where(valid, index, unused[0]).astype(np.uint8), palette=palette)
            return Picture(rgba_=np.where(valid[..., None], self.table[index], 0).astype(np.uint8))
        rgb = np.moveaxis(values, 0, -1).astype(np.uint8)
        rgb[~valid] = 0  # 0, 0, 0 is the nodata colour of an RGB layer, drawn transparent
        return Picture(rgb=np.ascontiguousarray(rgb), transparent=(0, 0, 0))


def _transparent_entry(lut: np.ndarray) -> int | None:
    idx = np.flatnonzero(lut[:, 3] == 0)
    return int(idx[0]) if len(idx) else None


_renderers_lock = threading.Lock()
_renderers: dict[tuple, LayerRenderer] = {}


def renderer_for(info: LayerInfo) -> LayerRenderer:
    """One renderer per layer and file version (rebuilt when the live run or the file changes)."""
    key = (info.id, str(info.path), info.band, info.kind, info.colormap, info.rescale, info.path.stat().st_mtime)
    r = _renderers.get(key)
    if r is None:
        r = LayerRenderer(info)
        with _renderers_lock:
            if len(_renderers) > 4096:
                _renderers.clear()
            _renderers[key] = r
    return r
