"""Write a generated region out in the layouts real data comes in (``geoflora generate
--export-rasters DIR``), so that a region created from those files (``geoflora region create``)
can be checked against the generated one: the proof that the real-data path reads every input
right.

What is written, under ``DIR``:

* ``s2/S2_T32_<id>.tif``, ``s2/S2_T33_<id>.tif``: Sentinel-2 R, G, B, NIR at 10 m as two
  overlapping tiles in UTM zones 32N and 33N, in L2A baseline 04.00 digital numbers
  (DN = reflectance x 10,000 + 1,000; nodata 0);
* ``chelsa/CHELSA_{var}_{month:02d}_{year}_V.2.1.tif``: one EPSG:4326 GeoTIFF per variable and
  month, uint16 in CHELSA's integer scaling (scale and offset in the metadata), at 7.5 arc-seconds;
* ``landsat/{band}_{year}_q{quarter}.tif``: one quarterly composite per band, year and quarter;
* ``landwater.tif``: 1 land, 0 water, in EPSG:4326 at 2 arc-seconds;
* ``species/``: the species list with author names and the attribute lists in their real formats
  (:func:`inference.data.species_table` readers);
* ``sources.yaml``: the sources file for ``geoflora region create``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject, transform_bounds

from backend.core.atomic import atomic_path, write_csv, write_text

from .raster_region import CHELSA_OFFSET, CHELSA_SCALE, CLIMATE_VARS, CLIMATE_YEARS, LANDSAT_BANDS, LANDSAT_YEARS
from .species_table import import_species
from .synth.landscape import WATER

L2A_OFFSET_DN = 1000  # baseline 04.00: reflectance = (DN - 1000) / 10000
CHELSA_RES_DEG = 1 / 480  # 7.5": a quarter of CHELSA's 30" (finer than the generated 250 m)
MASK_RES_DEG = 1 / 1800  # 2"
UINT16_NODATA = 65535


def _write(path: Path, arr: np.ndarray, crs, transform, nodata, scales=None, offsets=None) -> Path:
    arr = arr if arr.ndim == 3 else arr[None]
    profile = {"driver": "GTiff", "height": arr.shape[1], "width": arr.shape[2], "count": arr.shape[0],
               "dtype": arr.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
               "compress": "deflate", "tiled": arr.shape[1] >= 256 and arr.shape[2] >= 256}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(arr)
        if scales is not None:
            dst.scales = scales
            dst.offsets = offsets
    return path


def _warp(src: np.ndarray, src_crs, src_transform, dst_crs, dst_res, bounds, src_nodata,
          dst_nodata) -> tuple[np.ndarray, Affine]:
    """``src`` [bands, h, w] onto ``dst_crs`` at ``dst_res`` over ``bounds`` (given in EPSG:3035)."""
    b = transform_bounds("EPSG:3035", dst_crs, *bounds, densify_pts=51)
    left, bottom = np.floor(b[0] / dst_res) * dst_res, np.floor(b[1] / dst_res) * dst_res
    right, top = np.ceil(b[2] / dst_res) * dst_res, np.ceil(b[3] / dst_res) * dst_res
    width, height = int(round((right - left) / dst_res)), int(round((top - bottom) / dst_res))
    transform = Affine(dst_res, 0.0, left, 0.0, -dst_res, top)
    out = np.full((src.shape[0], height, width), dst_nodata, src.dtype)
    reproject(src, out, src_transform=src_transform, src_crs=src_crs, dst_transform=transform, dst_crs=dst_crs,
              resampling=Resampling.nearest, src_nodata=src_nodata, dst_nodata=dst_nodata)
    return out, transform


def export_s2(region, out: Path) -> list[Path]:
    """Two overlapping UTM tiles (zones 32N and 33N) of the region's 10 m Sentinel-2, as L2A DN."""
    with rasterio.open(region.s2_path) as ds:
        refl, t, crs = ds.read(), ds.transform, ds.crs
        left, bottom, right, top = ds.bounds
    dn = np.where(refl > 0, np.minimum(refl.astype(np.int64) + L2A_OFFSET_DN, 65534), 0).astype(np.uint16)
    mid = (left + right) / 2
    paths = []
    for zone, (x0, x1) in ((32, (left, mid + 2000)), (33, (mid - 2000, right))):
        crs_utm = CRS.from_epsg(32600 + zone)
        c0, c1 = int((x0 - left) / t.a), int((x1 - left) / t.a)
        part = dn[:, :, c0:c1]
        pt = t * Affine.translation(c0, 0)
        tr, w, h = calculate_default_transform(crs, crs_utm, part.shape[2], part.shape[1],
                                               *rasterio.transform.array_bounds(part.shape[1], part.shape[2], pt),
                                               resolution=10.0)
        dst = np.zeros((4, h, w), np.uint16)
        reproject(part, dst, src_transform=pt, src_crs=crs, dst_transform=tr, dst_crs=crs_utm,
                  resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
        paths.append(_write(out / "s2" / f"S2_T{zone}_{region.name}.tif", dst, crs_utm, tr, 0))
    return paths


def export_climate(region, out: Path) -> int:
    """CHELSA-named monthly EPSG:4326 files, in CHELSA's integer scaling."""
    n = 0
    for v in CLIMATE_VARS:
        with rasterio.open(region.climate_paths[v]) as ds:
            cube, t, crs, bounds = ds.read(), ds.transform, ds.crs, ds.bounds
        for j, year in enumerate(CLIMATE_YEARS):
            for month in range(1, 13):
                band = cube[j * 12 + month - 1][None]
                arr, tr = _warp(band, crs, t, "EPSG:4326", CHELSA_RES_DEG, tuple(bounds), None, UINT16_NODATA)
                _write(out / "chelsa" / f"CHELSA_{v}_{month:02d}_{year}_V.2.1.tif", arr, "EPSG:4326", tr,
                       UINT16_NODATA, (CHELSA_SCALE[v],), (CHELSA_OFFSET[v],))
                n += 1
    return n


def export_landsat(region, out: Path) -> int:
    """One quarterly composite per band, year and quarter (EPSG:3035, the region's 100 m grid)."""
    with rasterio.open(region.landsat_path) as ds:
        cube, t, crs = ds.read(), ds.transform, ds.crs
    cube = cube.reshape(len(LANDSAT_BANDS), 4, len(LANDSAT_YEARS), *cube.shape[1:])
    n = 0
    for b, band in enumerate(LANDSAT_BANDS):
        for q in range(4):
            for j, year in enumerate(LANDSAT_YEARS):
                _write(out / "landsat" / f"{band}_{year}_q{q + 1}.tif", cube[b, q, j], crs, t, None)
                n += 1
    return n


def export_land_mask(region, out: Path) -> Path:
    """1 land, 0 water (the generated land cover's water), in EPSG:4326."""
    with rasterio.open(region.landcover_path) as ds:
        lc, t, crs, bounds = ds.read(1), ds.transform, ds.crs, ds.bounds
    land = np.where(lc == WATER, 0, 1).astype(np.uint8)[None]
    arr, tr = _warp(land, crs, t, "EPSG:4326", MASK_RES_DEG, tuple(bounds), None, 255)
    return _write(out / "landwater.tif", arr, "EPSG:4326", tr, 255)


AUTHORS = ("L.", "(Mill.) Rchb.", "Schur", "(L.) Scop.", "Willd. ex Spreng.", "Hoppe & Hornsch.")
GBIF_COLUMNS = ("occurrenceId", "verbatimScientificName", "scientificName", "key", "matchType", "confidence",
                "status", "rank", "kingdom", "phylum", "class", "order", "family", "genus", "species",
                "canonicalName", "authorship", "usageKey", "acceptedUsageKey")


def export_species(region, out: Path) -> str:
    """The species list with author names, and the lists their attributes come from, in the real
    formats: a GBIF-matched Habitats Directive and invasive list, a Red List, a growth-form list, an
    endemic list and trait medians (PlantTraitNet CSV columns). Returns the GeoFlora species table
    that ``geoflora species import`` makes of them (written too)."""
    folder = out / "species"
    sp = region.species
    named = [f"{s.name} {AUTHORS[i % len(AUTHORS)]}" for i, s in enumerate(sp)]
    rows = [(s.id, n) for s, n in zip(sp, named)]
    write_csv(folder / "species_list.csv", ("speciesId", "scientificName"), rows)

    def gbif(rows_sp):
        return [("", n, n, 1000 + s.id, "EXACT", 99, "ACCEPTED", "SPECIES", "Plantae", "Tracheophyta",
                 "Magnoliopsida", "", s.family, s.genus, s.name, s.name, n[len(s.name) + 1:], 1000 + s.id, "")
                for s, n in rows_sp]
    pairs = list(zip(sp, named))
    # a non-plant row, as in the real lists, that must not match anything
    animal = [("", "Ameiurus melas (Rafinesque, 1820)", "Ameiurus melas (Rafinesque, 1820)", 2340977, "EXACT", 99,
               "ACCEPTED", "SPECIES", "Animalia", "Chordata", "", "Siluriformes", "Ictaluridae", "Ameiurus",
               "Ameiurus melas", "Ameiurus melas", "(Rafinesque, 1820)", 2340977, "")]
    write_csv(folder / "art17.csv", GBIF_COLUMNS, gbif([p for p in pairs if p[0].eu_directive]) + animal)
    write_csv(folder / "invasive.csv", GBIF_COLUMNS, gbif([p for p in pairs if p[0].invasive]) + animal)
    write_csv(folder / "redlist.csv", ("scientificName", "europeanRegionalRedListCategory"),
              [(n, s.iucn) for s, n in pairs])
    write_csv(folder / "growth_form.csv", ("scientificName", "growthForm", "woody", "conifer", "family"),
              [(n, "tree" if s.tree else s.growth_form, "yes" if s.woody else "no", "yes" if s.conifer else "no",
                s.family) for s, n in pairs])
    write_csv(folder / "endemic.csv", ("scientificName",), [(n,) for s, n in pairs if s.endemic])
    traits = ("Height", "LeafArea", "SLA", "Leaf_N")
    write_csv(folder / "traits.csv",
              ("species", *(f"{t}_{k}" for t in traits for k in ("median", "sd", "lowerbound", "upperbound"))),
              [(n, *(getattr(s.traits[t], k) for t in traits for k in ("median", "sd", "lowerbound", "upperbound")))
               for s, n in pairs])
    table = folder / "species_table.csv"
    import_species(folder / "species_list.csv", table, directive=folder / "art17.csv",
                   invasive=folder / "invasive.csv", redlist=folder / "redlist.csv",
                   growth_form=folder / "growth_form.csv", endemic=folder / "endemic.csv",
                   traits=folder / "traits.csv")
    return str(table.relative_to(out))


def export_rasters(region, out: Path, log=print) -> Path:
    """Every input of ``region`` in the real layouts under ``out``; returns the sources file."""
    out = Path(out)
    s2 = export_s2(region, out)
    log(f"Sentinel-2: {len(s2)} UTM tiles")
    log(f"CHELSA: {export_climate(region, out)} monthly files")
    log(f"Landsat: {export_landsat(region, out)} quarterly composites")
    export_land_mask(region, out)
    species = export_species(region, out)
    sources = {
        "sentinel2": {"files": ["s2/*.tif"], "scale": 0.0001, "offset": -0.1, "nodata": 0},
        "climate": {"pattern": "chelsa/CHELSA_{var}_{month:02d}_{year}_V.2.1.tif"},
        "landsat": {"pattern": "landsat/{band}_{year}_q{quarter}.tif"},
        "land_mask": {"file": "landwater.tif", "land": [1], "water": "nearest"},
        "species": species,
    }
    path = write_text(out / "sources.yaml", yaml.safe_dump(sources, sort_keys=False))
    log(f"sources file: {path}")
    return path
