"""Pl@ntBERT against the MLP on deep-SDM lists over several generated regions, with the ablation
of what the papers describe: mean and spread, not one region's figure.

    .venv/bin/python bench/habitat_regions.py [--out data/bench-regions] [--variants ...] [--n-test 3000]

For each region of ``bench/regions.py`` (run that first: it generates the regions and trains their
deep SDMs into ``--out``), trains Pl@ntBERT at the size ``make run`` uses (``small``, top 50,
15,000 truth-sampled plots + 5,000 deep-SDM lists, 1 masked-species epoch, 2 classification
epochs and the fine-tuning pass over predicted lists: ``backend/cli/runs.py`` ``DEMO_PLANTBERT``)
in these variants:

* ``make run``: as above;
* ``no stage 1``: the classifier from scratch, no species-to-species (masked-species) stage;
* ``probabilities``: each listed species also carries the bin of its probability (8 log bins over
  0.001-1, as token types; the cascade paper feeds the SDM's probabilities);
* ``plot length``: predicted lists cut to their expected plot richness, round(sum of p), instead of
  always 50 species (the plots Pl@ntBERT learns from list 9-50);
* ``probabilities + plot length``.

Each variant is compared with the MLP trained on the same corpus (rank-weighted multi-hot;
``MLP (p)``: the probabilities as weights) on deep-SDM lists at ``--n-test`` random TEST-block
cells, cut the variant's way. Prints per region and variant the level-3 accuracy (%) of
Pl@ntBERT and of both MLPs and Pl@ntBERT minus the MLP, then mean +- sd over the regions, and
writes ``habitat_results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.regions import REGIONS  # noqa: E402
from inference.data.region import load_region  # noqa: E402
from inference.habitat import corpus as C  # noqa: E402
from inference.habitat.baselines import MLPBaseline  # noqa: E402
from inference.habitat.evaluate import level_accuracy  # noqa: E402
from inference.habitat.plantbert import Vocab  # noqa: E402
from inference.habitat.train import PlantBertConfig, train_stages, training_corpus  # noqa: E402
from inference.splits import TEST  # noqa: E402

MAKE_RUN = dict(size="small", top_n=50, n_plots=15_000, cls_epochs=2, mlm_epochs=1, sdm_lists=5_000)
VARIANTS = {
    "make run": {},
    "no stage 1": {"mlm_epochs": 0},
    "probabilities": {"prob_bins": 8},
    "plot length": {"list_length": "expected"},
    "probabilities + plot length": {"prob_bins": 8, "list_length": "expected"},
}


def measure(name: str, seed: int, root: Path, variants: list[str], n_test: int, log) -> dict:
    folder = root / name
    sdm_path = folder / "sdm.pt"
    if not sdm_path.is_file():
        raise SystemExit(f"{sdm_path} is missing: run bench/regions.py --out {root} first")
    region = load_region(folder)
    sdm = C.load_sdm_runner(sdm_path)
    cells = C.RegionCells(region, seed)
    vocab = Vocab.from_region(region)
    labels = list(region.meta["habitat_codes"])
    x, y, lab = C.sample_cells(region, n_test, TEST, seed, cells, "test-cells")
    corpora, tests, mlps = {}, {}, {}
    out = {"region": name, "variants": {}}
    for variant in variants:
        config = replace(PlantBertConfig(seed=seed, **MAKE_RUN), **VARIANTS[variant])
        length = config.list_length
        if length not in corpora:  # corpus, test lists and MLPs depend only on how lists are cut
            t0 = time.perf_counter()
            corpora[length] = training_corpus(region, config, sdm, lambda *_: None, cells)
            tests[length] = C.sdm_lists(region, sdm, vocab, x, y, lab, config.top_n, length=length)
            train, val = corpora[length]
            mlps[length] = {
                w: MLPBaseline(len(vocab), len(labels), top_n=config.top_n, seed=seed, weights=w).fit(
                    train.tokens, train.label, val.tokens, val.label, values=train.values, val_values=val.values)
                for w in ("rank", "probability")}
            log(f"{name}: corpus, test lists and MLPs for list length {length!r} ({time.perf_counter() - t0:.0f} s)")
        train, val = corpora[length]
        test = tests[length]
        t0 = time.perf_counter()
        pb, rep = train_stages(train, val, vocab, labels, config, log=lambda *_: None)
        seconds = time.perf_counter() - t0
        pred, _ = pb.predict(test.tokens, values=test.values)
        row = {"plantbert": level_accuracy(labels, test.label, pred),
               "mlp": level_accuracy(labels, test.label, mlps[length]["rank"].predict(test.tokens)),
               "mlp_p": level_accuracy(labels, test.label, mlps[length]["probability"].predict(test.tokens, test.values)),
               "train_seconds": round(seconds, 1), "mean_list_length": float(test.lengths.mean()),
               "best_epoch": rep["best_epoch"]}
        out["variants"][variant] = row
        log(f"{name} / {variant}: level 3 Pl@ntBERT {100 * row['plantbert']['level3']:.1f} %, MLP "
            f"{100 * row['mlp']['level3']:.1f} %, MLP (p) {100 * row['mlp_p']['level3']:.1f} % "
            f"({seconds:.0f} s, mean list {row['mean_list_length']:.1f})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/bench-regions"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--n-test", type=int, default=3000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for name, seed, *_ in REGIONS:
        rows.append(measure(name, seed, args.out, args.variants, args.n_test, lambda m: print(m, flush=True)))
        (args.out / "habitat_results.json").write_text(json.dumps(rows, indent=2))
    print()
    print(f"# Pl@ntBERT vs MLP on deep-SDM lists over {len(rows)} generated regions, {time.strftime('%Y-%m-%d')}, "
          f"{platform.node()}, {torch.get_num_threads()} threads, {args.n_test} TEST cells per region, "
          f"{time.perf_counter() - t0:.0f} s")
    print()
    print("| variant | region | mean list | Pl@ntBERT L3 | MLP L3 | MLP (p) L3 | Pl@ntBERT - MLP | Pl@ntBERT L1 / L2 | train s |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for variant in args.variants:
        diffs, accs, mlp, mlp_p = [], [], [], []
        for r in rows:
            v = r["variants"][variant]
            pb, m, mp = (100 * v[k]["level3"] for k in ("plantbert", "mlp", "mlp_p"))
            diffs.append(pb - m)
            accs.append(pb)
            mlp.append(m)
            mlp_p.append(mp)
            print(f"| {variant} | {r['region']} | {v['mean_list_length']:.1f} | {pb:.1f} | {m:.1f} | {mp:.1f} | "
                  f"{pb - m:+.1f} | {100 * v['plantbert']['level1']:.1f} / {100 * v['plantbert']['level2']:.1f} | "
                  f"{v['train_seconds']:.0f} |")

        def ms(a):
            return f"{np.mean(a):.1f} ± {np.std(a, ddof=1):.1f}" if len(a) > 1 else f"{a[0]:.1f}"

        print(f"| **{variant}** | mean ± sd | - | {ms(accs)} | {ms(mlp)} | {ms(mlp_p)} | **{ms(diffs)}** | - | - |")


if __name__ == "__main__":
    main()
