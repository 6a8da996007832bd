"""Virtual Europe: generate a synthetic region with known truth, load it, extract model inputs.

``generate_region`` places a rectangle of whole 25 km meta-tiles at real EPSG:3035 coordinates and
writes terrain, climate, land cover, Sentinel-2 / Landsat-like imagery, a virtual flora with its
niches, EUNIS habitats, PA surveys, presence-only records and trait-labelled plant photos, in the
shapes and units of the real inputs (see GENERATOR.md). ``region.json`` is written last: a directory
without it is an unfinished region and ``load_region`` refuses it.

Default place: lower-left (4 200 000, 2 800 000) m, i.e. 8.37-9.03 E, 48.30-48.76 N, the eastern
Northern Black Forest and the Gaeu plateaus around Freudenstadt, Nagold and Horb
(Baden-Wuerttemberg, Germany; continental biogeographic region). Terrain is synthetic, with the
relief of such low mountains (about 150-1100 m).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from backend.core.atomic import write_json
from backend.core.errors import RegionError
from inference.grid import CELL_M, CELLS_PER_METATILE, METATILE_M, MetaTile, Region

from . import eunis
from .interface import Species, TraitDistribution, TruthLayers
from .raster_region import FORMAT as RASTER_FORMAT
from .raster_region import load_raster_region
from .synth import climate as _climate
from .synth import flora as _flora
from .synth import habitats as _habitats
from .synth import imagery as _imagery
from .synth import landscape as _landscape
from .synth import observations as _obs
from .synth import photos as _photos
from .synth.common import rng_for, write_geotiff

FORMAT_VERSION = 1
DEFAULT_PLACE = {"name": "Northern Black Forest and Gaeu (Freudenstadt - Nagold - Horb)",
                 "country": "Germany", "bioregion": "CONTINENTAL"}
S2_PATCH = 128
FILES = {
    "dem": "env/dem.tif", "landcover": "env/landcover.tif", "habitat": "env/habitat.tif",
    "predictors": "env/predictors.tif", "roads": "env/roads.tif",
    "s2": "s2/s2_rgbnir_10m.tif", "landsat": "landsat/landsat_quarterly_100m.tif",
    **{f"climate_{v}": f"climate/chelsa_{v}_monthly_2000_2018_250m.tif" for v in _climate.CLIMATE_VARS},
    "species": "species/species.csv", "niche": "species/niche.npz", "habitats": "species/habitats.csv",
    "pa": "observations/pa_surveys.csv", "po": "observations/po_records.csv",
    "photos": "photos/planttraitnet.csv", "photos_truth": "photos/photos_truth.csv",
}
_SPECIES_COLUMNS = ("id", "name", "genus", "family", "guild", "growth_form", "pft", "iucn", "eu_directive",
                    "invasive", "woody", "tree", "endemic", "conifer", "target_prevalence", "detectability")




# ---------------------------------------------------------------------------------------------
# generation

def generate_region(out_dir, *, seed: int = 0, x0: float = 4_200_000, y0: float = 2_800_000, nx: int = 2,
                    ny: int = 2, n_species: int = 300, progress: Callable[[str, float], None] | None = None,
                    n_surveys: int | None = None, n_po: int | None = None, n_photos: int | None = None,
                    photo_size: int = 64, margin_m: int = 1000, country: str | None = None,
                    bioregion: str | None = None) -> GeneratedRegion:
    """Generate a Virtual Europe region of ``nx`` x ``ny`` meta-tiles under ``out_dir``.

    ``(x0, y0)`` is snapped down to the 25 km grid. Observation counts default to densities per
    km2: 1.2 PA surveys, 8 presence-only records, 0.8 photos. Deterministic for ``seed``.
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "region.json").unlink(missing_ok=True)   # an old finished marker must not survive
    if margin_m < 700 or margin_m % 250:
        raise ValueError("margin_m must be a multiple of 250 m and at least 700 m (S2 patches of edge cells)")
    region = Region.from_corner(x0, y0, nx, ny)
    area_km2 = nx * ny * (METATILE_M / 1000) ** 2
    n_surveys = int(round(1.2 * area_km2)) if n_surveys is None else int(n_surveys)
    n_po = int(round(8 * area_km2)) if n_po is None else int(n_po)
    n_photos = int(round(0.8 * area_km2)) if n_photos is None else int(n_photos)
    default_place = region.origin == MetaTile.containing(4_200_000, 2_800_000)
    country = country or (DEFAULT_PLACE["country"] if default_place else "Unknown")
    bioregion = bioregion or (DEFAULT_PLACE["bioregion"] if default_place else "CONTINENTAL")
    timings: dict[str, float] = {}

    def step(name: str, frac: float, t0: float) -> float:
        t = time.perf_counter()
        timings[name] = round(t - t0, 2)
        if progress:
            progress(name, frac)
        return t

    t = time.perf_counter()
    land = _landscape.build_landscape(region, seed, margin_m)
    t = step("landscape", 0.1, t)
    clim = _climate.build_climate(land, seed)
    t = step("climate", 0.15, t)
    hab_f = _habitats.build_habitats(land, seed)
    t = step("habitats", 0.2, t)

    fr = land.frame
    full = {"bio1": clim.bio1, "bio12": clim.bio12, "slope": land.slope, "heatload": land.heatload,
            "wetness": land.wetness, "soil_ph": land.soil_ph, "dist_road": land.dist_road,
            "dist_urban": land.dist_urban, "dist_water": land.dist_water, "dist_edge": land.dist_edge,
            "hedge_density": land.hedge_density}
    pred = np.stack([fr.crop(full[k]) for k in _flora.PREDICTORS]).astype(np.float32)
    hab = fr.crop(hab_f)
    lc = fr.crop(land.landcover)
    tr50 = region.transform(CELL_M)

    # rasters on the region grid (50 m)
    write_geotiff(out / FILES["dem"], fr.crop(land.dem), tr50, nodata=-9999.0, tags={"units": "m"})
    write_geotiff(out / FILES["landcover"], lc, tr50, nodata=0,
                  colormap={k: v[1] + (255,) for k, v in _landscape.LANDCOVER.items()},
                  tags={"classes": json.dumps({k: v[0] for k, v in _landscape.LANDCOVER.items()})})
    rng_col = rng_for(0, "habitat_colours")
    write_geotiff(out / FILES["habitat"], hab, tr50, nodata=_habitats.NODATA,
                  colormap={i: tuple(int(v) for v in rng_col.integers(30, 230, 3)) + (255,)
                            for i in range(len(_habitats.HABITAT_CODES))},
                  tags={"codes": json.dumps(_habitats.HABITAT_CODES)})
    write_geotiff(out / FILES["predictors"], pred, tr50, descriptions=list(_flora.PREDICTORS),
                  tags={"units": "degC, mm, deg, -1..1, 0..1, pH, m, m, m, m, 0..1"})
    write_geotiff(out / FILES["roads"], fr.crop(land.road_mask).astype(np.uint8), tr50, nodata=255)
    t = step("env_rasters", 0.25, t)

    # climate cubes (250 m, margin)
    for v in _climate.CLIMATE_VARS:
        desc = [f"{v}_{y}_{m:02d}" for y in _climate.YEARS for m in range(1, 13)]
        scale, offset, units = (0.01, 0.0, "kg m-2 month-1") if v == "pr" else (0.1, -273.15, "degC")
        p = write_geotiff(out / FILES[f"climate_{v}"], clim.cube[v], clim.frame.transform, descriptions=desc,
                          tags={"units": units, "scale_factor": scale, "add_offset": offset,
                                "band_order": "(year-2000)*12 + month-1"}, blocksize=64)
        with rasterio.open(p, "r+") as ds:
            ds.scales = [scale] * ds.count
            ds.offsets = [offset] * ds.count
    t = step("climate_rasters", 0.3, t)

    ls_frame, ls = _imagery.landsat_cube(land, seed)
    desc = [f"{b}_q{q + 1}_{y}" for b in _imagery.LANDSAT_BANDS for q in range(4) for y in _imagery.LANDSAT_YEARS]
    write_geotiff(out / FILES["landsat"], ls, ls_frame.transform, descriptions=desc, blocksize=128,
                  tags={"units": "reflectance x 255", "band_order": "(band*4 + quarter)*21 + (year-2000)"})
    del ls
    t = step("landsat", 0.45, t)
    _imagery.write_s2(out / FILES["s2"], land, seed)
    t = step("sentinel2", 0.6, t)

    # flora
    sp = _flora.make_species(n_species, seed)
    rs = rng_for(seed, "calibration")
    ncell = hab.size
    sample = rs.choice(ncell, size=min(ncell, 20_000), replace=False)
    Fs = _flora.design_matrix(pred.reshape(len(_flora.PREDICTORS), -1)[:, sample], hab.ravel()[sample])
    b0 = _flora.calibrate_intercepts(sp, Fs)
    W = _flora.weights(sp, b0)
    _write_species(out, sp, b0, W)
    t = step("flora", 0.7, t)

    stats = {}
    stats["pa"] = _obs.write_pa(out / FILES["pa"], seed, n_surveys, pred, hab, lc, W, sp["id"], tr50, CELL_M,
                                bioregion, country)
    dr, du = pred[_flora.PREDICTORS.index("dist_road")], pred[_flora.PREDICTORS.index("dist_urban")]
    stats["po"] = _obs.write_po(out / FILES["po"], seed, n_po, pred, hab, lc, dr, du, W, sp["detectability"],
                                sp["id"], tr50, CELL_M)
    t = step("observations", 0.85, t)
    x, y, _, sidx, _ = _obs.sample_po(seed, n_photos, pred, hab, lc, dr, du, W, sp["detectability"], tr50,
                                      CELL_M, name="photo_records")
    lon, lat = _obs._lonlat(x, y)
    stats["photos"] = _photos.write_photos(out / "photos", seed, x, y, lon, lat, sidx, sp, photo_size)
    t = step("photos", 0.95, t)

    meta = {
        "format": "geoflora-virtual-europe", "version": FORMAT_VERSION, "seed": int(seed),
        "crs": "EPSG:3035", "origin": [region.origin.x0, region.origin.y0], "nx": nx, "ny": ny,
        "bounds": list(region.bounds), "margin_m": margin_m,
        "place": {**DEFAULT_PLACE, "country": country, "bioregion": bioregion} if default_place
        else {"name": "virtual", "country": country, "bioregion": bioregion},
        "metatiles": [m.id for m in region.metatiles()],
        "resolution_m": {"cell": CELL_M, "s2": _imagery.S2_RES, "landsat": _imagery.LANDSAT_RES,
                         "climate": _climate.CLIMATE_RES},
        "files": FILES, "n_species": int(n_species), "habitat_codes": list(_habitats.HABITAT_CODES),
        "predictors": list(_flora.PREDICTORS), "climate_vars": list(_climate.CLIMATE_VARS),
        "climate_years": [_climate.YEARS[0], _climate.YEARS[-1]],
        "landsat_bands": list(_imagery.LANDSAT_BANDS),
        "landsat_years": [_imagery.LANDSAT_YEARS[0], _imagery.LANDSAT_YEARS[-1]],
        "s2_bands": list(_imagery.S2_BANDS), "counts": stats,
        "truth": "p = sigmoid(design_matrix(predictors, habitat) @ W): chance of recording the species in a "
                 "100 m2 survey plot in the cell; a plot of area A records it with 1-(1-p)^(A/100)",
        "timings_s": timings, "generation_s": round(time.perf_counter() - t_start, 2),
    }
    write_json(out / "region.json", meta, indent=2)  # last: a region is complete when it has one
    if progress:
        progress("done", 1.0)
    return load_region(out)


def _write_species(out: Path, sp: dict, b0: np.ndarray, W: np.ndarray) -> None:
    ts = _flora.trait_summary(sp)
    p = out / FILES["species"]
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tcols = list(ts)
    with open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(_SPECIES_COLUMNS + tuple(tcols))
        for i in range(len(sp["id"])):
            row = []
            for c in _SPECIES_COLUMNS:
                v = sp[c][i]
                row.append(int(v) if isinstance(v, (bool, np.bool_)) else (f"{v:.6g}" if isinstance(v, float) else v))
            wr.writerow(row + [f"{ts[c][i]:.5g}" for c in tcols])
    tmp.replace(p)
    np.savez_compressed(out / FILES["niche"], W=W, intercept=b0, mu=sp["mu"], sd=sp["sd"], use=sp["use"],
                        beta=sp["beta"], alpha=sp["alpha"], trait_logmean=sp["trait_logmean"],
                        trait_logsd=sp["trait_logsd"], species_id=sp["id"],
                        z_vars=np.array(list(_flora.Z_VARS)), g_vars=np.array(list(_flora.G_VARS)),
                        habitat_codes=np.array(_habitats.HABITAT_CODES))
    hp = out / FILES["habitats"]
    with open(hp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(("index", "code", "name", "level2", "level1", "landcover"))
        for i, c in enumerate(_habitats.HABITAT_CODES):
            h = eunis.habitat(c)
            lcs = "|".join(_landscape.LANDCOVER[k][0] for k in _habitats.HABITAT_RULES[c][0])
            wr.writerow((i, c, h.name, eunis.at_level(c, 2), eunis.at_level(c, 1), lcs))


# ---------------------------------------------------------------------------------------------
# loading and extraction

class _Raster:
    """A raster read for point extraction: cached whole as [rows, cols, bands] when small enough."""

    def __init__(self, path: Path, cache_limit: int, res: float | None = None):
        self.path = path
        with rasterio.open(path) as ds:
            self.transform, self.shape, self.count = ds.transform, (ds.height, ds.width), ds.count
            self.dtype = np.dtype(ds.dtypes[0])
            crs = ds.crs
        # read by transform only: refuse a raster that is not on the EPSG:3035 grid it claims
        if crs is None or crs.to_epsg() != 3035:
            raise RegionError(f"{path}: expected an EPSG:3035 raster, found {crs or 'no CRS'} "
                              f"(a generated region's rasters are in EPSG:3035; for other CRS create a raster "
                              f"region with `geoflora region create`)")
        if self.transform.b or self.transform.d or self.transform.a != -self.transform.e:
            raise RegionError(f"{path}: expected a north-up raster with square pixels, found {tuple(self.transform)[:6]}")
        if res is not None and abs(self.transform.a - res) > 1e-6:
            raise RegionError(f"{path}: expected {res:g} m pixels, found {self.transform.a:g} m")
        self._cache_ok = self.shape[0] * self.shape[1] * self.count * self.dtype.itemsize <= cache_limit
        self._arr: np.ndarray | None = None

    def rowcol(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = np.floor((np.asarray(x, np.float64) - self.transform.c) / self.transform.a).astype(np.int64)
        r = np.floor((np.asarray(y, np.float64) - self.transform.f) / self.transform.e).astype(np.int64)
        return r, c

    def pixels(self, r: np.ndarray, c: np.ndarray, size: int = 1) -> np.ndarray:
        """Band-last pixel values [N, bands] (size 1) or patches [N, bands, size, size] from top-left r, c."""
        if r.size == 0:
            return np.zeros((0, self.count) + ((size, size) if size > 1 else ()), self.dtype)
        if r.min() < 0 or c.min() < 0 or r.max() + size > self.shape[0] or c.max() + size > self.shape[1]:
            raise ValueError(f"points outside {self.path.name} (need {size} px windows inside the raster)")
        if self._cache_ok:
            if self._arr is None:
                with rasterio.open(self.path) as ds:
                    self._arr = np.ascontiguousarray(np.moveaxis(ds.read(), 0, -1))
            arr, r0, c0 = self._arr, 0, 0
        else:
            r0, c0 = int(r.min()), int(c.min())
            win = Window(c0, r0, int(c.max()) - c0 + size, int(r.max()) - r0 + size)
            with rasterio.open(self.path) as ds:
                arr = np.moveaxis(ds.read(window=win), 0, -1)
        if size == 1:
            return arr[r - r0, c - c0]
        win = np.lib.stride_tricks.sliding_window_view(arr, (size, size), axis=(0, 1))  # [H', W', B, s, s]
        return win[r - r0, c - c0]


class GeneratedRegion(TruthLayers):
    """A finished Virtual Europe region on disk: truth, rasters, observations, extraction (a
    :class:`inference.data.interface.MapRegion` with :class:`TruthLayers`)."""

    def __init__(self, path: Path, meta: dict, cache_limit: int = 1_500_000_000):
        self.path = Path(path)
        self.meta = meta
        self.grid = Region(MetaTile(*meta["origin"]), meta["nx"], meta["ny"])
        self.seed = meta["seed"]
        self._cache_limit = cache_limit
        self._rasters: dict[str, _Raster] = {}

    @property
    def name(self) -> str:
        return self.path.name

    # ---- paths
    def file(self, key: str) -> Path:
        return self.path / self.meta["files"][key]

    @property
    def paths(self) -> dict[str, Path]:
        return {k: self.path / v for k, v in self.meta["files"].items()}

    s2_path = property(lambda self: self.file("s2"))
    landsat_path = property(lambda self: self.file("landsat"))
    landcover_path = property(lambda self: self.file("landcover"))
    dem_path = property(lambda self: self.file("dem"))
    habitat_path = property(lambda self: self.file("habitat"))
    predictors_path = property(lambda self: self.file("predictors"))
    climate_paths = property(lambda self: {v: self.file(f"climate_{v}") for v in _climate.CLIMATE_VARS})
    pa_csv = property(lambda self: self.file("pa"))
    po_csv = property(lambda self: self.file("po"))
    photos_csv = property(lambda self: self.file("photos"))

    # ---- species and habitats
    @cached_property
    def _niche(self) -> dict[str, np.ndarray]:
        with np.load(self.file("niche")) as z:
            return {k: z[k] for k in z.files}

    @cached_property
    def species(self) -> list[Species]:
        out = []
        with open(self.file("species"), newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                traits = {t: TraitDistribution(float(row[f"{t}_median"]), float(row[f"{t}_sd"]),
                                               float(row[f"{t}_lowerbound"]), float(row[f"{t}_upperbound"]),
                                               float(self._niche["trait_logmean"][i, k]),
                                               float(self._niche["trait_logsd"][i, k]))
                          for k, t in enumerate(_flora.TRAITS)}
                def b(c, row=row):
                    return row[c] in ("1", "True", "true")
                out.append(Species(i, int(row["id"]), row["name"], row["genus"], row["family"], row["guild"],
                                   row["growth_form"], row["pft"], row["iucn"], b("eu_directive"), b("invasive"),
                                   b("woody"), b("tree"), b("endemic"), b("conifer"),
                                   float(row["target_prevalence"]), traits))
        return out

    @property
    def species_ids(self) -> np.ndarray:
        return self._niche["species_id"]

    @property
    def habitat_codes(self) -> list[str]:
        return list(self.meta["habitat_codes"])

    @cached_property
    def habitat_types(self) -> list[eunis.HabitatType]:
        """Level-3 types in raster-index order (``true_habitat`` values index this list)."""
        return [eunis.habitat(c) for c in self.meta["habitat_codes"]]

    # ---- truth
    def _env(self, tile: MetaTile) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.grid.window_of(tile)
        if rows.start < 0 or cols.start < 0 or rows.stop > self.grid.shape()[0] or cols.stop > self.grid.shape()[1]:
            raise ValueError(f"meta-tile {tile.id} is not in region {self.meta['metatiles']}")
        win = Window(cols.start, rows.start, CELLS_PER_METATILE, CELLS_PER_METATILE)
        with rasterio.open(self.predictors_path) as ds:
            pred = ds.read(window=win)
        with rasterio.open(self.habitat_path) as ds:
            hab = ds.read(1, window=win)
        return pred, hab

    def design_matrix(self, tile: MetaTile) -> np.ndarray:
        pred, hab = self._env(tile)
        return _flora.design_matrix(pred.reshape(pred.shape[0], -1), hab.ravel())

    def true_probability(self, tile: MetaTile, species: Sequence[int] | slice | None = None) -> np.ndarray:
        """True presence probability float32 [S, 500, 500] (species in table order, or the given indices)."""
        W = self._niche["W"] if species is None else self._niche["W"][:, species]
        F = self.design_matrix(tile)
        n = CELLS_PER_METATILE
        return _flora.probability(F, W).reshape(-1, n, n)

    def iter_true_probability(self, tile: MetaTile, chunk: int = 1024) -> Iterator[tuple[slice, np.ndarray]]:
        """(species slice, [chunk, 500, 500]) pieces: the way to go through 11,255 species."""
        F = self.design_matrix(tile)
        W = self._niche["W"]
        n = CELLS_PER_METATILE
        for s0 in range(0, W.shape[1], chunk):
            sl = slice(s0, min(W.shape[1], s0 + chunk))
            yield sl, _flora.probability(F, W[:, sl]).reshape(-1, n, n)

    def true_probability_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True probabilities [N, S] at EPSG:3035 points inside the region."""
        r, c = self._raster("predictors").rowcol(x, y)
        pred = self._raster("predictors").pixels(r, c)
        hab = self._raster("habitat").pixels(r, c)[:, 0]
        return _flora.probability(_flora.design_matrix(pred.T, hab), self._niche["W"]).T

    def true_habitat(self, tile: MetaTile) -> np.ndarray:
        """uint8 [500, 500] indices into ``habitat_types`` (255 = none)."""
        return self._env(tile)[1]

    def true_habitat_codes(self, tile: MetaTile) -> np.ndarray:
        codes = np.array(self.meta["habitat_codes"] + [""], dtype=object)
        h = self.true_habitat(tile).astype(np.int64)
        return codes[np.where(h == _habitats.NODATA, len(codes) - 1, h)]

    def cell_centres(self, tile: MetaTile) -> tuple[np.ndarray, np.ndarray]:
        """EPSG:3035 x, y [500, 500] of the cell centres of ``tile`` (row 0 = north)."""
        n = CELLS_PER_METATILE
        xs = tile.x0 + (np.arange(n) + 0.5) * CELL_M
        ys = tile.y0 + METATILE_M - (np.arange(n) + 0.5) * CELL_M
        return np.meshgrid(xs, ys)

    # ---- model inputs
    def _raster(self, key: str) -> _Raster:
        if key not in self._rasters:
            res = self.meta.get("resolution_m", {}).get(key.split("_")[0] if key.startswith("climate") else key)
            self._rasters[key] = _Raster(self.file(key), self._cache_limit, res)
        return self._rasters[key]

    def extract_climate(self, x, y) -> np.ndarray:
        """Climate cubes float32 [N, 4, 19, 12] (pr, tas, tasmax, tasmin x 2000-2018 x month), CHELSA units."""
        parts = []
        for v in _climate.CLIMATE_VARS:
            ras = self._raster(f"climate_{v}")
            r, c = ras.rowcol(x, y)
            parts.append(ras.pixels(r, c))
        cube = np.stack(parts, 1).astype(np.float32)            # [N, 4, 228]
        return cube.reshape(-1, 4, len(_climate.YEARS), 12)

    def extract_landsat(self, x, y) -> np.ndarray:
        """Landsat cubes float32 [N, 6, 4, 21] (R, G, B, NIR, SWIR1, SWIR2 x quarter x 2000-2020)."""
        ras = self._raster("landsat")
        r, c = ras.rowcol(x, y)
        return ras.pixels(r, c).astype(np.float32).reshape(-1, 6, 4, len(_imagery.LANDSAT_YEARS))

    def extract_s2(self, x, y, size: int = S2_PATCH) -> np.ndarray:
        """S2 patches uint16 [N, 4, size, size] (R, G, B, NIR); the point's pixel is at (size//2, size//2)."""
        ras = self._raster("s2")
        r, c = ras.rowcol(x, y)
        return np.ascontiguousarray(ras.pixels(r - size // 2, c - size // 2, size))

    def land_mask(self, tile: MetaTile) -> np.ndarray:
        """Every cell is mapped: cells in water are computed from their own inputs (the virtual
        flora has aquatic habitats)."""
        return np.ones((CELLS_PER_METATILE, CELLS_PER_METATILE), bool)

    def input_index(self, tile: MetaTile) -> None:
        return None

    def s2_window(self, left: float, top: float, width: int, height: int) -> np.ndarray:
        self._raster("s2")  # checks the CRS and the 10 m pixels once
        with rasterio.open(self.s2_path) as src:
            t = src.transform
            col0 = int(round((left - t.c) / t.a))
            row0 = int(round((top - t.f) / t.e))
            win = Window(col0, row0, width, height)
            inside = col0 >= 0 and row0 >= 0 and col0 + width <= src.width and row0 + height <= src.height
            return src.read(window=win, boundless=not inside, fill_value=0)

    def cube_keys(self, name: str, x, y) -> np.ndarray:
        ras = self._raster("climate_" + _climate.CLIMATE_VARS[0] if name == "climate" else name)
        r, c = ras.rowcol(x, y)
        return r * 1_000_003 + c

    def extract_inputs(self, x, y) -> dict[str, np.ndarray]:
        """The three SDM inputs for a batch of EPSG:3035 points."""
        x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
        return {"s2": self.extract_s2(x, y), "climate": self.extract_climate(x, y),
                "landsat": self.extract_landsat(x, y)}


def load_region(path, cache_limit: int = 1_500_000_000):
    """Open a finished region (``region.json`` present and of a known format): a generated
    :class:`GeneratedRegion` or a :class:`inference.data.raster_region.RasterRegion`."""
    p = Path(path)
    mf = p / "region.json"
    if not mf.is_file():
        raise RegionError(f"{p} is not a finished region (no region.json): generate one with `geoflora generate` "
                          f"or create one from rasters with `geoflora region create`")
    meta = json.loads(mf.read_text())
    if meta.get("format") == RASTER_FORMAT:
        return load_raster_region(p, meta)
    if meta.get("format") != "geoflora-virtual-europe" or meta.get("version") != FORMAT_VERSION:
        raise RegionError(f"{p}: unsupported region format {meta.get('format')} v{meta.get('version')}")
    return GeneratedRegion(p, meta, cache_limit)
