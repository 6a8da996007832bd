"""A region built from real rasters and tables: Sentinel-2 tiles, CHELSA monthly climate, Landsat
quarterly composites, a land / water raster and a species table, in whatever CRS, resolution and
tiling they come; every read goes through GDAL (rasterio's WarpedVRT and windowed reads) onto the
50 m EPSG:3035 grid and the conventions of :mod:`inference.data.interface`.

``geoflora region create NAME --bbox ... --sources sources.yaml`` checks every source against the
bounding box (:func:`create_raster_region`) and writes the region folder: ``region.json`` (the
resolved sources, the meta-tiles, the coverage of every input per meta-tile) and a copy of the
species table. The rasters stay where they are.

The sources file (YAML; relative paths are relative to the file)::

    sentinel2:
      files: [s2/T32UMU.tif, s2/T33UUP.tif]   # globs allowed; bands R, G, B, NIR (``bands``: their indices)
      # or one file set per band:  bands: {red: "s2/*_B04.tif", green: ..., blue: ..., nir: ...}
      scale: 0.0001                            # reflectance = DN x scale + offset
      offset: -0.1                             # (defaults: settings s2_scale / s2_offset: L2A 04.00)
      nodata: 0                                # default: the file's nodata, else 0
    climate:
      pattern: chelsa/CHELSA_{var}_{month:02d}_{year}_V.2.1.tif
      variables: {tas: tas}                    # optional: GeoFlora name -> the name in the files
      scale: {tas: 0.1}                        # optional: physical value = DN x scale + offset
      offset: {tas: -273.15}                   # (default: the file's metadata, else CHELSA's own)
    landsat:
      pattern: landsat/{band}_{year}_q{quarter}.tif   # bands red, green, blue, nir, swir1, swir2
    land_mask:
      file: landwater.tif
      land: [1]                                # the values meaning land (default: every value but 0)
      water: nearest                           # nearest (paper rule) | mask
    species: species.csv                       # a GeoFlora species table (geoflora species import)
    habitats: eunis2021_habitats.csv           # optional: the EUNIS list (Code, Name)

Cells in water take their inputs from the nearest land cell of their meta-tile (``water:
nearest``, the paper's rule) or are masked (``water: mask``); cells without data in an input are
masked, and ``region create`` reports them per meta-tile with the file and window.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import rasterio
import yaml
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from scipy import ndimage

from backend.core.atomic import write_bytes, write_json
from backend.core.errors import RegionError
from inference.grid import CELL_M, CELLS_PER_METATILE, METATILE_M, MetaTile, Region

from . import eunis
from .interface import Species
from .species_table import read_species_table

FORMAT = "geoflora-raster-region"
FORMAT_VERSION = 1
S2_RES = 10.0
S2_BANDS = ("red", "green", "blue", "nir")
CLIMATE_VARS = ("pr", "tas", "tasmax", "tasmin")
CLIMATE_YEARS = tuple(range(2000, 2019))
LANDSAT_BANDS = ("red", "green", "blue", "nir", "swir1", "swir2")
LANDSAT_YEARS = tuple(range(2000, 2021))
QUARTERS = (1, 2, 3, 4)
# CHELSA V2.1's storage: physical = DN x scale + offset (K for temperatures, kg m-2 month-1 for pr);
# the models take the DN of this convention.
CHELSA_SCALE = {"pr": 0.01, "tas": 0.1, "tasmax": 0.1, "tasmin": 0.1}
CHELSA_OFFSET = {"pr": 0.0, "tas": -273.15, "tasmax": -273.15, "tasmin": -273.15}


# ---------------------------------------------------------------------------------------------
# the sources file

@dataclass(frozen=True)
class CubeFile:
    """One raster of a cube (a CHELSA month, a Landsat quarter): its path, band and the scale and
    offset that turn its values into the model's units."""

    path: str
    band: int = 1
    scale: float = 1.0
    offset: float = 0.0


def _resolve(base: Path, value: str) -> list[str]:
    """Files for one entry: a GDAL path is kept as given, a local one resolved and globbed."""
    if value.startswith("/vsi") or "://" in value:
        return [value]
    p = Path(value) if Path(value).is_absolute() else base / value
    hits = sorted(glob.glob(str(p)))
    return hits or [str(p)]


def _open(path: str, what: str):
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise RegionError(f"{what}: cannot open {path} ({exc})") from exc


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise RegionError(message)


def parse_sources(path: Path, s2_scale: float = 1e-4, s2_offset: float = -0.1) -> dict:
    """The sources file at ``path`` with every file resolved and checked: a RegionError naming the
    source for a file that is missing or unreadable, a wrong band count, or no CRS."""
    path = Path(path)
    _require(path.is_file(), f"no sources file at {path}")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RegionError(f"{path} is not valid YAML: {exc}") from exc
    _require(isinstance(spec, dict), f"{path}: expected a mapping of sources (sentinel2, climate, ...)")
    base = path.parent
    unknown = set(spec) - {"sentinel2", "climate", "landsat", "land_mask", "species", "habitats"}
    _require(not unknown, f"{path}: unknown sources {sorted(unknown)}")
    for key in ("sentinel2", "climate", "landsat", "species"):
        _require(key in spec, f"{path}: the {key!r} source is missing")
    return {"sentinel2": _parse_s2(spec["sentinel2"], base, s2_scale, s2_offset),
            "climate": _parse_climate(spec["climate"], base),
            "landsat": _parse_landsat(spec["landsat"], base),
            "land_mask": _parse_mask(spec.get("land_mask"), base),
            "species": _one_file(spec["species"], base, "species"),
            "habitats": _one_file(spec["habitats"], base, "habitats") if spec.get("habitats") else None}


def _one_file(value, base: Path, what: str) -> str:
    files = _resolve(base, str(value))
    _require(len(files) == 1 and (Path(files[0]).is_file() or files[0].startswith("/vsi")),
             f"{what}: no file at {files[0] if files else value}")
    return files[0]


def _parse_s2(s2: dict, base: Path, scale: float, offset: float) -> dict:
    _require(isinstance(s2, dict), "sentinel2: expected files (or per-band files) with scale and offset")
    scale, offset = float(s2.get("scale", scale)), float(s2.get("offset", offset))
    sets = []  # each: [(path, band)] x 4 (R, G, B, NIR)
    bands = s2.get("bands", [1, 2, 3, 4])
    if isinstance(bands, dict):
        _require(set(bands) == set(S2_BANDS), f"sentinel2 bands: give red, green, blue and nir, got {sorted(bands)}")
        per_band = {b: _resolve(base, bands[b]) for b in S2_BANDS}
        counts = {b: len(v) for b, v in per_band.items()}
        _require(len(set(counts.values())) == 1, f"sentinel2: a different number of files per band: {counts}")
        for group in zip(*(per_band[b] for b in S2_BANDS)):
            sets.append([(p, 1) for p in group])
    else:
        files = [f for entry in ([s2["files"]] if isinstance(s2.get("files"), str) else s2.get("files", []))
                 for f in _resolve(base, entry)]
        _require(files, "sentinel2: no files given")
        _require(len(bands) == 4, f"sentinel2 bands: the indices of R, G, B and NIR, got {bands}")
        sets = [[(f, int(b)) for b in bands] for f in files]
    out = []
    for group in sets:
        for p, b in group:
            with _open(p, "sentinel2") as ds:
                _require(ds.crs is not None, f"sentinel2: {p} has no CRS")
                _require(1 <= b <= ds.count, f"sentinel2: {p} has {ds.count} band(s); band {b} was asked for "
                                             f"(R, G, B, NIR: set 'bands')")
        with _open(group[0][0], "sentinel2") as ds:
            nodata = s2.get("nodata", ds.nodata if ds.nodata is not None else 0)
        out.append({"bands": [[p, b] for p, b in group], "nodata": float(nodata)})
    return {"sets": out, "scale": scale, "offset": offset, "resampling": s2.get("resampling", "nearest")}


def _pattern_files(spec: dict, base: Path, what: str, keys: dict[str, tuple], names: dict[str, str],
                   default_scale, default_offset) -> dict:
    _require(isinstance(spec, dict) and "pattern" in spec, f"{what}: give a file name pattern ('pattern')")
    pattern = spec["pattern"]
    scales, offsets = spec.get("scale", {}) or {}, spec.get("offset", {}) or {}
    files, missing = {}, []
    first = {}
    var_key = next(iter(keys))
    for combo in _combos(keys):
        name = names.get(combo[var_key], combo[var_key])
        fields = {**combo, var_key: name}
        try:
            rel = pattern.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise RegionError(f"{what}: the pattern {pattern!r} cannot be filled ({exc}); it may use "
                              f"{{{'}, {'.join(keys)}}}") from exc
        p = _resolve(base, rel)[0]
        if not (Path(p).is_file() or p.startswith("/vsi")):
            missing.append(p)
            continue
        v = combo[var_key]
        if v not in first:
            with _open(p, what) as ds:
                _require(ds.crs is not None, f"{what}: {p} has no CRS")
                first[v] = (ds.crs.to_string(), tuple(ds.transform)[:6], ds.shape, ds.scales[0], ds.offsets[0])
        meta_scale, meta_offset = first[v][3], first[v][4]
        has_meta = (meta_scale, meta_offset) != (1.0, 0.0)
        sc = float(scales.get(v, meta_scale if has_meta else default_scale(v)))
        of = float(offsets.get(v, meta_offset if has_meta else default_offset(v)))
        files["/".join(str(combo[k]) for k in keys)] = {"path": p, "scale": sc, "offset": of}
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise RegionError(f"{what}: {len(missing)} file(s) of the pattern {pattern!r} are missing: {shown}")
    grids = {v: f[:3] for v, f in first.items()}
    _require(len(set(grids.values())) == 1, f"{what}: the files are not all on one grid ({grids})")
    return {"pattern": pattern, "files": files}


def _combos(keys: dict[str, tuple]) -> list[dict]:
    out = [{}]
    for k, values in keys.items():
        out = [{**c, k: v} for c in out for v in values]
    return out


def _parse_climate(spec: dict, base: Path) -> dict:
    names = (spec or {}).get("variables", {}) or {}
    keys = {"var": CLIMATE_VARS, "year": CLIMATE_YEARS, "month": tuple(range(1, 13))}
    # the model's units are CHELSA's DN: physical = DN x CHELSA scale + offset
    return _pattern_files(spec, base, "climate", keys, names, lambda v: CHELSA_SCALE[v], lambda v: CHELSA_OFFSET[v])


def _parse_landsat(spec: dict, base: Path) -> dict:
    names = (spec or {}).get("bands", {}) or {}
    keys = {"band": LANDSAT_BANDS, "year": LANDSAT_YEARS, "quarter": QUARTERS}
    return _pattern_files(spec, base, "landsat", keys, names, lambda v: 1.0, lambda v: 0.0)


def _parse_mask(spec, base: Path) -> dict | None:
    if not spec:
        return None
    _require(isinstance(spec, dict) and "file" in spec, "land_mask: give 'file' (and 'land', 'water')")
    path = _one_file(spec["file"], base, "land_mask")
    with _open(path, "land_mask") as ds:
        _require(ds.crs is not None, f"land_mask: {path} has no CRS")
    water = spec.get("water", "nearest")
    _require(water in ("nearest", "mask"), f"land_mask water: 'nearest' or 'mask', got {water!r}")
    land = spec.get("land")
    return {"file": path, "land": None if land is None else [float(v) for v in land], "water": water}


# ---------------------------------------------------------------------------------------------
# reading onto the grid

@lru_cache(maxsize=64)
def _to_crs(crs: str) -> Transformer:
    return Transformer.from_crs("EPSG:3035", crs, always_xy=True)


def _rowcol(ds, x: np.ndarray, y: np.ndarray, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the pixel of ``ds`` containing each EPSG:3035 point; ``cache`` keeps them
    per grid, so the files of one cube (912 CHELSA months on one grid) transform the points once."""
    key = (ds.crs.to_string(), tuple(ds.transform)[:6])
    if cache is not None and key in cache:
        return cache[key]
    sx, sy = _to_crs(key[0]).transform(x, y)
    col, row = ~ds.transform * (np.asarray(sx), np.asarray(sy))
    out = np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)
    if cache is not None:
        cache[key] = out
    return out


def _sample(path: str, band: int, x: np.ndarray, y: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """float64 values of ``band`` at EPSG:3035 points (the pixel containing each point; NaN
    outside the raster or at nodata); ``cache``: see :func:`_rowcol`."""
    out = np.full(len(x), np.nan)
    if not len(x):
        return out
    with rasterio.open(path) as ds:
        row, col = _rowcol(ds, x, y, cache)
        ok = (row >= 0) & (col >= 0) & (row < ds.height) & (col < ds.width)
        if not ok.any():
            return out
        r0, r1, c0, c1 = row[ok].min(), row[ok].max() + 1, col[ok].min(), col[ok].max() + 1
        arr = ds.read(band, window=Window(c0, r0, c1 - c0, r1 - r0))
        vals = arr[row[ok] - r0, col[ok] - c0].astype(np.float64)
        if ds.nodata is not None:
            vals[vals == ds.nodata] = np.nan
        out[ok] = vals
    return out


def _pixel_keys(path: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with rasterio.open(path) as ds:
        row, col = _rowcol(ds, x, y)
    return row * 1_000_003 + col


class RasterRegion:
    """A region read from real rasters (a :class:`inference.data.interface.MapRegion`, without
    truth layers)."""

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self.grid = Region(MetaTile(*meta["origin"]), meta["nx"], meta["ny"])
        self.sources = meta["sources"]
        if self.sources.get("habitats"):
            eunis.load_list(self.sources["habitats"])  # the region's EUNIS list is the habitat table

    @property
    def name(self) -> str:
        return self.meta["name"]

    # ---- species and habitats
    @cached_property
    def species(self) -> list[Species]:
        return read_species_table(self.path / "species.csv")

    @property
    def species_ids(self) -> np.ndarray:
        return np.array([sp.id for sp in self.species], np.int64)

    @property
    def habitat_codes(self) -> list[str]:
        return list(self.meta["habitat_codes"])

    def cell_centres(self, tile: MetaTile) -> tuple[np.ndarray, np.ndarray]:
        n = CELLS_PER_METATILE
        xs = tile.x0 + (np.arange(n) + 0.5) * CELL_M
        ys = tile.y0 + METATILE_M - (np.arange(n) + 0.5) * CELL_M
        return np.meshgrid(xs, ys)

    # ---- land, coverage
    def _land(self, tile: MetaTile) -> np.ndarray:
        spec = self.sources.get("land_mask")
        if spec is None:
            return np.ones((CELLS_PER_METATILE, CELLS_PER_METATILE), bool)
        x, y = self.cell_centres(tile)
        v = _sample(spec["file"], 1, x.ravel(), y.ravel())
        land = np.isin(v, spec["land"]) if spec["land"] is not None else (np.isfinite(v) & (v != 0))
        return land.reshape(x.shape)

    @lru_cache(maxsize=4)  # noqa: B019 - a region object lives as long as its process's cache
    def _coverage(self, tile: MetaTile) -> dict[tuple[str, str], np.ndarray]:
        """(input, file) -> bool [500, 500]: the cells with data in that file (the first climate and
        Landsat raster of each variable / band; Sentinel-2 at each cell centre's pixel, all files)."""
        n = CELLS_PER_METATILE
        x, y = self.cell_centres(tile)
        x, y = x.ravel(), y.ravel()
        out, pixels = {}, {}
        for kind, keys in (("climate", [f"{v}/{CLIMATE_YEARS[0]}/1" for v in CLIMATE_VARS]),
                           ("landsat", [f"{b}/{LANDSAT_YEARS[0]}/1" for b in LANDSAT_BANDS])):
            for key in keys:
                path = self.sources[kind]["files"][key]["path"]
                out[(kind, path)] = np.isfinite(_sample(path, 1, x, y, pixels)).reshape(n, n)
        files = [g["bands"][0][0] for g in self.sources["sentinel2"]["sets"]
                 if _overlaps(_footprint(g["bands"][0][0]), tile.bounds)]
        out[("sentinel2", ", ".join(files) or "(none overlaps)")] = self._s2_centres(tile)
        return out

    def _inputs_valid(self, tile: MetaTile) -> np.ndarray:
        """bool [500, 500]: the cell has data in every input (:meth:`_coverage`)."""
        return np.logical_and.reduce(list(self._coverage(tile).values()))

    def _s2_centres(self, tile: MetaTile) -> np.ndarray:
        """bool [500, 500]: the S2 pixel of every cell centre has data in all four bands (a
        nearest-neighbour warp onto the 50 m cells samples the source pixel under each centre,
        as the 10 m grid's pixel holding the centre would, at a 25th of the pixels)."""
        return self.s2_window(tile.x0, tile.y0 + METATILE_M, CELLS_PER_METATILE, CELLS_PER_METATILE,
                              valid_only=True, res=CELL_M)

    @lru_cache(maxsize=4)  # noqa: B019
    def _mapped(self, tile: MetaTile) -> tuple[np.ndarray, np.ndarray | None]:
        valid = self._inputs_valid(tile)
        land = self._land(tile)
        spec = self.sources.get("land_mask")
        source = valid & land
        if spec is None or spec["water"] == "mask" or not source.any():
            return source, None
        # paper rule: a water cell takes the inputs of the nearest land cell (with inputs) of its tile
        _, (ri, ci) = ndimage.distance_transform_edt(~source, return_indices=True)
        index = (ri * CELLS_PER_METATILE + ci).ravel()
        return valid | ~land, index

    def land_mask(self, tile: MetaTile) -> np.ndarray:
        return self._mapped(tile)[0]

    def input_index(self, tile: MetaTile) -> np.ndarray | None:
        """int [250,000]: the cell (row-major) whose inputs each cell takes (water -> nearest land),
        or None when every cell takes its own."""
        return self._mapped(tile)[1]

    # ---- Sentinel-2
    def s2_window(self, left: float, top: float, width: int, height: int, valid_only: bool = False,
                  res: float = S2_RES) -> np.ndarray:
        """``valid_only``: the bool [height, width] mask of pixels with data in every band instead;
        ``res``: another pixel size than 10 m (the validity of the cell centres)."""
        spec = self.sources["sentinel2"]
        resampling = Resampling[spec["resampling"]] if res == S2_RES else Resampling.nearest
        dst = Affine(res, 0.0, left, 0.0, -res, top)
        bounds = (left, top - height * res, left + width * res, top)
        out = np.zeros((4, height, width), np.float64)
        filled = np.zeros((height, width), bool)
        for group in spec["sets"]:
            nodata = group["nodata"]
            stack, ok = [], np.ones((height, width), bool)
            for path, band in group["bands"]:
                with rasterio.open(path) as src:
                    fb = transform_bounds(src.crs, "EPSG:3035", *src.bounds)
                    if fb[0] >= bounds[2] or fb[2] <= bounds[0] or fb[1] >= bounds[3] or fb[3] <= bounds[1]:
                        ok[:] = False
                        break
                    with WarpedVRT(src, crs="EPSG:3035", transform=dst, width=width, height=height,
                                   resampling=resampling, src_nodata=nodata, nodata=nodata) as vrt:
                        a = vrt.read(band).astype(np.float64)
                stack.append(a)
                ok &= a != nodata
            if not ok.any():
                continue
            take = ok & ~filled
            for b in range(4):
                out[b][take] = stack[b][take]
            filled |= take
            if filled.all():
                break
        if valid_only:
            return filled
        refl = (out * spec["scale"] + spec["offset"]) * 10_000.0
        return np.where(filled, np.clip(np.rint(refl), 0, 65535), 0).astype(np.uint16)

    def extract_s2(self, x, y, size: int = 128) -> np.ndarray:
        """Patches read block by block (points within 1.28 km share one window)."""
        x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
        out = np.zeros((len(x), 4, size, size), np.uint16)
        # the pixel containing the point, then the patch's top-left pixel
        px = np.floor(x / S2_RES).astype(np.int64) - size // 2
        py = np.floor(y / S2_RES).astype(np.int64) + 1 + size // 2   # top edge (pixel index from the north)
        block = 128
        keys = (px // block) * 1_000_003 + (py // block)
        for k in np.unique(keys):
            sel = np.flatnonzero(keys == k)
            c0, r0 = px[sel].min(), py[sel].max()
            w = int(px[sel].max() - c0 + size)
            h = int(r0 - py[sel].min() + size)
            win = self.s2_window(float(c0 * S2_RES), float(r0 * S2_RES), w, h)
            for i in sel:
                dc, dr = int(px[i] - c0), int(r0 - py[i])
                out[i] = win[:, dr:dr + size, dc:dc + size]
        return out

    # ---- cubes
    def _cube(self, kind: str, names: tuple, years: tuple, steps: tuple, x, y) -> np.ndarray:
        x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
        files = self.sources[kind]["files"]
        pixels: dict = {}
        cube = np.empty((len(x), len(names), len(steps) if kind == "landsat" else len(years),
                         len(years) if kind == "landsat" else len(steps)), np.float32)
        for i, v in enumerate(names):
            for j, yr in enumerate(years):
                for k, st in enumerate(steps):
                    f = files[f"{v}/{yr}/{st}"]
                    vals = _sample(f["path"], 1, x, y, pixels) * f["scale"] + f["offset"]
                    if kind == "climate":  # physical units -> CHELSA's DN
                        vals = (vals - CHELSA_OFFSET[v]) / CHELSA_SCALE[v]
                    if kind == "landsat":
                        cube[:, i, k, j] = vals
                    else:
                        cube[:, i, j, k] = vals
        return cube

    def extract_climate(self, x, y) -> np.ndarray:
        return self._cube("climate", CLIMATE_VARS, CLIMATE_YEARS, tuple(range(1, 13)), x, y)

    def extract_landsat(self, x, y) -> np.ndarray:
        return self._cube("landsat", LANDSAT_BANDS, LANDSAT_YEARS, QUARTERS, x, y)

    def extract_inputs(self, x, y) -> dict[str, np.ndarray]:
        x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
        return {"s2": self.extract_s2(x, y), "climate": self.extract_climate(x, y),
                "landsat": self.extract_landsat(x, y)}

    def cube_keys(self, name: str, x, y) -> np.ndarray:
        first = f"{CLIMATE_VARS[0]}/{CLIMATE_YEARS[0]}/1" if name == "climate" else f"{LANDSAT_BANDS[0]}/{LANDSAT_YEARS[0]}/1"
        return _pixel_keys(self.sources[name]["files"][first]["path"], np.asarray(x).ravel(), np.asarray(y).ravel())


# ---------------------------------------------------------------------------------------------
# creating a region

def snap_bbox(bbox: tuple[float, float, float, float]) -> tuple[MetaTile, int, int]:
    """The meta-tiles covering an EPSG:3035 bounding box (snapped outwards)."""
    xmin, ymin, xmax, ymax = bbox
    _require(xmax > xmin and ymax > ymin, f"bbox {bbox}: expected xmin, ymin, xmax, ymax with xmax > xmin, ymax > ymin")
    x0 = math.floor(xmin / METATILE_M) * METATILE_M
    y0 = math.floor(ymin / METATILE_M) * METATILE_M
    nx = max(1, math.ceil((xmax - x0) / METATILE_M))
    ny = max(1, math.ceil((ymax - y0) / METATILE_M))
    return MetaTile(x0, y0), nx, ny


def _footprint(path: str) -> tuple[float, float, float, float]:
    with rasterio.open(path) as ds:
        return transform_bounds(ds.crs, "EPSG:3035", *ds.bounds)


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def _tile_window(path: str, tile: MetaTile) -> str:
    """The pixel window of ``tile`` in the raster at ``path`` (for messages)."""
    with rasterio.open(path) as ds:
        b = transform_bounds("EPSG:3035", ds.crs, *tile.bounds)
        w = from_bounds(*b, transform=ds.transform).round_offsets().round_lengths()
    return f"window col {w.col_off}, row {w.row_off}, {w.width} x {w.height} px"


def _habitat_codes(path: str | None) -> list[str]:
    """The level-3 codes of the region's EUNIS list (made known to :mod:`inference.data.eunis`), or
    of the built-in list."""
    if path is None:
        return [h.code for h in eunis.all_types(3)]
    return [c for c in eunis.load_list(path) if eunis.code_level(c) == 3]


# Plausible climate values in the models' units (CHELSA DN): -93..+67 C, 0..3000 mm per month.
PLAUSIBLE_DN = {"pr": (0.0, 300_000.0), "tas": (1800.0, 3400.0), "tasmax": (1800.0, 3400.0), "tasmin": (1800.0, 3400.0)}


def _check_climate_units(region: RasterRegion, tile: MetaTile) -> None:
    """Refuse climate files whose values, read with their scale and offset, are not climate in
    CHELSA's units (a file in degrees C read as K x 10, precipitation in metres...)."""
    x, y = region.cell_centres(tile)
    x, y = x[::25, ::25].ravel(), y[::25, ::25].ravel()
    for v in CLIMATE_VARS:
        f = region.sources["climate"]["files"][f"{v}/{CLIMATE_YEARS[0]}/7"]
        vals = (_sample(f["path"], 1, x, y) * f["scale"] + f["offset"] - CHELSA_OFFSET[v]) / CHELSA_SCALE[v]
        vals = vals[np.isfinite(vals)]
        lo, hi = PLAUSIBLE_DN[v]
        if len(vals) and not (lo <= np.median(vals) <= hi):
            raise RegionError(f"climate: {f['path']} reads as {v} = {np.median(vals):.0f} in CHELSA's units "
                              f"(expected {lo:.0f} to {hi:.0f}; scale {f['scale']}, offset {f['offset']}): give "
                              f"the files' scale and offset in the sources file (physical = value x scale + "
                              f"offset, in C or kg m-2), e.g. scale 1 and offset 0 for files in degrees C")


def create_raster_region(out_dir: Path, name: str, bbox: tuple[float, float, float, float], sources_file: Path,
                         s2_scale: float = 1e-4, s2_offset: float = -0.1, log=print) -> RasterRegion:
    """Check every source against ``bbox`` (EPSG:3035 metres, snapped to meta-tiles), measure each
    input's coverage per meta-tile and write the region folder (``region.json`` last)."""
    sources = parse_sources(sources_file, s2_scale, s2_offset)
    origin, nx, ny = snap_bbox(bbox)
    grid = Region(origin, nx, ny)
    box = grid.bounds
    checks = [("sentinel2", [p for g in sources["sentinel2"]["sets"] for p, _ in g["bands"][:1]]),
              ("climate", [next(iter(sources["climate"]["files"].values()))["path"]]),
              ("landsat", [next(iter(sources["landsat"]["files"].values()))["path"]])]
    if sources["land_mask"]:
        checks.append(("land_mask", [sources["land_mask"]["file"]]))
    for what, files in checks:
        _require(any(_overlaps(_footprint(f), box) for f in files),
                 f"{what}: no file overlaps the region {box} (EPSG:3035): {', '.join(files[:3])}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "region.json").unlink(missing_ok=True)  # unfinished until written again
    write_bytes(out_dir / "species.csv", Path(sources["species"]).read_bytes())
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "name": name, "crs": "EPSG:3035",
            "origin": [origin.x0, origin.y0], "nx": nx, "ny": ny, "bounds": list(box),
            "metatiles": [t.id for t in grid.metatiles()], "sources": sources,
            "habitat_codes": _habitat_codes(sources["habitats"])}
    region = RasterRegion(out_dir, meta)
    _ = region.species  # the table must read
    _check_climate_units(region, next(grid.metatiles()))
    coverage = {}
    for tile in grid.metatiles():
        valid = region._inputs_valid(tile)
        land = region._land(tile)
        entry = {"cells_with_inputs": float(valid.mean()), "land": float(land.mean()), "gaps": []}
        for (kind, files), ok in region._coverage(tile).items():
            if not ok.all():
                windows = "; ".join(_tile_window(f, tile) for f in files.split(", ") if not f.startswith("("))
                entry["gaps"].append({"input": kind, "file": files, "missing_share": float(1 - ok.mean()),
                                      "window": windows or "(no file)"})
        coverage[tile.id] = entry
        log(f"{tile.id}: {entry['cells_with_inputs']:.1%} of cells have every input, {entry['land']:.1%} land")
        for gap in entry["gaps"]:
            log(f"  {gap['input']}: {gap['missing_share']:.1%} of cells without data in {gap['file']} "
                f"({gap['window']})")
    _require(any(c["cells_with_inputs"] > 0 for c in coverage.values()),
             f"no cell of the region {box} has every input: see the coverage above")
    meta["coverage"] = coverage
    write_json(out_dir / "region.json", meta, indent=2)
    return region


def load_raster_region(path: Path, meta: dict) -> RasterRegion:
    if meta.get("version") != FORMAT_VERSION:
        raise RegionError(f"{path}: raster region of version {meta.get('version')}; this GeoFlora reads "
                          f"version {FORMAT_VERSION}")
    return RasterRegion(Path(path), meta)
