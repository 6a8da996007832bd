"""Terrain, settlements, roads, field parcels, soil and land cover on the 50 m grid.

Everything here is computed on the region plus a margin (``Frame``) so that edge cells have
neighbours; the writer crops to the region. Land cover classes follow a CORINE-like legend
(``LANDCOVER``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from affine import Affine
from rasterio import features
from rasterio.warp import transform as warp_transform
from scipy import ndimage
from scipy.spatial import cKDTree

from inference.grid import CELL_M, Region

from .common import fractal_field, rng_for, standardise

# code -> (name, RGB colour)
LANDCOVER: dict[int, tuple[str, tuple[int, int, int]]] = {
    1: ("water", (64, 120, 200)),
    2: ("urban", (200, 60, 60)),
    3: ("cropland", (240, 220, 110)),
    4: ("grassland", (160, 210, 100)),
    5: ("broadleaved forest", (40, 150, 50)),
    6: ("coniferous forest", (20, 90, 50)),
    7: ("shrub and heath", (170, 140, 90)),
    8: ("wetland", (120, 190, 200)),
    9: ("rock and scree", (150, 150, 150)),
    10: ("orchards and vineyards", (220, 150, 60)),
}
WATER, URBAN, CROP, GRASS, BROADLEAF, CONIFER, SHRUB, WETLAND, ROCK, PERMCROP = range(1, 11)
AGRI = (CROP, GRASS, PERMCROP)


@dataclass(frozen=True)
class Frame:
    """The region grown by ``margin_m`` on every side, at resolution ``res``."""

    region: Region
    margin_m: int
    res: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        l, b, r, t = self.region.bounds
        m = self.margin_m
        return (l - m, b - m, r + m, t + m)

    @property
    def transform(self) -> Affine:
        l, _, _, t = self.bounds
        return Affine(self.res, 0.0, l, 0.0, -self.res, t)

    @property
    def shape(self) -> tuple[int, int]:
        l, b, r, t = self.bounds
        return (int(round((t - b) / self.res)), int(round((r - l) / self.res)))

    @property
    def pad(self) -> int:
        """Margin in pixels."""
        return int(round(self.margin_m / self.res))

    def crop(self, a: np.ndarray) -> np.ndarray:
        p = self.pad
        return a[..., p:a.shape[-2] - p, p:a.shape[-1] - p]

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (1-D x along columns, 1-D y along rows)."""
        l, _, _, t = self.bounds
        h, w = self.shape
        return (l + (np.arange(w) + 0.5) * self.res, t - (np.arange(h) + 0.5) * self.res)


@dataclass
class Landscape:
    frame: Frame
    lat: np.ndarray
    lon: np.ndarray
    dem: np.ndarray
    slope: np.ndarray          # degrees
    heatload: np.ndarray       # -1 (cool NE slope) .. 1 (warm SW slope)
    hillshade: np.ndarray      # 0..1, sun from the south-east at 45 deg
    wetness: np.ndarray        # 0 (dry crest) .. 1 (waterlogged)
    soil_ph: np.ndarray
    landcover: np.ndarray      # uint8, LANDCOVER codes
    parcel: np.ndarray         # int32 agricultural parcel id (also defined under forest)
    parcel_hedged: np.ndarray  # bool per parcel
    stand: np.ndarray          # int32 forest stand id
    hedge: np.ndarray          # bool cell holds a hedgerow
    roads: list = field(default_factory=list)   # GeoJSON LineStrings (EPSG:3035)
    towns: np.ndarray = None   # [n, 3]: x, y, radius (m)
    road_mask: np.ndarray = None
    town_core: np.ndarray = None  # bool: dense centre of a large town
    dist_road: np.ndarray = None
    dist_urban: np.ndarray = None
    dist_water: np.ndarray = None
    dist_edge: np.ndarray = None  # distance to the nearest forest / open-land boundary (m)
    hedge_density: np.ndarray = None
    lake: np.ndarray = None
    crop_field: np.ndarray = None  # float 0..1 per parcel: green (0) to ripe (1) in the S2 scene


def _latlon(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    # exact on a coarse lattice, bilinear in between (LAEA is smooth at 50 km scale)
    h, w = frame.shape
    step = 20
    rows = np.unique(np.r_[np.arange(0, h, step), h - 1])
    cols = np.unique(np.r_[np.arange(0, w, step), w - 1])
    xs, ys = frame.xy()
    gx, gy = np.meshgrid(xs[cols], ys[rows])
    lon, lat = warp_transform("EPSG:3035", "EPSG:4326", gx.ravel().tolist(), gy.ravel().tolist())
    lon = np.asarray(lon).reshape(gx.shape)
    lat = np.asarray(lat).reshape(gx.shape)
    rr = np.interp(np.arange(h), rows, np.arange(len(rows)))
    cc = np.interp(np.arange(w), cols, np.arange(len(cols)))
    R, C = np.meshgrid(rr, cc, indexing="ij")
    out = [ndimage.map_coordinates(a, [R, C], order=1).astype(np.float32) for a in (lat, lon)]
    return out[0], out[1]


def _voronoi(rng: np.random.Generator, shape: tuple[int, int], spacing: int) -> np.ndarray:
    """Parcel ids: Voronoi cells of seeds jittered on a ``spacing``-pixel lattice."""
    h, w = shape
    gy, gx = np.meshgrid(np.arange(-1, h // spacing + 2), np.arange(-1, w // spacing + 2), indexing="ij")
    sy = (gy + rng.uniform(0, 1, gy.shape)) * spacing
    sx = (gx + rng.uniform(0, 1, gx.shape)) * spacing
    tree = cKDTree(np.c_[sy.ravel(), sx.ravel()])
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    _, idx = tree.query(np.c_[yy.ravel(), xx.ravel()], workers=2)
    return idx.reshape(h, w).astype(np.int32)


def _polyline(rng, a, b, levels=3, amp=0.12):
    pts = [np.asarray(a, float), np.asarray(b, float)]
    for _ in range(levels):
        new = [pts[0]]
        for p, q in zip(pts[:-1], pts[1:]):
            d = q - p
            n = np.array([-d[1], d[0]])
            mid = (p + q) / 2 + n * rng.normal(0, amp)
            new += [mid, q]
        pts = new
    return {"type": "LineString", "coordinates": [tuple(p) for p in pts]}


def build_landscape(region: Region, seed: int, margin_m: int = 1000) -> Landscape:
    fr = Frame(region, margin_m, CELL_M)
    h, w = fr.shape
    rng = rng_for(seed, "terrain")
    lat, lon = _latlon(fr)

    # --- terrain: fractal relief, a regional tilt, river valleys cut into it
    base = fractal_field(rng, (h, w), beta=3.3)
    large = fractal_field(rng, (h, w), beta=4.0, cutoff=0.01)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tilt = (0.5 - xx / w) * 1.2 + (yy / h - 0.5) * 0.3
    dem = 640 + 150 * base + 120 * large + 140 * tilt
    river_f = fractal_field(rng, (h, w), beta=4.0, cutoff=0.004)
    gy, gx = np.gradient(river_f)
    d_river = np.abs(river_f) / (np.hypot(gx, gy) + 1e-6)   # ~ distance to the zero line, cells
    dem = dem - 110 * np.exp(-((d_river / 14.0) ** 2)) - 40 * np.exp(-((d_river / 40.0) ** 2))
    dem = ndimage.gaussian_filter(dem, 0.7)
    river = d_river < 0.9
    # a few lakes in valley bottoms
    lakes = np.zeros((h, w), bool)
    n_lakes = max(1, int(round(h * w / 250_000 * 1.5)))
    cand = np.flatnonzero((d_river.ravel() > 2) & (d_river.ravel() < 10))
    if cand.size:
        for c in rng.choice(cand, size=min(n_lakes, cand.size), replace=False):
            r0, c0 = divmod(int(c), w)
            rad = rng.uniform(2, 7)
            sl = (slice(max(0, r0 - 12), r0 + 13), slice(max(0, c0 - 12), c0 + 13))
            ly, lx = np.mgrid[sl]
            blob = np.hypot((ly - r0) / rad, (lx - c0) / (rad * rng.uniform(0.6, 1.6)))
            lakes[sl] |= blob + 0.25 * rng.standard_normal(blob.shape) < 1
    water = river | lakes
    dem = np.where(lakes, ndimage.grey_erosion(dem, size=9), dem).astype(np.float32)

    dzdy, dzdx = np.gradient(dem, CELL_M)
    slope_r = np.arctan(np.hypot(dzdx, dzdy))
    # rows run south, so d/drow = -d/dnorth; aspect = downslope direction, clockwise from north
    aspect = np.mod(np.arctan2(-dzdx, dzdy), 2 * np.pi)
    slope = np.degrees(slope_r).astype(np.float32)
    heatload = (np.sin(slope_r) * np.cos(aspect - np.radians(202.5)) * 2.5).clip(-1, 1).astype(np.float32)
    sun_az, sun_alt = np.radians(135.0), np.radians(45.0)
    hillshade = (np.sin(sun_alt) * np.cos(slope_r)
                 + np.cos(sun_alt) * np.sin(slope_r) * np.cos(sun_az - aspect)).clip(0, 1).astype(np.float32)
    rel = dem - ndimage.gaussian_filter(dem, 8)
    wet = 1 / (1 + np.exp(rel / 12.0)) * (1 / (1 + slope / 6.0)) * 1.6
    wet = np.maximum(wet, np.exp(-d_river / 3.0))
    wet = ndimage.gaussian_filter(wet, 1.0).clip(0, 1).astype(np.float32)

    # --- soil: acid on high crystalline / sandstone ground, base-rich lower, alluvium in valleys
    ph = (6.0 - 0.9 * standardise(ndimage.gaussian_filter(dem, 20)) + 0.7 * fractal_field(rng, (h, w), 4.0, 0.01)
          + 0.25 * fractal_field(rng, (h, w), 3.0) + 0.6 * np.exp(-d_river / 4.0))
    ph = ph.clip(3.6, 8.0).astype(np.float32)

    # --- settlements (villages to a small town) on flat, low ground near rivers
    rs = rng_for(seed, "settlements")
    area_km2 = h * w * (CELL_M / 1000) ** 2
    n_towns = max(3, int(area_km2 / 45))
    suit = np.exp(-slope / 4.0) * np.exp(-(dem - dem.min()) / 250.0) * (0.3 + np.exp(-d_river / 20.0)) * ~water
    suit = suit.ravel() / suit.sum()
    towns: list[tuple[float, float, float]] = []
    xs, ys = fr.xy()
    tries = rs.choice(h * w, size=n_towns * 30, p=suit)
    for k in tries:
        r0, c0 = divmod(int(k), w)
        x, y = xs[c0], ys[r0]
        if all(np.hypot(x - tx, y - ty) > 2500 for tx, ty, _ in towns):
            towns.append((x, y, 0.0))
        if len(towns) == n_towns:
            break
    radii = 1900 * (np.arange(1, len(towns) + 1) ** -0.5) * rs.uniform(0.7, 1.2, len(towns))
    radii = np.maximum(radii, 320)
    towns_a = np.array([(x, y, r) for (x, y, _), r in zip(towns, radii)], dtype=np.float64)
    X, Y = np.meshgrid(xs, ys)
    tnoise = fractal_field(rs, (h, w), 3.0)
    urban = np.zeros((h, w), bool)
    core = np.zeros((h, w), bool)
    for x, y, r in towns_a:
        win = (np.abs(Y[:, 0] - y) < 2.2 * r)[:, None] & (np.abs(X[0] - x) < 2.2 * r)[None, :]
        d = np.hypot(X - x, Y - y)
        urban |= win & (d < r * (1 + 0.35 * tnoise))
        if r > 700:
            core |= win & (d < 0.4 * r)
    urban &= ~water

    # --- roads between neighbouring towns and out of the frame
    roads = []
    if len(towns_a) > 1:
        tree = cKDTree(towns_a[:, :2])
        _, nn = tree.query(towns_a[:, :2], k=min(3, len(towns_a)))
        pairs = {tuple(sorted((i, int(j)))) for i in range(len(towns_a)) for j in nn[i, 1:]}
        for i, j in sorted(pairs):
            roads.append(_polyline(rs, towns_a[i, :2], towns_a[j, :2]))
    l, b, r_, t = fr.bounds
    for x, y, _rad in towns_a[: max(2, len(towns_a) // 6)]:
        edge = [(l - 100, y + rs.normal(0, 3000)), (r_ + 100, y + rs.normal(0, 3000)),
                (x + rs.normal(0, 3000), b - 100), (x + rs.normal(0, 3000), t + 100)]
        dists = [abs(x - l), abs(r_ - x), abs(y - b), abs(t - y)]
        roads.append(_polyline(rs, (x, y), edge[int(np.argmin(dists))]))
    road_mask = features.rasterize([(g, 1) for g in roads], out_shape=(h, w), transform=fr.transform,
                                   fill=0, dtype="uint8").astype(bool) if roads else np.zeros((h, w), bool)

    # --- parcels, stands, land cover
    ra = rng_for(seed, "landcover")
    parcel = _voronoi(ra, (h, w), 4)
    stand = _voronoi(ra, (h, w), 10)
    n_par = int(parcel.max()) + 1
    n_std = int(stand.max()) + 1
    forest_f = (0.9 * fractal_field(ra, (h, w), 3.6) + 0.55 * standardise(slope) + 0.5 * standardise(dem)
                - 0.35 * standardise(ph))
    cnt = np.maximum(np.bincount(stand.ravel(), minlength=n_std), 1)
    stand_forest = np.bincount(stand.ravel(), forest_f.ravel(), n_std) / cnt
    forest = 0.45 * forest_f + 0.55 * stand_forest[stand]
    forest = forest > np.quantile(forest, 0.55)  # ~45 % forest
    pc = np.maximum(np.bincount(parcel.ravel(), minlength=n_par), 1)
    p_slope = np.bincount(parcel.ravel(), slope.ravel(), n_par) / pc
    p_wet = np.bincount(parcel.ravel(), wet.ravel(), n_par) / pc
    p_dem = np.bincount(parcel.ravel(), dem.ravel(), n_par) / pc
    p_heat = np.bincount(parcel.ravel(), heatload.ravel(), n_par) / pc
    p_ph = np.bincount(parcel.ravel(), ph.ravel(), n_par) / pc
    logit_crop = 1.3 - 0.28 * p_slope - 3.0 * p_wet - (p_dem - 500) / 250 + 0.4 * (p_ph - 6)
    u = ra.uniform(0, 1, n_par)
    pclass = np.where(u < 1 / (1 + np.exp(-logit_crop)), CROP, GRASS).astype(np.uint8)
    u2 = ra.uniform(0, 1, n_par)
    vine = (p_heat > 0.25) & (p_dem < 520) & (u2 < 0.5)
    pclass[vine] = PERMCROP
    pclass[(u2 > 0.97)] = SHRUB  # abandoned fields becoming scrub
    heath = (p_ph < 4.8) & (p_dem > 650) & (ra.uniform(0, 1, n_par) < 0.25)
    pclass[heath] = SHRUB
    lc = pclass[parcel]
    # orchards around villages
    dist_urban_tmp = ndimage.distance_transform_edt(~urban) * CELL_M
    orch_p = np.bincount(parcel.ravel(), dist_urban_tmp.ravel(), n_par) / pc
    orch = (orch_p < 500) & (ra.uniform(0, 1, n_par) < 0.25)
    lc = np.where(orch[parcel] & (lc != SHRUB), PERMCROP, lc)
    s_dem = np.bincount(stand.ravel(), dem.ravel(), n_std) / cnt
    s_ph = np.bincount(stand.ravel(), ph.ravel(), n_std) / cnt
    logit_con = 0.8 + (s_dem - 600) / 120 - 0.9 * (s_ph - 5.5) + ra.normal(0, 0.8, n_std)
    con = ra.uniform(0, 1, n_std) < 1 / (1 + np.exp(-logit_con))
    lc = np.where(forest, np.where(con[stand], CONIFER, BROADLEAF), lc)
    wetland = (wet > 0.8) & (slope < 3) & ~forest & (fractal_field(ra, (h, w), 3.0) > 0.0)
    lc = np.where(wetland, WETLAND, lc)
    rock = (slope > 17) & (fractal_field(ra, (h, w), 2.5) > 0.2)
    lc = np.where(rock, ROCK, lc)
    lc = np.where(urban, URBAN, lc)
    lc = np.where(water, WATER, lc).astype(np.uint8)

    # hedgerows along the boundaries of hedged parcels in farmland
    hedged = ra.uniform(0, 1, n_par) < np.where(pclass == GRASS, 0.3, 0.12)
    is_agri = np.isin(lc, AGRI)
    bnd = np.zeros((h, w), bool)
    bnd[:-1] |= parcel[:-1] != parcel[1:]
    bnd[:, :-1] |= parcel[:, :-1] != parcel[:, 1:]
    hedge = bnd & is_agri & hedged[parcel]

    dist_road = ndimage.distance_transform_edt(~road_mask) * CELL_M
    dist_urban = ndimage.distance_transform_edt(~urban) * CELL_M
    dist_water = ndimage.distance_transform_edt(~water) * CELL_M
    forest_now = np.isin(lc, (BROADLEAF, CONIFER))
    d_in = ndimage.distance_transform_edt(forest_now)
    d_out = ndimage.distance_transform_edt(~forest_now)
    dist_edge = (np.where(forest_now, d_in, d_out) - 0.5) * CELL_M
    hedge_density = ndimage.uniform_filter(hedge.astype(np.float32), 3)

    return Landscape(
        frame=fr, lat=lat, lon=lon, dem=dem.astype(np.float32), slope=slope, heatload=heatload,
        hillshade=hillshade, wetness=wet, soil_ph=ph, landcover=lc, parcel=parcel,
        parcel_hedged=hedged, stand=stand, hedge=hedge, roads=roads, towns=towns_a,
        road_mask=road_mask, town_core=core & urban, lake=lakes & water,
        dist_road=dist_road.astype(np.float32), dist_urban=dist_urban.astype(np.float32),
        dist_water=dist_water.astype(np.float32), dist_edge=dist_edge.astype(np.float32),
        hedge_density=hedge_density.astype(np.float32), crop_field=ra.uniform(0, 1, n_par).astype(np.float32),
    )
