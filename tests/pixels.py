"""Helpers to compare rendered map images with the COG values they draw."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.io import MemoryFile
from rasterio.warp import transform as warp_transform
from rio_tiler.colormap import cmap


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 [bands, rows, cols] (RGBA), read back with rasterio as TiTiler's tests do.
    Palette PNGs come back as RGBA through their palette (and its transparency)."""
    with MemoryFile(data) as mem, mem.open() as src:
        assert src.driver == "PNG"
        img = src.read()
        if src.count == 1 and src.colorinterp[0].name == "palette":
            table = src.colormap(1)
            lut = np.array([table.get(i, (0, 0, 0, 0)) for i in range(256)], np.uint8)
            img = lut[img[0]].transpose(2, 0, 1)
        return img


def colormap_index(rgb: np.ndarray, name: str) -> np.ndarray:
    """Inverse colour map: [3, N] RGB -> index 0..255 of the nearest entry of the named colour map."""
    table = np.array([cmap.get(name)[i][:3] for i in range(256)], dtype=np.int32)  # [256, 3]
    d = ((rgb.T[:, None, :].astype(np.int32) - table[None]) ** 2).sum(-1)
    return d.argmin(1)


def expected_index(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    return np.clip((values - vmin) / (vmax - vmin) * 255.0, 0, 255).astype(np.int32)


def sample_cells(path, xs: np.ndarray, ys: np.ndarray, crs: str, band: int = 1, offsets=((0, 0),)):
    """COG values at points given in ``crs`` (one row per offset, in cells of the raster)."""
    with rasterio.open(path) as src:
        px, py = warp_transform(crs, src.crs, list(xs), list(ys))
        rows, cols = rasterio.transform.rowcol(src.transform, px, py)
        rows, cols = np.asarray(rows), np.asarray(cols)
        data = src.read(band)
        nodata = src.nodata
    out = []
    for dr, dc in offsets:
        r = np.clip(rows + dr, 0, data.shape[0] - 1)
        c = np.clip(cols + dc, 0, data.shape[1] - 1)
        inside = (rows + dr >= 0) & (rows + dr < data.shape[0]) & (cols + dc >= 0) & (cols + dc < data.shape[1])
        vals = np.where(inside, data[r, c], nodata)
        out.append(vals)
    return np.array(out), nodata


NEIGHBOURS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1))


def compare_image(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, crs: str, path, colormap: str,
                  vmin: float, vmax: float) -> dict:
    """Check every pixel of an RGBA image against the COG cell under its centre.

    Returns the share of data pixels whose colour is the cell's (``exact``, +-1 colour step for
    rounding), the share matching some cell of the 3 x 3 neighbourhood (``near``: resampling at cell
    edges), and how transparent pixels agree with nodata.
    """
    vals, nodata = sample_cells(path, xs, ys, crs, offsets=NEIGHBOURS)
    centre = vals[NEIGHBOURS.index((0, 0))]
    alpha = img[3].reshape(-1)
    data_px = centre != nodata
    idx = colormap_index(img[:3].reshape(3, -1), colormap)
    exp = [expected_index(v, vmin, vmax) for v in vals]
    exact = np.abs(idx - exp[NEIGHBOURS.index((0, 0))]) <= 1
    near = np.zeros_like(exact)
    for v, e in zip(vals, exp):
        near |= (np.abs(idx - e) <= 1) & (v != nodata)
    opaque = alpha > 0
    both = data_px & opaque
    return {
        "n_data": int(data_px.sum()),
        "exact": float(exact[both].mean()) if both.any() else 0.0,
        "near": float(near[both].mean()) if both.any() else 0.0,
        "opaque_where_data": float(opaque[data_px].mean()) if data_px.any() else 0.0,
        "transparent_where_nodata": float((~opaque[~data_px]).mean()) if (~data_px).any() else 1.0,
    }


def pixel_centres(bbox, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    left, bottom, right, top = bbox
    xs = left + (np.arange(width) + 0.5) * (right - left) / width
    ys = top - (np.arange(height) + 0.5) * (top - bottom) / height
    gx, gy = np.meshgrid(xs, ys)
    return gx.reshape(-1), gy.reshape(-1)
