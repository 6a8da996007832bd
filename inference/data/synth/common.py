"""Shared helpers of the generator: seeded generators, fractal noise, GeoTIFF writing."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import rasterio
import scipy.fft
from affine import Affine
from rasterio.enums import ColorInterp

from backend.core.atomic import atomic_path
from inference.grid import CRS

GTIFF_PROFILE = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate", zlevel=1)


def rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator for one named layer: independent of the other layers, stable across runs."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def fractal_field(rng: np.random.Generator, shape: tuple[int, int], beta: float = 3.0,
                  cutoff: float = 0.0) -> np.ndarray:
    """Gaussian random field with power spectrum ~ k^-beta, standardised (mean 0, sd 1), float32.

    ``cutoff`` (cycles per pixel) removes frequencies above it, for smooth large-scale fields.
    """
    h, w = shape
    white = rng.standard_normal((h, w), dtype=np.float32)
    spec = scipy.fft.rfft2(white, workers=2)
    ky = np.fft.fftfreq(h).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    k = np.sqrt(kx * kx + ky * ky)
    k[0, 0] = 1.0
    amp = k ** (-beta / 2.0)
    amp[0, 0] = 0.0
    if cutoff > 0:
        amp *= np.exp(-((k / cutoff) ** 2))
    field = scipy.fft.irfft2(spec * amp, s=(h, w), workers=2).astype(np.float32)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def standardise(a: np.ndarray) -> np.ndarray:
    return ((a - a.mean()) / (a.std() + 1e-12)).astype(np.float32)


def write_geotiff(path: Path, data: np.ndarray, transform: Affine, *, nodata=None,
                  descriptions: list[str] | None = None, tags: dict | None = None,
                  colormap: dict | None = None, blocksize: int = 256, predictor: int | None = None,
                  interleave: str = "pixel") -> Path:
    """Write a tiled, compressed EPSG:3035 GeoTIFF (2-D or [bands, rows, cols]) through a temp file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = data[None] if data.ndim == 2 else data
    count, h, w = arr.shape
    prof = dict(GTIFF_PROFILE, width=w, height=h, count=count, dtype=arr.dtype.name, crs=CRS,
                transform=transform, nodata=nodata, blockxsize=blocksize, blockysize=blocksize,
                interleave=interleave, BIGTIFF="IF_SAFER")
    if predictor is None:
        predictor = 3 if arr.dtype.kind == "f" else (2 if arr.dtype.itemsize > 1 else 1)
    prof["predictor"] = predictor
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **prof) as dst:
        dst.write(arr)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
        if colormap:
            dst.write_colormap(1, colormap)
            dst.colorinterp = [ColorInterp.palette]
    return path


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks of the last two axes (their sizes must be multiples of f)."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // f, f, w // f, f).mean(axis=(-3, -1))
