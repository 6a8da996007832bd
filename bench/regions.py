"""The deep-SDM and its conformal thresholds over several generated regions: mean and spread, not
one region's figure.

    .venv/bin/python bench/regions.py [--size 2] [--species 300] [--epochs 12] [--out DIR]

Generates the regions below (other seeds at the default place, and another place in Europe with
another climate), trains the demo deep-SDM on each (as ``make run`` does) and reports, on the
held-out TEST blocks: macro AUC, sample F1 at the F1-optimal threshold, and at alpha 0.05, 0.1 and
0.2 the omission (pooled over presences and averaged over blocks) and the assemblage size (species
per survey) of the pooled split-conformal threshold (``global``) and of conformal risk control over
the calibration blocks (``blocks``) or over their 5 km quarters (``sub-blocks``: more units, a
weaker exchangeability with the 10 km test blocks), and the one ``geoflora compute`` uses
(``cascade``: :func:`inference.sdm.conformal.calibrate`). The last rows give mean and sd over the
regions.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.data.region import generate_region, load_region  # noqa: E402
from inference.sdm import conformal  # noqa: E402
from inference.sdm.dataset import region_samples  # noqa: E402
from inference.sdm.metrics import evaluate  # noqa: E402
from inference.sdm.model import load_sdm  # noqa: E402
from inference.sdm.train import TrainConfig, predict, train_sdm  # noqa: E402
from inference.splits import CAL, TEST  # noqa: E402

# (name, seed, lower-left EPSG:3035 x, y, bioregion): the default place (Black Forest and Gaeu,
# continental), another seed there, and the Lauragais south-east of Toulouse (about 1.1-1.7 E,
# 43.2-43.7 N, at the Mediterranean edge: 4 K warmer at sea level in the generator's climate).
REGIONS = [
    ("continental-seed0", 0, 4_200_000, 2_800_000, "CONTINENTAL"),
    ("continental-seed1", 1, 4_200_000, 2_800_000, "CONTINENTAL"),
    ("mediterranean-seed2", 2, 3_600_000, 2_275_000, "MEDITERRANEAN"),
]
ALPHAS = (0.05, 0.1, 0.2)
METHODS = ("global", "blocks", "sub-blocks", "cascade")  # cascade: what geoflora compute uses


def measure(name: str, seed: int, x0: float, y0: float, bioregion: str, args, root: Path) -> dict:
    folder = root / name
    if not (folder / "region.json").is_file():
        generate_region(folder, seed=seed, x0=x0, y0=y0, nx=args.size, ny=args.size, n_species=args.species,
                        bioregion=bioregion, country="virtual")
    region = load_region(folder)
    config = TrainConfig(epochs=args.epochs, seed=seed, device="auto")
    data = region_samples(region, seed=seed, s2_size=config.model_config(1).patch_size)
    ck = folder / "sdm.pt"
    if not ck.is_file():
        train_sdm(data, ck, config, progress=False, log=lambda *_: None)
    model, norm, meta = load_sdm(ck)
    pa = data.subset(~data.is_po)
    cal, test = pa.subset(pa.split == CAL), pa.subset(pa.split == TEST)
    p_cal, p_test = predict(model, norm, cal), predict(model, norm, test)
    t_f1 = meta["thresholds"]["f1_optimal"]
    row = {"region": name, "cal_blocks": int(len(np.unique(cal.block[cal.labels.any(1)]))),
           "test_blocks": int(len(np.unique(test.block[test.labels.any(1)]))),
           **{k: v for k, v in evaluate(test.labels, p_test, t_f1).items() if k in ("macro_auc", "sample_f1")}}
    for alpha in ALPHAS:  # the thresholds as the trainer computes them (inference.sdm.conformal.calibrate)
        th = conformal.calibrate(cal.labels, p_cal, alpha, cal.x, cal.y, cal.block)
        test_fig = conformal.held_out_report(test.labels, p_test, th, test.block)
        for method, key in (("global", "conformal_global"), ("blocks", "conformal_blocks"),
                            ("sub-blocks", "conformal_subblocks"), ("cascade", "conformal")):
            row[f"{method}@{alpha}"] = {
                "threshold": th[key], "omission": test_fig[f"omission_at_{key}"],
                "block_omission": test_fig[f"block_omission_at_{key}"],
                "set_size": test_fig[f"mean_set_size_at_{key}"]}
        row[f"cascade@{alpha}"]["method"] = th["conformal_method"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2, help="edge in meta-tiles (make run: 2)")
    ap.add_argument("--species", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("data/bench-regions"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = [measure(*r, args, args.out) for r in REGIONS]
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"# deep-SDM over {len(rows)} generated regions, {time.strftime('%Y-%m-%d')}, {platform.node()}, "
          f"{torch.get_num_threads()} threads, {args.size}x{args.size} meta-tiles, {args.species} species, "
          f"{time.perf_counter() - t0:.0f} s")
    print()
    print("| region | CAL / TEST blocks | macro AUC | F1 |" + "".join(
        f" omission {m} @{a} (blocks avg) | species {m} @{a} |" for a in ALPHAS for m in METHODS))
    print("|---|---|---|---|" + "---|---|" * (len(METHODS) * len(ALPHAS)))

    def cells(r):
        out = [f"{r['cal_blocks']} / {r['test_blocks']}", f"{r['macro_auc']:.3f}", f"{r['sample_f1']:.3f}"]
        for a in ALPHAS:
            for m in METHODS:
                e = r[f"{m}@{a}"]
                out += [f"{e['omission']:.3f} ({e['block_omission']:.3f})", f"{e['set_size']:.1f}"]
        return out

    for r in rows:
        print(f"| {r['region']} | " + " | ".join(cells(r)) + " |")
    keys = ["macro_auc", "sample_f1"]
    mean = {k: np.mean([r[k] for r in rows]) for k in keys}
    sd = {k: np.std([r[k] for r in rows], ddof=1) for k in keys}
    line = [f"{mean['macro_auc']:.3f} ± {sd['macro_auc']:.3f}", f"{mean['sample_f1']:.3f} ± {sd['sample_f1']:.3f}"]
    for a in ALPHAS:
        for m in METHODS:
            om = [r[f"{m}@{a}"]["omission"] for r in rows]
            ss = [r[f"{m}@{a}"]["set_size"] for r in rows]
            line += [f"{np.mean(om):.3f} ± {np.std(om, ddof=1):.3f} (max {np.max(om):.3f})",
                     f"{np.mean(ss):.1f} ± {np.std(ss, ddof=1):.1f}"]
    print("| mean ± sd | - | " + " | ".join(line) + " |")
    print()
    for a in ALPHAS:
        print(f"cascade threshold at alpha {a}: " + "; ".join(f"{r['region']} {r[f'cascade@{a}']['method']}" for r in rows))


if __name__ == "__main__":
    main()
