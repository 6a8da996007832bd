"""The whole meta-tile cascade: cells per second overall and per stage, and bytes per cell.

    .venv/bin/python bench/cascade.py [--region data/regions/demo] [--models data/models/demo]
                                      [--device auto|cpu|cuda] [--threads N] [--habitat-step 8]
                                      [--check-window 120]
    .venv/bin/python bench/cascade.py --size paper [--species 11255] [--rows N] [--device cuda]

Runs one meta-tile (250,000 cells) of the region through every stage the trained models allow
(SDM, indicators, species layers, Pl@ntBERT, BotaCLIP embedding, trait CWMs), then writes its COGs
to a temporary folder as the pipeline does. The anchor, measured in the same run, is the naive
cascade's first stage: the SDM run on each cell's own cut patches (per-patch inference), on 512
cells.

``--size paper`` runs paper-size models with random weights (speed does not depend on them) on a
generated one-meta-tile region of ``--species`` species (11,255 as GeoPlant; generated once under
``data/regions/bench-paper-<species>``): the multimodal SDM at paper size (128 px S2 patches,
widths 64-512), Pl@ntBERT at bert-base size on the first 100 species of each list, BotaCLIP on a
DINOv2 ViT-B/14 (random weights, 4 bands, 56 px patches: 16 tokens per cell), the same indicators,
species layers, assemblage store and trait CWMs. The conformal threshold is set so that a cell's
assemblage holds 90 species on average (the published SDM assemblages' size), and Pl@ntBERT runs
on every cell (``--habitat-step`` 1: random weights give no realistic habitat boundaries to
refine). On a CUDA GPU it runs the whole meta-tile with bfloat16 autocast; on a CPU, only the first
``--rows`` rows (default 2, 1,000 cells) -- a check that the path works, not a speed figure. The published system's rate (about 51 cells/s per A100 for the whole cascade) is printed
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

from backend.core.settings import Settings  # noqa: E402
from inference.data.region import load_region  # noqa: E402
from inference.grid import CELLS_PER_METATILE  # noqa: E402
from inference.indicators import specialist_mask  # noqa: E402
from inference.pipeline.outputs import EMBEDDING_RGB, OUTPUTS, TRUE_RICHNESS, habitat_outputs  # noqa: E402
from inference.pipeline.run import OutputWriter, write_outputs  # noqa: E402
from inference.pipeline.stages import (  # noqa: E402
    Batches,
    CascadeModels,
    RunProfile,
    compute_metatile,
    models_for,
    resolve_device,
    run_profile,
)
from inference.sdm.predict import MetaTileSDM, per_patch_probabilities  # noqa: E402

PUBLISHED_CELLS_PER_S = 51  # 5.5 billion cells / 30,000 A100 GPU-hours (cascade paper), not measured here


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["demo", "paper"], default="demo",
                    help="demo: the trained demo models; paper: paper-size models with random weights")
    ap.add_argument("--region", type=Path, default=Path("data/regions/demo"))
    ap.add_argument("--models", type=Path, default=Path("data/models/demo"))
    ap.add_argument("--species", type=int, default=11_255, help="paper size: species of the generated region")
    ap.add_argument("--rows", type=int, default=0,
                    help="meta-tile rows to compute (0: all 500; paper size on a CPU: 2)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--habitat-step", type=int, default=None,
                    help="Pl@ntBERT lattice step (1: every cell; default: the setting for demo, 1 for paper)")
    ap.add_argument("--no-overlap", dest="overlap", action="store_false",
                    help="skip the second pass that writes files while computing (as the workers do)")
    ap.add_argument("--check-window", type=int, default=120,
                    help="edge of the window where the refined habitat map is compared with every-cell inference (0: no check)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    tile_rows = args.rows or (2 if args.size == "paper" and device == "cpu" else CELLS_PER_METATILE)
    tile_rows = max(1, min(CELLS_PER_METATILE, tile_rows))
    if args.size == "paper":
        step = args.habitat_step or 1
        region = _paper_region(args.species)
        models, profile = _paper_models(region, device, step)
        anchor_cells = 64
        args.check_window = 0
    else:
        step = args.habitat_step or Settings(_env_file=None).habitat_step
        region = load_region(args.region)
        opt = {k: (p if (p := args.models / f"{k}.pt").is_file() else None) for k in ("plantbert", "botaclip")}
        models = models_for({"sdm": args.models / "sdm.pt", **opt}, device)
        anchor_cells = 512
    tile = next(region.grid.metatiles())
    n = tile_rows * CELLS_PER_METATILE

    # anchor: per-patch SDM (each cell's own cut patches, the whole model) on the CPU
    x, y = region.cell_centres(tile)
    model = models.sdm.model
    t = time.perf_counter()
    per_patch_probabilities(model.cpu(), models.sdm.norm, region, x.ravel()[:anchor_cells], y.ravel()[:anchor_cells])
    naive = anchor_cells / (time.perf_counter() - t)
    model.to(device)

    if args.size == "demo":
        profile = run_profile(region, models, n_cells=500, habitat_step=step)
    timings: dict[str, float] = {}
    info: dict = {}
    t0 = time.perf_counter()
    arrays = compute_metatile(_NoTruth(region) if args.size == "paper" else region, tile, models, profile,
                              timings=timings, info=info, n_rows=tile_rows)
    compute_s = time.perf_counter() - t0
    check = _habitat_check(region, tile, models, profile, info, args.check_window) if info else None
    specs = [o for o in OUTPUTS if args.size == "demo" or o.kind != TRUE_RICHNESS.kind]  # paper: no truth
    if models.plantbert is not None:
        specs += habitat_outputs(list(models.plantbert.labels))
    if models.botaclip is not None:
        specs.append(EMBEDDING_RGB)
    manifest = None
    if tile_rows == CELLS_PER_METATILE:  # COGs are whole meta-tiles
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), _env_file=None)
            t = time.perf_counter()
            manifest = write_outputs(settings.layout, "bench", tile, arrays, specs, species_ids=models.species_ids)
            timings["write COGs"] = time.perf_counter() - t
    model_stages = {k: v for k, v in timings.items() if k != "truth"}  # truth layers are generator-only
    total = sum(model_stages.values())
    overlapped = None
    if manifest and args.overlap:
        # as a worker runs it: the SDM-derived files are written while Pl@ntBERT and BotaCLIP compute
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), _env_file=None)
            t = time.perf_counter()
            writer = OutputWriter(settings.layout, "bench", tile, [o for o in specs if o.kind != TRUE_RICHNESS.kind],
                                  models.species_ids)
            writer.finish(compute_metatile(_NoTruth(region), tile, models, profile, ready=writer.submit))
            overlapped = time.perf_counter() - t

    what = "one meta-tile" if manifest else f"the first {tile_rows} rows of a meta-tile (no COGs written)"
    print(f"# {args.size}-size cascade on {what} ({n:,} cells), {len(models.species_ids)} species, device {device}, "
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
    if overlapped:
        print(f"as a worker runs it (files written while Pl@ntBERT and BotaCLIP compute, no truth layers): "
              f"{overlapped:.2f} s for the meta-tile, {n / overlapped:,.0f} cells/s")
    if manifest:
        sizes = manifest["files"]
        species_bytes = sum(v for k, v in sizes.items() if k.startswith("species/"))
        store = sizes.get("assemblage.bin", 0)
        print(f"bytes per cell, all layers: {sum(sizes.values()) / n:.1f} B "
              f"(species layers {species_bytes / n:.1f} B for {len(manifest['species'])} species, assemblage store "
              f"{store / n:.1f} B, other layers {(sum(sizes.values()) - species_bytes - store) / n:.1f} B); "
              f"published maps about 2,700 B")
    if info:
        h = info["habitat"]
        print(f"Pl@ntBERT: step {h['step']}, evaluated {h['evaluated']:,} of {h['cells_with_list']:,} cells with a "
              f"list ({h['evaluated_share']:.1%}), {h['model_lists']:,} distinct lists, mean list length "
              f"{h['mean_list_length']:.1f}; lists built in {h['token_seconds']:.1f} s, model {h['model_seconds']:.1f} s")
    if check:
        print(f"habitat check on a {check['window']} x {check['window']} window: same level-3 class as every-cell "
              f"inference in {check['agree']:.2%} of cells ({check['agree_filled']:.2%} of the "
              f"{check['filled']:,} filled cells); mean |probability difference| {check['prob_diff']:.4f}")


class _NoTruth:
    """A region without its generator-only truth layers (paper size: 11,255 true-probability planes
    would dwarf the cascade being measured)."""

    def __init__(self, region) -> None:
        self._region = region

    def __getattr__(self, name):
        if name == "iter_true_probability":
            raise AttributeError(name)
        return getattr(self._region, name)


def _paper_region(n_species: int):
    """A generated one-meta-tile region with ``n_species`` species (made once, then reused)."""
    from inference.data.region import generate_region

    path = Path("data/regions") / f"bench-paper-{n_species}"
    if not (path / "region.json").is_file():
        print(f"generating {path} ({n_species:,} species, one meta-tile)...", flush=True)
        generate_region(path, seed=3, nx=1, ny=1, n_species=n_species, n_surveys=200, n_po=200, n_photos=0)
    return load_region(path)


def _paper_models(region, device: str, habitat_step: int, list_size: int = 90):
    """Paper-size SDM, Pl@ntBERT (bert-base) and BotaCLIP (DINOv2 ViT-B/14) with random weights, and
    a run profile whose threshold gives assemblages of ``list_size`` species on average (specialists
    from the first row of cells)."""
    from transformers import Dinov2Config, Dinov2Model

    from bench.sdm import _norm
    from inference.botaclip.embed import embed_points, fit_pca_colours
    from inference.botaclip.model import BotaCLIP, BotaCLIPConfig, HFImageEncoder
    from inference.habitat.plantbert import PlantBert, Vocab, bert_kwargs, build_classifier
    from inference.sdm.model import PAPER, MultimodalSDM, SDMConfig

    torch.manual_seed(0)
    tile = next(region.grid.metatiles())
    x, y = region.cell_centres(tile)
    norm = _norm(region)  # the normaliser bench/sdm.py fits for its random-weight SDMs
    species_ids = np.asarray(region.species_ids)
    sdm = MetaTileSDM(MultimodalSDM(SDMConfig(n_species=len(species_ids), **PAPER)).eval(), norm, device=device)
    vocab, labels = Vocab.from_region(region), list(region.meta["habitat_codes"])
    kw = bert_kwargs("paper", len(vocab), 100, len(labels))
    pb = PlantBert(build_classifier(kw), vocab, labels, 100, "paper", kw).to(device)
    with tempfile.TemporaryDirectory() as d:  # a ViT-B/14 folder as GEOFLORA_EO_ENCODER_PATH would name
        Dinov2Model(Dinov2Config(num_channels=4, image_size=56)).save_pretrained(d)
        encoder = HFImageEncoder(Path(d), 56)
    bc = BotaCLIP(encoder, len(species_ids), BotaCLIPConfig()).eval()
    bc.norm, bc.species_ids = norm, species_ids
    bc.pca_colours = fit_pca_colours(embed_points(region, bc, x[::25, ::25].ravel(), y[::25, ::25].ravel()))
    bc.to(device)
    models = CascadeModels(sdm=sdm, species_ids=species_ids, thresholds={}, checkpoint=Path("random-paper-size"),
                           plantbert=pb, botaclip=bc, batches=Batches())
    p = sdm.probabilities(region, tile, n_rows=1).flatten(1).float().cpu().numpy()  # [S, 500 cells]
    threshold = float(np.quantile(p, 1.0 - list_size / len(species_ids)))
    models.thresholds = {"conformal_global": threshold}
    specialists = tuple(int(i) for i in np.flatnonzero(specialist_mask(p.T, threshold)))
    return models, RunProfile(threshold, specialists, p.shape[1], habitat_step)


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
