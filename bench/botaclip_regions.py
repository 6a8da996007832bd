"""BotaCLIP over the generated regions of ``bench/regions.py``: does its embedding add to the
deep-SDM's features, and does the contrastive alignment beat the frozen encoder at the same size?

    .venv/bin/python bench/botaclip_regions.py [--out data/bench-regions] [--protocol train]

For each region of ``bench/regions.py`` (run that first: it generates the regions and trains their
deep SDMs into ``--out``), trains BotaCLIP as ``make run`` does (``geoflora train botaclip``
defaults) and compares, on the region's TEST surveys, the same L2-penalised logistic head over:
the deep-SDM features, those plus the BotaCLIP embedding, those plus the raw frozen encoder
features (control), the BotaCLIP embedding alone and the frozen features projected to the same
size alone (:func:`inference.botaclip.evaluate.compare_with_embeddings`). Prints the per-region
macro AUC of each row, and mean +- sd over the regions of macro AUC and of the difference to the
deep-SDM features alone.
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

from backend.core.settings import get_settings  # noqa: E402
from bench.regions import REGIONS  # noqa: E402
from inference.botaclip.evaluate import compare_with_embeddings  # noqa: E402
from inference.botaclip.model import BotaCLIPConfig, load_botaclip  # noqa: E402
from inference.botaclip.train import train_botaclip  # noqa: E402
from inference.data.region import load_region  # noqa: E402


def measure(name: str, seed: int, root: Path, protocol: str) -> dict:
    folder = root / name
    sdm = folder / "sdm.pt"
    if not sdm.is_file():
        raise SystemExit(f"{sdm} is missing: run bench/regions.py --out {root} first")
    region = load_region(folder)
    settings = get_settings()
    ck = folder / "botaclip.pt"
    t0 = time.perf_counter()
    if not ck.is_file():
        train_botaclip(region, ck, BotaCLIPConfig(seed=seed, reg_weight=settings.botaclip_reg_weight),
                       encoder_path=settings.eo_encoder_path, log=lambda *_: None, device="auto")
    train_s = time.perf_counter() - t0
    model = load_botaclip(ck, settings.eo_encoder_path)
    rows = compare_with_embeddings(region, sdm, model, seed=seed, log=lambda *_: None, protocols=(protocol,))[protocol]
    return {"region": name, "train_seconds": round(train_s, 1),
            "rows": {r["model"]: {"macro_auc": r["macro_auc"], "sample_f1": r["sample_f1"]} for r in rows}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/bench-regions"))
    ap.add_argument("--protocol", default="train", choices=["train", "cal"])
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = [measure(name, seed, args.out, args.protocol) for name, seed, *_ in REGIONS]
    (args.out / "botaclip_results.json").write_text(json.dumps(res, indent=2))
    print(f"# BotaCLIP over {len(res)} generated regions, {time.strftime('%Y-%m-%d')}, {platform.node()}, "
          f"{torch.get_num_threads()} threads, protocol {args.protocol!r}, {time.perf_counter() - t0:.0f} s")
    print()
    names = list(res[0]["rows"])
    base = next((n for n in names if n.endswith(": SDM features")), names[0])  # the same head on SDM features alone
    print("| features | " + " | ".join(r["region"] for r in res) + " | mean ± sd | vs SDM features, mean ± sd |")
    print("|---|" + "---|" * (len(res) + 2))
    for n in names:
        auc = np.array([r["rows"][n]["macro_auc"] for r in res])
        d = auc - np.array([r["rows"][base]["macro_auc"] for r in res])
        delta = "" if n == base else f"{d.mean():+.3f} ± {d.std(ddof=1):.3f}"
        print(f"| {n} | " + " | ".join(f"{a:.3f}" for a in auc) + f" | {auc.mean():.3f} ± {auc.std(ddof=1):.3f} | {delta} |")


if __name__ == "__main__":
    main()
