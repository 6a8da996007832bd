"""The whole meta-tile cascade: cells per second overall and per stage, and bytes per cell.

    .venv/bin/python bench/cascade.py [--region data/regions/demo] [--models data/models/demo]
                                      [--device auto|cpu|cuda] [--threads N] [--habitat-step 8]
                                      [--check-window 120]

Runs one meta-tile (250,000 cells) of the region through every stage the trained models allow
(SDM, indicators, species layers, Pl@ntBERT, BotaCLIP embedding, trait CWMs), then writes its COGs
to a temporary folder as the pipeline does. The anchor, measured in the same run, is the naive
cascade's first stage: the SDM run on each cell's own cut patches (per-patch inference), on 512
cells. The published system's rate (about 51 cells/s per A100 for the whole cascade) is printed
for reference only: it was not measured here.

Pl@ntBERT runs on a lattice every ``--habitat-step`` cells and refines where classes differ (the
pipeline's ``GEOFLORA_HABITAT_STEP``); the table gives the share of cells it evaluated, and
``--check-window`` W compares the refined map with Pl@ntBERT run on every cell of a W x W window in
the middle of the meta-tile (the share of cells with the same class, and the same in the window's
cells that were filled rather than evaluated).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.settings import Settings  # noqa: E402
from inference.data.region import load_region  # noqa: E402
from inference.grid import CELLS_PER_METATILE  # noqa: E402
from inference.pipeline.outputs import EMBEDDING_RGB, OUTPUTS, habitat_outputs  # noqa: E402
from inference.pipeline.run import write_outputs  # noqa: E402
from inference.pipeline.stages import compute_metatile, models_for, resolve_device, run_profile  # noqa: E402
from inference.sdm.predict import per_patch_probabilities  # noqa: E402

PUBLISHED_CELLS_PER_S = 51  # 5.5 billion cells / 30,000 A100 GPU-hours (cascade paper), not measured here


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--region", type=Path, default=Path("data/regions/demo"))
    ap.add_argument("--models", type=Path, default=Path("data/models/demo"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--habitat-step", type=int, default=Settings(_env_file=None).habitat_step,
                    help="Pl@ntBERT lattice step (1: every cell)")
    ap.add_argument("--check-window", type=int, default=120,
                    help="edge of the window where the refined habitat map is compared with every-cell inference (0: no check)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    region = load_region(args.region)
    opt = {k: (p if (p := args.models / f"{k}.pt").is_file() else None) for k in ("plantbert", "botaclip")}
    models = models_for(args.models / "sdm.pt", device, opt["plantbert"], opt["botaclip"])
    tile = next(region.grid.metatiles())
    n = CELLS_PER_METATILE * CELLS_PER_METATILE

    # anchor: per-patch SDM on 512 cells
    x, y = region.cell_centres(tile)
    model = models.sdm.model
    t = time.perf_counter()
    per_patch_probabilities(model.cpu(), models.sdm.norm, region, x.ravel()[:512], y.ravel()[:512])
    naive = 512 / (time.perf_counter() - t)
    model.to(device)

    profile = run_profile(region, models, n_cells=500, habitat_step=args.habitat_step)
    timings: dict[str, float] = {}
    info: dict = {}
    t0 = time.perf_counter()
    arrays = compute_metatile(region, tile, models, profile, timings=timings, info=info)
    compute_s = time.perf_counter() - t0
    check = _habitat_check(region, tile, models, profile, info, args.check_window) if info else None
    specs = list(OUTPUTS)
    if models.plantbert is not None:
        specs += habitat_outputs(list(models.plantbert.labels))
    if models.botaclip is not None:
        specs.append(EMBEDDING_RGB)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), _env_file=None)
        t = time.perf_counter()
        manifest = write_outputs(settings, "bench", tile, arrays, specs, species_ids=models.species_ids)
        timings["write COGs"] = time.perf_counter() - t
    model_stages = {k: v for k, v in timings.items() if k != "truth"}  # truth layers are generator-only
    total = sum(model_stages.values())
    sizes = manifest["files"]
    species_bytes = sum(v for k, v in sizes.items() if k.startswith("species/"))

    print(f"# cascade on one meta-tile ({n:,} cells), {len(models.species_ids)} species, device {device}, "
          f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}")
    print()
    print("| stage | seconds | cells/s | share |")
    print("|---|---|---|---|")
    for stage, sec in model_stages.items():
        print(f"| {stage} | {sec:.2f} | {n / sec:,.0f} | {sec / total:.0%} |")
    print(f"| **whole cascade** | **{total:.2f}** | **{n / total:,.0f}** | 100% |")
    print()
    print(f"anchor (same run): per-patch SDM alone {naive:,.0f} cells/s -> whole cascade "
          f"{n / total / naive:.1f}x its speed; published GeoPl@ntNet {PUBLISHED_CELLS_PER_S} cells/s per A100 "
          f"(reference, not measured here)")
    print(f"compute wall time {compute_s:.1f} s (includes generator-only truth layers: "
          f"{timings.get('truth', 0):.1f} s)")
    store = sizes.get("assemblage.bin", 0)
    print(f"bytes per cell, all layers: {sum(sizes.values()) / n:.1f} B "
          f"(species layers {species_bytes / n:.1f} B for {len(manifest['species'])} species, assemblage store "
          f"{store / n:.1f} B, other layers {(sum(sizes.values()) - species_bytes - store) / n:.1f} B); "
          f"published maps about 2,700 B")
    if info:
        h = info["habitat"]
        print(f"Pl@ntBERT: step {h['step']}, evaluated {h['evaluated']:,} of {h['cells_with_list']:,} cells with a "
              f"list ({h['evaluated_share']:.1%}), {h['model_lists']:,} distinct lists, mean list length "
              f"{h['mean_list_length']:.1f}")
    if check:
        print(f"habitat check on a {check['window']} x {check['window']} window: same level-3 class as every-cell "
              f"inference in {check['agree']:.2%} of cells ({check['agree_filled']:.2%} of the "
              f"{check['filled']:,} filled cells); mean |probability difference| {check['prob_diff']:.4f}")


def _habitat_check(region, tile, models, profile, info: dict, w: int) -> dict | None:
    """Refined vs every-cell Pl@ntBERT on a w x w window in the middle of the meta-tile."""
    from inference.habitat.infer import classify_metatile

    if w <= 0 or models.plantbert is None:
        return None
    prob = models.sdm.probabilities(region, tile)
    r0 = c0 = (CELLS_PER_METATILE - w) // 2
    win = prob[:, r0:r0 + w, c0:c0 + w]
    kw = dict(threshold=profile.threshold, species_ids=models.species_ids, batch_size=models.batches.lists,
              amp=win.device.type == "cuda")
    dense = classify_metatile(models.plantbert, win, step=1, **kw)
    refined = classify_metatile(models.plantbert, win, step=profile.habitat_step, **kw)
    has = dense.index >= 0
    filled = has & ~refined.evaluated if refined.evaluated is not None else np.zeros_like(has)
    same = refined.index == dense.index
    return {"window": w, "agree": float(same[has].mean()), "filled": int(filled.sum()),
            "agree_filled": float(same[filled].mean()) if filled.any() else 1.0,
            "prob_diff": float(np.abs(refined.probability - dense.probability)[has].mean())}


if __name__ == "__main__":
    main()
