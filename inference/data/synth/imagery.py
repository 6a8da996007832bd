"""Sentinel-2-like 10 m R, G, B, NIR scene and Landsat-like quarterly cubes that reflect land cover.

S2: one summer scene, L2A digital numbers (reflectance x 10,000, uint16) on the region plus margin,
built from land cover, parcels (crop ripeness differs field to field), hedgerows, roads and
terrain shading, with 10 m texture. Landsat: bands R, G, B, NIR, SWIR1, SWIR2 x quarter x year
2000-2020 at ``LANDSAT_RES`` (100 m), values reflectance x 255 as in the GLC24 cubes (uint8); each
class mixes a green-vegetation and a dormant spectrum following its phenology, and arable parcels
rotate crops from year to year.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio import features

from .common import GTIFF_PROFILE, block_mean, rng_for
from .landscape import (
    AGRI,
    BROADLEAF,
    CONIFER,
    CROP,
    GRASS,
    PERMCROP,
    ROCK,
    SHRUB,
    URBAN,
    WATER,
    WETLAND,
    Frame,
    Landscape,
)

S2_RES = 10
S2_BANDS = ("B04_red", "B03_green", "B02_blue", "B08_nir")
LANDSAT_RES = 100
LANDSAT_BANDS = ("red", "green", "blue", "nir", "swir1", "swir2")
LANDSAT_YEARS = tuple(range(2000, 2021))
QUARTERS = 4

# summer reflectance (R, G, B, NIR) per land-cover class
_S2_REFL = np.zeros((11, 4), np.float32)
_S2_REFL[WATER] = (0.03, 0.04, 0.05, 0.02)
_S2_REFL[URBAN] = (0.15, 0.14, 0.13, 0.20)
_S2_REFL[CROP] = (0.05, 0.08, 0.03, 0.40)
_S2_REFL[GRASS] = (0.05, 0.09, 0.04, 0.35)
_S2_REFL[BROADLEAF] = (0.03, 0.06, 0.025, 0.36)
_S2_REFL[CONIFER] = (0.02, 0.04, 0.02, 0.22)
_S2_REFL[SHRUB] = (0.05, 0.07, 0.04, 0.26)
_S2_REFL[WETLAND] = (0.04, 0.07, 0.04, 0.24)
_S2_REFL[ROCK] = (0.22, 0.21, 0.19, 0.27)
_S2_REFL[PERMCROP] = (0.07, 0.09, 0.05, 0.30)
_RIPE = np.array((0.19, 0.16, 0.10, 0.28), np.float32)
_ROAD = np.array((0.12, 0.12, 0.12, 0.15), np.float32)
_HEDGE = np.array((0.025, 0.05, 0.022, 0.30), np.float32)
_TEXTURE = np.zeros(11, np.float32)
_TEXTURE[[URBAN, BROADLEAF, CONIFER, SHRUB, PERMCROP]] = (0.35, 0.18, 0.22, 0.2, 0.25)
_TEXTURE[[CROP, GRASS, WETLAND, ROCK, WATER]] = (0.05, 0.07, 0.12, 0.15, 0.05)


def write_s2(path: Path, land: Landscape, seed: int, chunk_rows: int = 512) -> Path:
    """Render and write the 10 m scene in row chunks (never the whole float scene in memory)."""
    rng = rng_for(seed, "sentinel2")
    fr = Frame(land.frame.region, land.frame.margin_m, S2_RES)
    H, W = fr.shape
    f = int(land.frame.res) // S2_RES
    roads10 = features.rasterize([(g, 1) for g in land.roads], out_shape=(H, W), transform=fr.transform,
                                 fill=0, dtype="uint8") if land.roads else np.zeros((H, W), np.uint8)
    roads10 = roads10.astype(bool)
    prof = dict(GTIFF_PROFILE, width=W, height=H, count=4, dtype="uint16", crs="EPSG:3035",
                transform=fr.transform, nodata=0, blockxsize=512, blockysize=512, predictor=2,
                interleave="pixel", BIGTIFF="IF_SAFER")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    shade = 0.55 + 0.45 * land.hillshade / max(float(land.hillshade.mean()), 1e-3) * 0.75
    with rasterio.open(tmp, "w", **prof) as dst:
        for r0 in range(0, H, chunk_rows):
            r1 = min(H, r0 + chunk_rows)
            # 50 m rows covering this chunk (plus one for boundary tests)
            a0, a1 = r0 // f, min(land.dem.shape[0], (r1 - 1) // f + 2)
            def up(a, a0=a0, a1=a1, r0=r0, r1=r1):
                return np.repeat(np.repeat(a[a0:a1], f, 0), f, 1)[r0 - a0 * f:r1 - a0 * f]
            lc = up(land.landcover)
            par = up(land.parcel)
            refl = _S2_REFL[lc]                                     # [h, w, 4]
            ripe = land.crop_field[par][..., None]
            crop = (lc == CROP)[..., None]
            refl = np.where(crop, refl * (1 - ripe) + _RIPE * ripe, refl)
            # meadows differ by mowing date and fertilisation, field to field
            refl = np.where((lc == GRASS)[..., None], refl * (0.85 + 0.3 * ripe), refl)
            tex = _TEXTURE[lc][..., None]
            n1 = rng.standard_normal(lc.shape, dtype=np.float32)[..., None]
            n4 = rng.standard_normal(refl.shape, dtype=np.float32)
            refl = refl * (1 + tex * n1 + 0.03 * n4) * up(shade)[..., None]
            # towns: 20 m roofs (grey or red tiles) and gardens between them
            urb = lc == URBAN
            if urb.any():
                hb, wb = (r1 - r0 + 1) // 2 + 1, W // 2 + 1
                kind = rng.choice(3, size=(hb, wb), p=[0.45, 0.3, 0.25])
                blk = np.repeat(np.repeat(kind, 2, 0), 2, 1)[:r1 - r0, :W]
                roof = np.array([(0.16, 0.15, 0.15, 0.18), (0.22, 0.11, 0.08, 0.20),
                                 (0.05, 0.08, 0.04, 0.30)], np.float32)[blk]
                refl = np.where(urb[..., None], roof * (1 + 0.1 * n4) * up(shade)[..., None], refl)
            # hedgerows: the 10 m pixels on the boundary of a hedged farmland parcel
            nxt_r = np.repeat(np.repeat(land.parcel[a0:a1 + 1], f, 0), f, 1)[r0 - a0 * f + 1:r1 - a0 * f + 1]
            if nxt_r.shape[0] < par.shape[0]:
                nxt_r = np.vstack([nxt_r, par[-1:]])
            bnd = (par != nxt_r)
            bnd[:, :-1] |= par[:, :-1] != par[:, 1:]
            hedge = bnd & np.isin(lc, AGRI) & land.parcel_hedged[par]
            refl[hedge] = _HEDGE * (1 + 0.15 * rng.standard_normal((int(hedge.sum()), 1), dtype=np.float32))
            road = roads10[r0:r1]
            refl[road] = _ROAD * (1 + 0.05 * rng.standard_normal((int(road.sum()), 1), dtype=np.float32))
            dn = np.clip(refl * 10000, 1, 65535).astype(np.uint16)
            dst.write(np.moveaxis(dn, -1, 0), window=((r0, r1), (0, W)))
        for i, d in enumerate(S2_BANDS, start=1):
            dst.set_band_description(i, d)
        dst.update_tags(units="L2A reflectance x 10000", scene="synthetic summer scene", resolution_m=S2_RES)
    tmp.replace(path)
    return path


# Landsat spectra (x 255): green vegetation, conifer vegetation, dormant / soil, water, urban, rock
_V = np.array([8, 14, 6, 90, 45, 18], np.float32)
_VC = np.array([6, 10, 5, 60, 30, 12], np.float32)
_D = np.array([30, 28, 20, 45, 60, 45], np.float32)
_LS_STATIC = {WATER: np.array([6, 8, 9, 4, 2, 1], np.float32), URBAN: np.array([35, 33, 28, 45, 50, 42], np.float32),
              ROCK: np.array([45, 43, 38, 50, 60, 50], np.float32)}
# greenness per quarter (Q1..Q4)
_GREEN = {GRASS: (0.5, 0.9, 0.8, 0.6), BROADLEAF: (0.25, 0.95, 0.9, 0.45), CONIFER: (0.8, 0.9, 0.9, 0.85),
          SHRUB: (0.35, 0.8, 0.75, 0.45), WETLAND: (0.3, 0.8, 0.8, 0.4), PERMCROP: (0.2, 0.8, 0.85, 0.4)}
# crop rotation: winter cereal, maize, rapeseed, ley grass, fallow
_CROPS = np.array([(0.4, 0.9, 0.2, 0.3), (0.05, 0.3, 0.95, 0.2), (0.5, 0.95, 0.15, 0.4),
                   (0.5, 0.9, 0.8, 0.6), (0.1, 0.2, 0.3, 0.1)], np.float32)
_CROP_P = np.array([0.4, 0.25, 0.15, 0.12, 0.08])


def landsat_cube(land: Landscape, seed: int) -> tuple[Frame, np.ndarray]:
    """uint8 [6 * 4 * 21, h, w] at LANDSAT_RES, band = (band * 4 + quarter) * 21 + year index."""
    rng = rng_for(seed, "landsat")
    f = LANDSAT_RES // int(land.frame.res)
    fr = Frame(land.frame.region, land.frame.margin_m, LANDSAT_RES)
    lc = land.landcover
    h, w = lc.shape
    nb, nq, ny = len(LANDSAT_BANDS), QUARTERS, len(LANDSAT_YEARS)
    static = np.zeros((nq, nb, h, w), np.float32)         # [q, b, h, w] at 50 m
    for c, spec in _LS_STATIC.items():
        static[:, :, lc == c] = spec[None, :, None]
    for c, g in _GREEN.items():
        m = lc == c
        veg = _VC if c == CONIFER else _V
        for q in range(nq):
            static[q][:, m] = (veg * g[q] + _D * (1 - g[q]))[:, None]
    static_c = block_mean(static, f)                       # [q, b, h', w']
    crop = (lc == CROP)
    n_par = int(land.parcel.max()) + 1
    par = land.parcel
    year_eff = rng.normal(0, 0.05, (ny, nq))
    year_eff[LANDSAT_YEARS.index(2003), 2] -= 0.2
    year_eff[LANDSAT_YEARS.index(2018), 2] -= 0.15
    out = np.empty((nb, nq, ny) + static_c.shape[2:], np.uint8)
    crop_frac = block_mean(crop.astype(np.float32), f)
    for yi in range(ny):
        ctype = rng.choice(len(_CROPS), size=n_par, p=_CROP_P)
        g = _CROPS[ctype]                                   # [parcels, q]
        val = static_c.copy()
        for q in range(nq):
            # spectra mix linearly, so the 100 m crop signal needs only the mean crop greenness
            gq = block_mean(np.where(crop, g[par, q], 0.0).astype(np.float32), f)
            val[q] += _V[:, None, None] * gq + _D[:, None, None] * (crop_frac - gq)
        val *= (1 + year_eff[yi])[:, None, None, None]
        val *= 1 + 0.04 * rng.standard_normal(val.shape, dtype=np.float32)
        out[:, :, yi] = np.clip(np.round(val), 0, 255).astype(np.uint8).transpose(1, 0, 2, 3)
    return fr, out.reshape(nb * nq * ny, *static_c.shape[2:])
