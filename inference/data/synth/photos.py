"""Geotagged plant photos whose look follows the plant's traits, with PlantTraitNet labels.

Each photo shows one individual with traits drawn from its species' lognormal distributions.
Growth form sets the scene (a tree against the sky, a herb on soil, grass blades, fern fronds);
height sets how much of the frame the plant fills, leaf area the size of leaves (coarse or fine
texture), leaf N makes foliage darker, SLA lighter and yellower. Like real citizen-science
photos, some are blurred, over- or under-exposed, and a few show no plant at all (a wall, a road,
the sky) while still carrying the species' labels: noise for the cleaning loop to find.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .common import rng_for
from .flora import TRAITS, trait_summary

PHOTO_COLUMNS = ("Image", "Longitude", "Latitude", "PFT") + tuple(
    f"{t}_{k}" for t in TRAITS for k in ("median", "sd", "lowerbound", "upperbound"))


def _ellipse(yy, xx, cy, cx, ry, rx, ang=0.0):
    ca, sa = np.cos(ang), np.sin(ang)
    dy, dx = yy - cy, xx - cx
    u = (dx * ca + dy * sa) / rx
    v = (-dx * sa + dy * ca) / ry
    return u * u + v * v <= 1.0


def render(rng: np.random.Generator, form: str, conifer: bool, traits: np.ndarray, size: int = 64,
           plant: bool = True) -> np.ndarray:
    """One RGB uint8 image [size, size, 3] of a plant with ``traits`` (Height, LeafArea, SLA, Leaf_N)."""
    S = size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    img = np.empty((S, S, 3), np.float32)
    if not plant:
        kind = rng.integers(3)
        if kind == 0:   # wall
            img[:] = rng.uniform(120, 200, 3)
            for _ in range(6):
                m = (np.abs(yy - rng.uniform(0, S)) < rng.uniform(1, 6)) | (np.abs(xx - rng.uniform(0, S)) < 1)
                img[m] *= rng.uniform(0.7, 0.9)
        elif kind == 1:  # road
            img[:] = (95, 95, 100)
            img[np.abs(xx - S / 2) < S / 30] = (230, 230, 220)
        else:           # sky
            img[:] = np.stack([140 + yy, 180 + yy * 0.6, 235 + 0 * yy], -1)
        img += rng.normal(0, 6, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)

    h, la, sla, n = np.log(traits)
    fn = np.clip((n - np.log(20)) / 0.5, -1.5, 1.5)
    fs = np.clip((sla - np.log(18)) / 0.5, -1.5, 1.5)
    leaf = np.array([55 - 12 * fn + 18 * fs, 125 - 25 * fn + 22 * fs, 40 - 5 * fn + 4 * fs], np.float32)
    if conifer:
        leaf *= 0.7
    leaf_r = np.clip(np.exp((la - np.log(500)) / 3.5) * S / 18, 0.8, S / 5)   # leaf size in pixels
    if form == "tree":
        img[:] = np.stack([150 + yy * 0.8, 190 + yy * 0.5, 240 + 0 * yy], -1)
        ground = yy > S * 0.85
        img[ground] = (90, 110, 60)
        frac = np.clip(0.35 + 0.12 * (h - np.log(10)), 0.2, 0.8)   # taller tree: smaller, higher crown
        trunk_top = S * (0.85 - frac * 0.55)
        img[(np.abs(xx - S / 2) < S / 28 + 1) & (yy > trunk_top) & (yy < S * 0.9)] = (90, 65, 40)
        cy, ry, rx = trunk_top - S * 0.12, S * 0.25 * (1.2 - frac * 0.5), S * 0.28 * (1.2 - frac * 0.5)
        if conifer:
            crown = (yy < trunk_top + 2) & (yy > cy - ry * 1.6) & (np.abs(xx - S / 2) < (yy - (cy - ry * 1.6)) * 0.45)
        else:
            crown = _ellipse(yy, xx, cy, S / 2, ry, rx)
        img[crown] = leaf * 0.8
        for _ in range(int(np.clip(60 / leaf_r, 10, 120))):
            py, px = rng.uniform(cy - ry, cy + ry), rng.uniform(S / 2 - rx, S / 2 + rx)
            m = _ellipse(yy, xx, py, px, leaf_r, leaf_r * 0.6, rng.uniform(0, np.pi)) & crown
            img[m] = leaf * rng.uniform(0.85, 1.15)
    else:
        img[:] = np.stack([110 + 0 * yy, 85 + 0 * yy, 55 + 0 * yy], -1) * rng.uniform(0.8, 1.1)
        img += rng.normal(0, 12, (S, S, 1))
        top = S * (1 - np.clip(0.25 + 0.18 * (h - np.log(0.1)), 0.15, 0.95))
        if form == "grass":
            for _ in range(25):
                x0 = rng.uniform(S * 0.2, S * 0.8)
                lean = rng.normal(0, 0.15)
                m = (yy > top + rng.uniform(0, S * 0.1)) & (np.abs(xx - x0 - (S - yy) * lean) < 0.8 + leaf_r * 0.15)
                img[m] = leaf * rng.uniform(0.85, 1.15)
        else:
            m = (np.abs(xx - S / 2) < 1.0) & (yy > top)
            img[m] = leaf * 0.7
            nl = 10 if form == "fern" else int(np.clip(4 + 2 * (h + 2), 3, 14))
            for k in range(nl):
                py = top + (S - top) * (k + 0.5) / nl
                side = 1 if k % 2 else -1
                if form == "fern":
                    rx, ry = (S - py) * 0.35 + 2, 1.2
                else:
                    rx, ry = leaf_r * 1.3, leaf_r * 0.7
                mm = _ellipse(yy, xx, py, S / 2 + side * rx * 0.9, ry, rx, side * 0.3)
                img[mm] = leaf * rng.uniform(0.85, 1.15)
            if form in ("herb", "shrub") and rng.uniform() < 0.6:
                col = np.array([(230, 220, 60), (240, 240, 245), (160, 80, 200), (220, 60, 60)][rng.integers(4)], np.float32)
                img[_ellipse(yy, xx, top, S / 2, 2.5, 2.5)] = col
    return np.clip(img, 0, 255).astype(np.uint8)


def write_photos(out: Path, seed: int, x, y, lon, lat, sp_idx, species: dict, size: int = 64) -> dict:
    """Render photos of individuals of ``species[sp_idx]`` taken at (lon, lat); write CSVs and JPEGs."""
    rng = rng_for(seed, "photos")
    n = len(sp_idx)
    ts = trait_summary(species)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    mu, sd = species["trait_logmean"], species["trait_logsd"]
    rows, truth = [], []
    n_bad = 0
    for i in range(n):
        s = int(sp_idx[i])
        tr = np.exp(mu[s] + sd[s] * rng.standard_normal(4))
        plant = rng.uniform() > 0.04
        im = render(rng, species["growth_form"][s], bool(species["conifer"][s]), tr, size, plant)
        blur = 0.0
        if rng.uniform() < 0.25:
            blur = float(rng.uniform(0.8, 2.0))
            im = ndimage.gaussian_filter(im.astype(np.float32), (blur, blur, 0))
        im = np.clip(im.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.normal(0, 5, im.shape), 0, 255)
        pid = f"{i:07d}"
        rel = f"images/{pid[-2:]}/{pid}.jpg"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im.astype(np.uint8)).save(out / rel, quality=90)
        n_bad += not plant
        rows.append([rel, f"{lon[i]:.6f}", f"{lat[i]:.6f}", species["pft"][s]]
                    + [f"{ts[f'{t}_{k}'][s]:.4g}" for t in TRAITS for k in ("median", "sd", "lowerbound", "upperbound")])
        truth.append([rel, int(species["id"][s]), int(plant), f"{blur:.2f}", species["growth_form"][s]]
                     + [f"{v:.4g}" for v in tr])
    for name, header, data in (("planttraitnet.csv", PHOTO_COLUMNS, rows),
                               ("photos_truth.csv", ("Image", "speciesId", "is_plant", "blur", "growth_form") + TRAITS, truth)):
        tmp = out / (name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(header)
            wr.writerows(data)
        tmp.replace(out / name)
    return {"photos": n, "non_plant": n_bad}
