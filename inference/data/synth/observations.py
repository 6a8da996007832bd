"""Presence-absence surveys (GeoPlant PA format) and presence-only records with observer bias.

Truth: ``p`` = probability that a species is recorded in a standard 100 m2 survey plot placed in
the cell. A plot of area A records it with 1 - (1 - p)^(A / 100) (more area, more species).
PA surveys favour semi-natural vegetation, as phytosociologists do, and come in campaigns
(clusters). Presence-only records follow observer effort: near roads and towns, hardly any far
from access; the species recorded is drawn in proportion to p x detectability.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from rasterio.warp import transform as warp_transform

from .common import fractal_field, rng_for
from .flora import design_matrix, probability
from .landscape import BROADLEAF, CONIFER, CROP, GRASS, PERMCROP, ROCK, SHRUB, URBAN, WATER, WETLAND

PA_COLUMNS = ("lon", "lat", "year", "geoUncertaintyInM", "areaInM2", "region", "country", "speciesId", "surveyId")
PO_COLUMNS = ("publisher", "year", "month", "day", "lat", "lon", "geoUncertaintyInM", "taxonRank", "date",
              "dayOfYear", "speciesId", "surveyId")
_PA_LC_WEIGHT = np.zeros(11)
_PA_LC_WEIGHT[[BROADLEAF, CONIFER, GRASS, SHRUB, WETLAND, ROCK, CROP, PERMCROP, URBAN, WATER]] = (
    0.7, 0.5, 1.0, 1.5, 2.5, 1.5, 0.12, 0.3, 0.02, 0.0)


def effort_surface(dist_road: np.ndarray, dist_urban: np.ndarray, landcover: np.ndarray) -> np.ndarray:
    """Relative presence-only observer effort per cell (access by road, people in towns)."""
    w = 0.02 + np.exp(-dist_road / 200.0) + 1.5 * np.exp(-dist_urban / 400.0)
    return np.where(landcover == WATER, 0.0, w)


def _cells_xy(rng, idx, shape, transform, res):
    r, c = np.divmod(idx, shape[1])
    x = transform.c + (c + rng.uniform(0, 1, idx.size)) * res
    y = transform.f - (r + rng.uniform(0, 1, idx.size)) * res
    return x, y


def _lonlat(x, y):
    lon, lat = warp_transform("EPSG:3035", "EPSG:4326", list(map(float, x)), list(map(float, y)))
    return np.round(np.asarray(lon), 6), np.round(np.asarray(lat), 6)


def _species_probs(pred, hab, idx, W, chunk=4096):
    """Yield (start, p [n_chunk, S]) for the cells ``idx`` (flat indices into the region grid)."""
    P = pred.reshape(pred.shape[0], -1)
    hb = hab.ravel()
    for s in range(0, idx.size, chunk):
        ii = idx[s:s + chunk]
        yield s, probability(design_matrix(P[:, ii], hb[ii]), W).T


def write_pa(path: Path, seed: int, n_surveys: int, pred, hab, lc, W, species_ids, transform, res,
             region_name: str, country: str) -> dict:
    rng = rng_for(seed, "pa_surveys")
    h, w = lc.shape
    clusters = np.exp(1.5 * fractal_field(rng, (h, w), 3.5))
    wgt = (_PA_LC_WEIGHT[lc] * clusters).ravel()
    idx = rng.choice(h * w, size=n_surveys, p=wgt / wgt.sum())
    x, y = _cells_xy(rng, idx, (h, w), transform, res)
    lon, lat = _lonlat(x, y)
    year = rng.integers(2017, 2022, n_surveys)
    unc = rng.choice([5, 10, 20, 50, 100], size=n_surveys, p=[0.2, 0.3, 0.25, 0.15, 0.1])
    area = rng.choice([16, 25, 50, 100, 200, 400], size=n_surveys, p=[0.1, 0.15, 0.2, 0.35, 0.12, 0.08])
    sid0 = int(rng.integers(1_000_000, 2_000_000))
    rows = 0
    empty = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(PA_COLUMNS)
        for s, p in _species_probs(pred, hab, idx, W):
            n = p.shape[0]
            pa = 1 - (1 - p) ** (area[s:s + n, None] / 100.0)
            pres = rng.uniform(0, 1, pa.shape) < pa
            for k in range(n):
                i = s + k
                sp = np.flatnonzero(pres[k])
                if sp.size == 0:
                    empty += 1
                    continue
                head = (f"{lon[i]:.6f}", f"{lat[i]:.6f}", int(year[i]), int(unc[i]), int(area[i]), region_name, country)
                wr.writerows(head + (int(species_ids[j]), sid0 + i) for j in sp)
                rows += sp.size
    tmp.replace(path)
    return {"surveys": int(n_surveys - empty), "rows": int(rows), "empty_surveys_dropped": int(empty)}


def sample_po(seed: int, n: int, pred, hab, lc, dist_road, dist_urban, W, detect, transform, res,
              name: str = "po_records"):
    """Presence-only draws: (x, y, flat cell index, species index, uncertainty m) arrays."""
    rng = rng_for(seed, name)
    h, w = lc.shape
    eff = effort_surface(dist_road, dist_urban, lc).ravel()
    idx = rng.choice(h * w, size=n, p=eff / eff.sum())
    sp = np.empty(n, np.int64)
    for s, p in _species_probs(pred, hab, idx, W):
        q = p * detect[None, :]
        cum = np.cumsum(q, axis=1)
        u = rng.uniform(0, 1, q.shape[0]) * cum[:, -1]
        sp[s:s + q.shape[0]] = np.minimum((cum < u[:, None]).sum(1), q.shape[1] - 1)
    x, y = _cells_xy(rng, idx, (h, w), transform, res)
    unc = np.round(np.exp(rng.normal(np.log(30), 1.2, n))).clip(1, 10_000)
    jit = np.minimum(unc, 250) / 2
    left, top = transform.c, transform.f
    # stay 1 m inside the region so that 6-decimal lon/lat still fall in it
    x = np.clip(x + rng.normal(0, 1, n) * jit, left + 1, left + w * res - 1)
    y = np.clip(y + rng.normal(0, 1, n) * jit, top - h * res + 1, top - 1)
    return x, y, idx, sp, unc


def write_po(path: Path, seed: int, n: int, pred, hab, lc, dist_road, dist_urban, W, detect, species_ids,
             transform, res) -> dict:
    rng = rng_for(seed, "po_dates")
    x, y, idx, sp, unc = sample_po(seed, n, pred, hab, lc, dist_road, dist_urban, W, detect, transform, res)
    lon, lat = _lonlat(x, y)
    yrs = np.arange(2000, 2022)
    pw = np.exp(0.15 * (yrs - 2000))
    year = rng.choice(yrs, size=n, p=pw / pw.sum())
    doy = np.clip(np.round(rng.normal(170, 45, n)), 1, 365).astype(int)
    dates = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]") + (doy - 1).astype("timedelta64[D]")
    month = dates.astype("datetime64[M]").astype(int) % 12 + 1
    day = (dates - dates.astype("datetime64[M]")).astype(int) + 1
    pubs = np.array(["iNaturalist", "Pl@ntNet", "Observation.org", "Virtual herbarium"])
    pub = pubs[rng.choice(4, size=n, p=[0.35, 0.35, 0.2, 0.1])]
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(PO_COLUMNS)
        for i in range(n):
            wr.writerow((pub[i], int(year[i]), int(month[i]), int(day[i]), f"{lat[i]:.6f}", f"{lon[i]:.6f}",
                         int(unc[i]), "SPECIES", str(dates[i]), int(doy[i]), int(species_ids[sp[i]]), 5_000_000 + i))
    tmp.replace(path)
    return {"records": int(n)}
