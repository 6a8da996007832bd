"""Write Cloud-Optimised GeoTIFFs atomically (temp file, then rename) and validate them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from backend.core.atomic import atomic_path

GDAL_ENV = {
    # Opening one file must not list its directory (thousands of meta-tiles side by side); region
    # overviews (.vrt.ovr) are opened explicitly by the renderer for that reason.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_CACHEMAX": 256,  # MiB of decoded blocks shared by every open dataset
    "VSI_CACHE": True,
    "VSI_CACHE_SIZE": 50_000_000,
    # A region mosaic keeps its meta-tile COGs open (default pool: 100 files).
    "GDAL_MAX_DATASET_POOL_SIZE": 512,
    # Object storage (production): fetch only what a COG needs, few and merged range requests.
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.vrt,.ovr",
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
}


def write_cog(
    path: Path,
    data: np.ndarray,
    *,
    transform: Affine,
    crs: str = "EPSG:3035",
    nodata: float | int | None,
    band_names: list[str] | None = None,
    tags: dict[str, str] | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    resampling: str = "average",
    blocksize: int = 256,
) -> Path:
    """Write ``data`` ([bands, rows, cols] or [rows, cols]) as a COG at ``path``, atomically.

    The file appears under its final name only once it is complete, so a reader (TiTiler,
    MapProxy, a report) never sees a half-written file. ``resampling`` builds the overviews:
    ``average`` for continuous values, ``nearest``/``mode`` for classes.
    """
    if data.ndim == 2:
        data = data[np.newaxis]
    count, height, width = data.shape
    src_profile = {
        "driver": "GTiff",
        "dtype": data.dtype.name,
        "count": count,
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    dst_profile = cog_profiles.get("deflate")
    dst_profile.update(blockxsize=blocksize, blockysize=blocksize, predictor=2 if data.dtype.kind in "iu" else 3)
    with atomic_path(path) as tmp:
        with rasterio.Env(**GDAL_ENV), MemoryFile() as mem:
            with mem.open(**src_profile) as dst:
                dst.write(data)
                if band_names:
                    for i, name in enumerate(band_names, start=1):
                        dst.set_band_description(i, name)
                if tags:
                    dst.update_tags(**tags)
                if colormap is not None:
                    dst.write_colormap(1, colormap)
                    dst.colorinterp = [ColorInterp.palette]
            with mem.open() as src:
                cog_translate(
                    src,
                    tmp,
                    dst_profile,
                    overview_resampling=resampling,
                    overview_level=None,
                    in_memory=True,
                    quiet=True,
                    use_cog_driver=False,
                )
    return path


def write_cog_band(path: Path, data: np.ndarray, *, transform: Affine, nodata: int | float, crs: str = "EPSG:3035",
                   scale: float = 1.0, resampling: str = "average", blocksize: int = 256) -> Path:
    """One-band COG through GDAL's own COG driver, atomically: the fast path for many small layers
    (per-species probabilities), about twice as fast as :func:`write_cog` for a 500 x 500 band."""
    if data.ndim != 2:
        raise ValueError(f"write_cog_band takes one band [rows, cols], got shape {data.shape}")
    profile = dict(driver="COG", dtype=data.dtype.name, count=1, width=data.shape[1], height=data.shape[0],
                   crs=crs, transform=transform, nodata=nodata, compress="DEFLATE",
                   predictor=2 if data.dtype.kind in "iu" else 3, blocksize=blocksize,
                   overview_resampling=resampling)
    with atomic_path(path) as tmp, rasterio.Env(**GDAL_ENV), rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
        if scale != 1.0:
            dst.scales = (scale,)
    return path


def is_valid_cog(path: Path) -> bool:
    valid, _errors, _warnings = cog_validate(str(path), quiet=True)
    return bool(valid)
