"""The true EUNIS level-3 habitat of every 50 m cell.

Land cover fixes the formation (forest, grassland, mire, ...); within it each candidate type has an
environmental optimum (soil pH, wetness, elevation, exposure, distance to water or town, forest
edge) and the best-scoring type wins. Stands (forest) and parcels (farmland) carry one random
preference each, so that a habitat covers whole management units; together with the smooth
environment this makes habitats spatially coherent. Assemblages follow in ``flora``: every species
has habitat affinities, so each type has its characteristic and diagnostic species.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .. import eunis
from .common import fractal_field, rng_for
from .landscape import BROADLEAF, CONIFER, CROP, GRASS, PERMCROP, ROCK, SHRUB, URBAN, WATER, WETLAND, Landscape

# code -> (land-cover classes, bias, {variable: (optimum, tolerance)}, unit: "stand" | "parcel" | None)
HABITAT_RULES: dict[str, tuple[tuple[int, ...], float, dict[str, tuple[float, float]]]] = {
    "T17": ((BROADLEAF,), 0.3, {"ph": (6.8, 1.0), "elev": (600, 300), "wet": (0.4, 0.3)}),
    "T18": ((BROADLEAF,), 0.3, {"ph": (4.5, 0.8), "elev": (650, 300)}),
    "T1E": ((BROADLEAF,), 0.2, {"elev": (380, 150), "ph": (6.5, 1.2), "wet": (0.45, 0.3)}),
    "T19": ((BROADLEAF,), 0.0, {"heat": (0.6, 0.35), "elev": (400, 200), "ph": (7.0, 1.2), "wet": (0.15, 0.2)}),
    "T1B": ((BROADLEAF,), 0.0, {"ph": (4.4, 0.7), "elev": (350, 180), "wet": (0.3, 0.3)}),
    "T13": ((BROADLEAF,), 0.0, {"dwater": (0, 150), "wet": (0.8, 0.2), "ph": (7.0, 1.5)}),
    "T12": ((BROADLEAF,), 0.0, {"wet": (0.9, 0.15), "dwater": (0, 100), "ph": (5.5, 1.5)}),
    "T1F": ((BROADLEAF,), 0.0, {"slope": (25, 7), "wet": (0.5, 0.3)}),
    "T41": ((BROADLEAF, CONIFER), -2.2, {}),
    "T43": ((BROADLEAF, CONIFER), -2.4, {}),
    "T31": ((CONIFER,), 0.2, {"elev": (900, 150), "ph": (4.5, 1.2)}),
    "T32": ((CONIFER,), 0.2, {"elev": (750, 150), "wet": (0.55, 0.3), "ph": (5.5, 1.5)}),
    "T36": ((CONIFER,), 0.0, {"wet": (0.15, 0.2), "ph": (4.5, 1.2), "heat": (0.3, 0.5)}),
    "T3M": ((CONIFER,), -0.3, {"elev": (500, 250)}),
    "R22": ((GRASS,), 0.3, {"elev": (420, 200), "wet": (0.45, 0.25), "ph": (6.5, 1.5)}),
    "R23": ((GRASS,), 0.2, {"elev": (850, 150), "wet": (0.5, 0.3)}),
    "R21": ((GRASS,), 0.0, {"wet": (0.5, 0.3)}),
    "R35": ((GRASS,), 0.0, {"wet": (0.85, 0.15), "dwater": (0, 300)}),
    "R36": ((GRASS,), -0.3, {"wet": (0.75, 0.2)}),
    "R37": ((GRASS,), 0.0, {"wet": (0.85, 0.2), "ph": (4.5, 0.8)}),
    "R1A": ((GRASS,), 0.0, {"heat": (0.6, 0.35), "ph": (7.5, 0.6), "wet": (0.1, 0.2)}),
    "R1M": ((GRASS,), 0.0, {"ph": (4.3, 0.6), "elev": (850, 200), "wet": (0.35, 0.3)}),
    "V31": ((GRASS,), 0.3, {"durban": (0, 1500), "elev": (400, 250)}),
    "R51": ((GRASS,), -0.2, {"edge": (0, 60), "ph": (7.0, 1.0), "heat": (0.3, 0.5)}),
    "R52": ((GRASS,), -0.2, {"edge": (0, 60), "ph": (4.5, 0.8)}),
    "R55": ((GRASS,), -0.3, {"dwater": (0, 100), "wet": (0.8, 0.2)}),
    "V11": ((CROP,), 0.5, {"elev": (400, 250), "slope": (0, 6)}),
    "V13": ((CROP,), 0.0, {"elev": (750, 200), "ph": (5.0, 1.2)}),
    "V15": ((CROP,), -1.5, {}),
    "V54": ((PERMCROP,), 0.0, {"heat": (0.5, 0.4)}),
    "V61": ((PERMCROP,), 0.0, {"durban": (0, 800)}),
    "S42": ((SHRUB,), 0.0, {"ph": (4.2, 0.6), "wet": (0.2, 0.3)}),
    "S41": ((SHRUB,), 0.0, {"ph": (4.2, 0.7), "wet": (0.8, 0.2)}),
    "S32": ((SHRUB,), 0.0, {}),
    "S35": ((SHRUB,), 0.0, {"ph": (7.0, 1.0), "heat": (0.4, 0.5)}),
    "S37": ((SHRUB,), 0.0, {"ph": (6.0, 1.5), "slope": (10, 10)}),
    "S91": ((SHRUB,), 0.0, {"dwater": (0, 150)}),
    "Q11": ((WETLAND,), 0.0, {"ph": (4.0, 0.5), "elev": (850, 200)}),
    "Q22": ((WETLAND,), 0.0, {"ph": (4.8, 0.6)}),
    "Q24": ((WETLAND,), 0.0, {"ph": (5.8, 0.8)}),
    "Q43": ((WETLAND,), 0.0, {"ph": (7.0, 0.8)}),
    "Q51": ((WETLAND,), 0.0, {"dwater": (0, 150), "elev": (350, 250)}),
    "Q53": ((WETLAND,), 0.0, {"wet": (0.95, 0.1), "ph": (6.5, 1.0)}),
    "S92": ((WETLAND,), -0.8, {}),
    "U23": ((ROCK,), 0.0, {"ph": (4.5, 1.0), "slope": (25, 10)}),
    "U27": ((ROCK,), 0.0, {"ph": (7.0, 1.0), "slope": (25, 10)}),
    "U33": ((ROCK,), 0.0, {"slope": (38, 8), "ph": (4.5, 1.0)}),
    "U37": ((ROCK,), 0.0, {"slope": (38, 8), "ph": (7.0, 1.0)}),
    "C1.3": ((WATER,), 0.0, {"lake": (1, 0.3)}),
    "C2.3": ((WATER,), 0.0, {"lake": (0, 0.3)}),
    "J1.1": ((URBAN,), 0.0, {"core": (1, 0.3)}),
    "J1.2": ((URBAN,), 0.5, {"core": (0, 0.3)}),
    "V22": ((URBAN,), 0.0, {"udepth": (0, 70), "core": (0, 0.3)}),
}
HABITAT_CODES: tuple[str, ...] = tuple(HABITAT_RULES)
NODATA = 255


def habitat_groups() -> dict[str, list[int]]:
    """Level-2 EUNIS group -> indices of the level-3 types used (for assemblage affinities)."""
    out: dict[str, list[int]] = {}
    for i, c in enumerate(HABITAT_CODES):
        out.setdefault(eunis.at_level(c, 2), []).append(i)
    return out


def build_habitats(land: Landscape, seed: int) -> np.ndarray:
    """uint8 raster of indices into ``HABITAT_CODES`` on the landscape frame."""
    rng = rng_for(seed, "habitats")

    urban = land.landcover == URBAN
    env = {
        "elev": land.dem, "ph": land.soil_ph, "wet": land.wetness, "heat": land.heatload,
        "slope": land.slope, "dwater": land.dist_water, "durban": land.dist_urban,
        "edge": land.dist_edge, "lake": land.lake.astype(np.float32), "core": land.town_core.astype(np.float32),
        "udepth": (ndimage.distance_transform_edt(urban) * 50.0).astype(np.float32),
    }
    shared = np.stack([fractal_field(rng, land.dem.shape, 3.0) for _ in range(3)])
    n_par = int(land.parcel.max()) + 1
    n_std = int(land.stand.max()) + 1
    out = np.full(land.dem.shape, NODATA, np.uint8)
    for lc in np.unique(land.landcover):
        cand = [i for i, c in enumerate(HABITAT_CODES) if lc in HABITAT_RULES[c][0]]
        if not cand:
            continue
        idx = np.flatnonzero(land.landcover.ravel() == lc)
        unit = land.stand if lc in (BROADLEAF, CONIFER) else land.parcel
        unit_v = unit.ravel()[idx]
        n_unit = n_std if lc in (BROADLEAF, CONIFER) else n_par
        scores = np.empty((len(cand), idx.size), np.float32)
        for k, i in enumerate(cand):
            _, bias, prefs = HABITAT_RULES[HABITAT_CODES[i]]
            s = np.full(idx.size, bias, np.float32)
            for var, (opt, tol) in prefs.items():
                v = env[var].ravel()[idx]
                s -= 0.5 * ((v - opt) / tol) ** 2
            s += 0.5 * np.tensordot(rng.normal(0, 1, 3).astype(np.float32), shared.reshape(3, -1)[:, idx], axes=1)
            s += rng.normal(0, 0.7, n_unit).astype(np.float32)[unit_v]
            scores[k] = s
        out.ravel()[idx] = np.asarray(cand, np.uint8)[scores.argmax(0)]
    return out
