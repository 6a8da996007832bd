"""Monthly climate 2000-2018 in CHELSA units, and the 50 m bioclimate that the flora responds to.

Temperature falls with elevation (5.5 K/km) and latitude, follows the seasons and shares
region-wide year-to-month anomalies (a warming trend, the 2003 and 2018 hot summers). Precipitation
rises with elevation (orographic), peaks in summer and winter, and varies month to month.
Monthly rasters are written at ``CLIMATE_RES`` (250 m, finer than CHELSA's 1 km so that relief
inside a 50 km region shows); the 50 m ``bio1`` / ``bio12`` add slope exposure (micro-climate).
Units as CHELSA v2.1 stores them: temperatures in K x 10, precipitation in kg m-2 month-1 x 100.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import block_mean, fractal_field, rng_for
from .landscape import Frame, Landscape

YEARS = tuple(range(2000, 2019))
MONTHS = 12
CLIMATE_VARS = ("pr", "tas", "tasmax", "tasmin")  # channel order of the GLC24 cube sample
CLIMATE_RES = 250
LAPSE_K_PER_M = 0.0055
# share of the annual precipitation per month (central-European low-mountain regime)
_PR_FRAC = np.array([0.090, 0.075, 0.080, 0.065, 0.085, 0.095, 0.095, 0.085, 0.070, 0.075, 0.085, 0.100])
_PR_FRAC = _PR_FRAC / _PR_FRAC.sum()


@dataclass
class Climate:
    frame: Frame                # at CLIMATE_RES
    cube: dict[str, np.ndarray]  # var -> uint16 [19*12, h, w], band = (year-2000)*12 + month-1
    bio1: np.ndarray            # 50 m frame, degC, mean annual temperature 2000-2018
    bio12: np.ndarray           # 50 m frame, mm, mean annual precipitation 2000-2018


def _t_sea_level(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return 12.3 - 0.6 * (lat - 48.5) - 0.15 * (lon - 8.5)


def _annual_pr(dem: np.ndarray) -> np.ndarray:
    return 600.0 + 1.2 * np.maximum(dem - 250.0, 0.0)


def build_climate(land: Landscape, seed: int) -> Climate:
    rng = rng_for(seed, "climate")
    f = CLIMATE_RES // int(land.frame.res)
    cf = Frame(land.frame.region, land.frame.margin_m, CLIMATE_RES)
    dem_c = block_mean(land.dem, f)
    lat_c, lon_c = block_mean(land.lat, f), block_mean(land.lon, f)
    ny, nm = len(YEARS), MONTHS
    yrs = np.arange(ny)[:, None]
    m = np.arange(nm)[None, :]
    season = -np.cos(2 * np.pi * m / 12.0)                     # -1 January, +1 July
    anom = 0.03 * (yrs - 9) + rng.normal(0, 1, (ny, nm)) * (1.6 - 0.5 * season)
    anom[YEARS.index(2003), 5:8] += 3.0
    anom[YEARS.index(2018), 3:8] += 2.0
    mult = rng.gamma(3.0, 1 / 3.0, (ny, nm))
    mult[YEARS.index(2003), 5:8] *= 0.4
    mult[YEARS.index(2018), 3:8] *= 0.5
    fields = np.stack([fractal_field(rng, dem_c.shape, 3.5) for _ in range(3)])
    coef = rng.normal(0, 1, (ny, nm, 3)) * 0.12

    t0 = _t_sea_level(lat_c, lon_c) - LAPSE_K_PER_M * dem_c          # annual mean, degC
    amp = 8.8 + 0.3 * (lon_c - 8.5)
    pa = _annual_pr(dem_c)
    n = ny * nm
    cube = {v: np.empty((n,) + dem_c.shape, np.uint16) for v in CLIMATE_VARS}
    for yi in range(ny):
        for mi in range(nm):
            b = yi * nm + mi
            tas = t0 + amp * season[0, mi] + anom[yi, mi]
            spatial = np.exp(np.tensordot(coef[yi, mi], fields, axes=1))
            pr = pa * _PR_FRAC[mi] * mult[yi, mi] * spatial
            dtr = 7.0 + 2.5 * season[0, mi] + 2.0 * (1.0 - min(mult[yi, mi], 2.0))
            cube["tas"][b] = np.round((tas + 273.15) * 10)
            cube["tasmax"][b] = np.round((tas + dtr / 2 + 273.15) * 10)
            cube["tasmin"][b] = np.round((tas - dtr / 2 + 273.15) * 10)
            cube["pr"][b] = np.round(np.clip(pr, 0, 655) * 100)

    bio1 = (_t_sea_level(land.lat, land.lon) - LAPSE_K_PER_M * land.dem + 0.8 * land.heatload
            + float(anom.mean())).astype(np.float32)
    bio12 = (_annual_pr(land.dem) * float((_PR_FRAC[None, :] * mult).sum(1).mean())).astype(np.float32)
    return Climate(frame=cf, cube=cube, bio1=bio1, bio12=bio12)
