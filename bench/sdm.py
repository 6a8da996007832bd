"""SDM inference speed: cells per second, per-patch (naive) vs meta-tile (shared feature maps).

    .venv/bin/python bench/sdm.py [--region data/regions/demo] [--species 300] [--paper-species 11255]

Paper-size (4 x 128 x 128, widths 64-512, 11,255 species) and demo-size models, on the CPU and on
a CUDA GPU when one is present. Weights are random: speed does not depend on them. The anchor is
the naive method (cut each cell's patches and run the whole model) measured in the same run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.data.region import generate_region, load_region  # noqa: E402
from inference.sdm.model import DEMO, PAPER, MultimodalSDM, SDMConfig  # noqa: E402
from inference.sdm.predict import MetaTileSDM, per_patch_probabilities  # noqa: E402
from inference.sdm.preprocess import Normalizer  # noqa: E402


def _norm(region) -> Normalizer:
    x, y = region.cell_centres(next(region.grid.metatiles()))
    sample = region.extract_inputs(x[::50, ::50].ravel(), y[::50, ::50].ravel())
    return Normalizer.fit(sample)


def bench(name, cfg, region, norm, device, naive_cells, fast_rows):
    model = MultimodalSDM(cfg).eval()
    tile = next(region.grid.metatiles())
    x, y = region.cell_centres(tile)
    xs, ys = x.ravel()[:naive_cells], y.ravel()[:naive_cells]
    with torch.no_grad():
        t = time.perf_counter()
        per_patch_probabilities(model, norm, region, xs, ys, batch=32)
        naive = naive_cells / (time.perf_counter() - t)
        runner = MetaTileSDM(model, norm, device=device)
        runner.s2_features(region, tile, n_rows=min(fast_rows, 20))  # warm-up
        t = time.perf_counter()
        feats = runner.s2_features(region, tile, n_rows=fast_rows)
        n_cells = feats.shape[0] * feats.shape[1]
        head = feats.reshape(n_cells, -1) @ runner.head_parts["s2"].T
        torch.sigmoid(head)
        if device == "cuda":
            torch.cuda.synchronize()
        s2_time = time.perf_counter() - t
        xs, ys = x.ravel(), y.ravel()
        t = time.perf_counter()
        runner._cube_logits("climate", next(iter(region.climate_paths.values())), region.extract_climate, xs, ys)
        runner._cube_logits("landsat", region.landsat_path, region.extract_landsat, xs, ys)
        cube_time = (time.perf_counter() - t) * n_cells / len(xs)
    fast = n_cells / (s2_time + cube_time)
    return {"model": name, "device": device, "naive": naive, "fast": fast, "ratio": fast / naive}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--region", type=Path, default=Path("data/regions/demo"))
    ap.add_argument("--species", type=int, default=300)
    ap.add_argument("--paper-species", type=int, default=11_255)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if (args.region / "region.json").is_file():
        region = load_region(args.region)
    else:
        tmp = Path(tempfile.mkdtemp()) / "bench-region"
        print(f"no region at {args.region}: generating a 1 x 1 meta-tile one in {tmp}")
        region = generate_region(tmp, seed=0, nx=1, ny=1, n_species=args.species)
    norm = _norm(region)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        rows.append(bench("demo", SDMConfig(n_species=args.species, **DEMO), region, norm, device,
                          naive_cells=256, fast_rows=500 if device == "cuda" else 100))
        rows.append(bench("paper", SDMConfig(n_species=args.paper_species, **PAPER), region, norm, device,
                          naive_cells=64 if device == "cpu" else 2048, fast_rows=10 if device == "cpu" else 500))
    print(f"\n{time.strftime('%Y-%m-%d')} {platform.node()} {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {args.threads} threads")
    print("| model | device | per-patch cells/s (anchor) | meta-tile cells/s | ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['device']} | {r['naive']:.0f} | {r['fast']:.0f} | {r['ratio']:.1f}x |")


if __name__ == "__main__":
    main()
