"""Pl@ntBERT per-cell habitat inference speed on a meta-tile: cells/s with and without deduplication.

    .venv/bin/python bench/plantbert.py [--region data/regions/demo] [--model data/models/demo/plantbert.pt]
                                        [--sdm data/models/demo/sdm.pt] [--window 100] [--threads 1]

Inputs: the deep-SDM's probabilities of the first meta-tile (meta-tile path, ``MetaTileSDM``) when
an SDM checkpoint exists, else the true probabilities. For each list length (top 50, top 100) and
each threshold (none; the SDM's conformal threshold, i.e. the conformal assemblage), the table
gives the share of distinct lists over the whole meta-tile (dedup ratio = cells / distinct lists)
and the measured speed on a ``window`` x ``window`` block of cells without and with
deduplication; the full meta-tile is also run with deduplication when its estimated time is under
``--max-seconds``. Without a trained Pl@ntBERT a randomly initialised one of the same size is used
(speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.data.region import load_region  # noqa: E402
from inference.habitat.infer import classify_metatile, metatile_tokens, unique_rows  # noqa: E402
from inference.habitat.plantbert import PAD, PlantBert, Vocab, bert_kwargs, build_classifier, load_plantbert  # noqa: E402
from inference.sdm.conformal import assemblage_threshold  # noqa: E402


def _model(args, region) -> PlantBert:
    if args.model and Path(args.model).is_file():
        return load_plantbert(args.model)
    print(f"no Pl@ntBERT at {args.model}: random {args.size}-size weights")
    vocab = Vocab.from_region(region)
    labels = list(region.meta["habitat_codes"])
    kw = bert_kwargs(args.size, len(vocab), 100, len(labels))
    return PlantBert(build_classifier(kw), vocab, labels, 100, args.size, kw)


def _probabilities(args, region, tile):
    cache = Path(args.cache) if args.cache else None
    if cache and cache.is_file():
        with np.load(cache) as z:
            return z["p"], z["ids"].tolist(), str(z["source"]), (float(z["t"]) if z["t"] >= 0 else None)
    if args.sdm and Path(args.sdm).is_file():
        from inference.sdm.model import load_sdm
        from inference.sdm.predict import MetaTileSDM

        model, norm, ck = load_sdm(Path(args.sdm))
        t0 = time.perf_counter()
        p = MetaTileSDM(model, norm).probabilities(region, tile).numpy()
        print(f"deep-SDM probabilities of {tile.id}: {time.perf_counter() - t0:.1f} s")
        out = (p, list(ck["species_ids"]), "deep-SDM", assemblage_threshold(ck["thresholds"]))
    else:
        out = (region.true_probability(tile), list(region.species_ids), "true", 0.1)
    if cache:
        np.savez(cache, p=out[0], ids=np.asarray(out[1]), source=out[2], t=-1.0 if out[3] is None else out[3])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--region", default="data/regions/demo")
    ap.add_argument("--model", default="data/models/demo/plantbert.pt")
    ap.add_argument("--sdm", default="data/models/demo/sdm.pt")
    ap.add_argument("--size", default="demo", choices=["demo", "paper"], help="size of the random model")
    ap.add_argument("--window", type=int, default=100, help="edge in cells of the window timed without dedup")
    ap.add_argument("--top-n", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=300, help="run the full meta-tile if estimated under this")
    ap.add_argument("--cache", default=None, help=".npz to keep the meta-tile probabilities between runs")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (AVX512-BF16 CPUs, GPUs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    region = load_region(args.region)
    tile = next(region.grid.metatiles())
    pb = _model(args, region)
    p, ids, source, conformal = _probabilities(args, region, tile)
    S, H, W = p.shape
    w = args.window
    r0, c0 = (H - w) // 2, (W - w) // 2
    win = np.ascontiguousarray(p[:, r0:r0 + w, c0:c0 + w])
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"Pl@ntBERT {pb.size} ({sum(q.numel() for q in pb.model.parameters()) / 1e6:.2f} M parameters); "
          f"{source} probabilities of meta-tile {tile.id} [{S}, {H}, {W}]; window {w} x {w}; "
          f"{'bfloat16 autocast' if args.amp else 'float32'}\n")
    rows = []
    for thr in (None, conformal):
        for n in args.top_n:
            toks = metatile_tokens(p, n, thr, pb.vocab.tokens_for_ids(ids))
            has = (toks != PAD).any(1)
            uniq, _ = unique_rows(toks[has])
            ratio_tile = has.sum() / max(len(uniq), 1)
            mean_len = float((toks != PAD).sum(1).mean())
            a = classify_metatile(pb, win, thr, n, ids, dedup=False, batch_size=args.batch_size, amp=args.amp)
            b = classify_metatile(pb, win, thr, n, ids, dedup=True, batch_size=args.batch_size, amp=args.amp)
            assert np.array_equal(a.index, b.index)
            lists_per_s = a.stats["cells_with_list"] / max(a.stats["model_seconds"], 1e-9)
            est_full = len(uniq) / max(lists_per_s, 1e-9)
            full = None
            if est_full <= args.max_seconds:
                full = classify_metatile(pb, p, thr, n, ids, dedup=True, batch_size=args.batch_size, amp=args.amp).stats
            rows.append((thr, n, mean_len, H * W, int(len(uniq)), ratio_tile, a.stats["cells_per_s"],
                         b.stats["dedup_ratio"], b.stats["cells_per_s"],
                         full["cells_per_s"] if full else None, full["seconds"] if full else est_full,
                         H * W / max(a.stats["cells_per_s"], 1e-9)))
    print("| threshold | top N | mean list | tile cells | distinct lists | tile dedup ratio | window cells/s no dedup "
          "| window dedup ratio | window cells/s dedup | tile cells/s dedup | tile s dedup | tile s no dedup (est.) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for thr, n, ml, cells, u, rt, a_cps, rw, b_cps, f_cps, f_s, est_no in rows:
        t = "none" if thr is None else f"{thr:.3f} (conformal)"
        fc = f"{f_cps:,.0f}" if f_cps else "-"
        fs = f"{f_s:,.0f}" + ("" if f_cps else " (est.)")
        print(f"| {t} | {n} | {ml:.1f} | {cells:,} | {u:,} | {rt:.2f} | {a_cps:,.0f} | {rw:.2f} | {b_cps:,.0f} | {fc} | "
              f"{fs} | {est_no:,.0f} |")


if __name__ == "__main__":
    main()
