"""The raster-region path: what reading real-format files costs per meta-tile, against the
generated region the files were exported from (the anchor, measured in the same run).

    .venv/bin/python bench/raster_region.py [--species 300] [--seed 0] [--keep DIR]

Generates a one-meta-tile region, writes it out in the real layouts (``geoflora generate
--export-rasters``: two UTM Sentinel-2 tiles in L2A DN, 912 CHELSA monthly EPSG:4326 files, 504
Landsat composites, a land/water raster, species lists), makes a raster region of them
(``geoflora region create``) and times, per meta-tile:

* export and ``region create`` (coverage of every input);
* reading the inputs the cascade reads: every Sentinel-2 pixel of the meta-tile (with the SDM's
  patch margin) and the climate and Landsat cubes of its distinct raster pixels;
* the cascade's SDM stage and the rest (indicators, species layers, assemblages, trait CWMs), with
  a demo-size deep-SDM (random weights: speed does not depend on them);

and prints disk use: the exported inputs per meta-tile, by input.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.data.export import export_rasters  # noqa: E402
from inference.data.raster_region import create_raster_region  # noqa: E402
from inference.data.region import generate_region, load_region  # noqa: E402
from inference.grid import CELLS_PER_METATILE, METATILE_M  # noqa: E402
from inference.pipeline.stages import compute_metatile, models_for, run_profile  # noqa: E402
from inference.sdm.model import DEMO, MultimodalSDM, SDMConfig, save_sdm  # noqa: E402
from inference.sdm.preprocess import Normalizer  # noqa: E402


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _demo_sdm(region, out: Path) -> Path:
    torch.manual_seed(0)
    model = MultimodalSDM(SDMConfig(n_species=len(region.species), **DEMO)).eval()
    x, y = region.cell_centres(next(region.grid.metatiles()))
    sample = region.extract_inputs(x[::50, ::50].ravel(), y[::50, ::50].ravel())
    norm = Normalizer.fit(sample)
    return save_sdm(out, model, norm, region.species_ids, {"alpha": 0.1, "conformal_global": 0.05,
                                                             "f1_optimal": 0.3}, {}, {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--species", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="keep the files here")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="geoflora-bench-raster-"))
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"# raster-region path, {time.strftime('%Y-%m-%d')}, {platform.node()} "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"{args.species} species, 1 meta-tile")
    gen_dir = root / "generated"
    if not (gen_dir / "region.json").is_file():
        generate_region(gen_dir, seed=args.seed, nx=1, ny=1, n_species=args.species)
    gen = load_region(gen_dir)
    tile = next(gen.grid.metatiles())
    exported = root / "exported"
    shutil.rmtree(exported, ignore_errors=True)
    t0 = time.perf_counter()
    export_rasters(gen, exported, log=lambda *_: None)
    t_export = time.perf_counter() - t0
    ras_dir = root / "raster"
    shutil.rmtree(ras_dir, ignore_errors=True)
    t0 = time.perf_counter()
    create_raster_region(ras_dir, "bench", tile.bounds, exported / "sources.yaml", log=lambda *_: None)
    t_create = time.perf_counter() - t0
    ras = load_region(ras_dir)

    P = DEMO["patch_size"]
    n = 5 * (CELLS_PER_METATILE - 1) + P
    left = tile.x0 + 20 - (P // 2) * 10
    top = tile.y0 + METATILE_M - 20 + (P // 2) * 10
    x, y = gen.cell_centres(tile)
    xs, ys = x.ravel(), y.ravel()
    rows = []
    for label, region in (("generated (anchor)", gen), ("raster region", ras)):
        t0 = time.perf_counter()
        region.s2_window(left, top, n, n)
        t_s2 = time.perf_counter() - t0
        t0 = time.perf_counter()
        for name, extract in (("climate", region.extract_climate), ("landsat", region.extract_landsat)):
            _, first = np.unique(region.cube_keys(name, xs, ys), return_index=True)
            extract(xs[first], ys[first])
        rows.append((label, t_s2, time.perf_counter() - t0))
    ck = _demo_sdm(gen, root / "sdm.pt")
    models = models_for({"sdm": ck}, "cpu")
    profile = run_profile(gen, models, n_cells=500)
    timings = {}
    for label, region in (("generated (anchor)", gen), ("raster region", ras)):
        stages: dict = {}
        t0 = time.perf_counter()
        compute_metatile(region, tile, models, profile, timings=stages)
        timings[label] = (time.perf_counter() - t0, stages)
    print()
    print("| step | generated (anchor) | raster region | ratio |")
    print("|---|---|---|---|")
    print(f"| export to real layouts | - | {t_export:.1f} s | - |")
    print(f"| region create (checks, coverage) | - | {t_create:.1f} s | - |")
    (_, g_s2, g_cubes), (_, r_s2, r_cubes) = rows
    print(f"| read S2 of the meta-tile ({n} x {n} px) | {g_s2:.2f} s | {r_s2:.2f} s | {r_s2 / g_s2:.1f} |")
    print(f"| read climate + Landsat cubes (distinct pixels) | {g_cubes:.2f} s | {r_cubes:.2f} s | "
          f"{r_cubes / g_cubes:.1f} |")
    g_all, g_st = timings["generated (anchor)"]
    r_all, r_st = timings["raster region"]
    print(f"| cascade SDM stage (demo-size SDM, CPU) | {g_st['sdm']:.1f} s | {r_st['sdm']:.1f} s | "
          f"{r_st['sdm'] / g_st['sdm']:.1f} |")
    print(f"| cascade, whole meta-tile | {g_all:.1f} s | {r_all:.1f} s | {r_all / g_all:.1f} |")
    print()
    print("| exported input | bytes per meta-tile |")
    print("|---|---|")
    for part in ("s2", "chelsa", "landsat", "species"):
        print(f"| {part} | {_du(exported / part) / 1e6:.1f} MB |")
    print(f"| landwater.tif | {(exported / 'landwater.tif').stat().st_size / 1e3:.0f} kB |")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
