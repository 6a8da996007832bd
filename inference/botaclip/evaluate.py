"""Do BotaCLIP embeddings help species distribution models? A linear-probe comparison.

The trained deep-SDM is kept as it is; its penultimate features (the concatenated S2, climate and
Landsat encoder outputs that its head sees) are computed for every PA survey. The same multi-label
logistic head (L2-penalised, full-batch L-BFGS, penalty chosen on CAL macro AUC) is then fitted on
TRAIN surveys to different feature sets -- SDM features alone, with the BotaCLIP embedding appended,
with the raw frozen-encoder features appended instead (a control: is it the contrastive alignment or
just more image features?), and the image features alone -- and scored on the TEST surveys (10 km
blocks never seen by the SDM nor by BotaCLIP): macro AUC, sample F1 at the CAL F1-optimal threshold,
Recall@50/250 and AUC against the true probabilities.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from inference.sdm import conformal
from inference.sdm.dataset import extract_inputs, region_samples
from inference.sdm.metrics import evaluate, macro_auc
from inference.sdm.model import load_sdm
from inference.splits import CAL, TEST, TRAIN

from .embed import metatile_embeddings, pca_rgb
from .model import BotaCLIP, encode, load_botaclip

PENALTIES = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
PROTOCOLS = {
    "train": "heads fitted on TRAIN surveys, penalty and F1 threshold chosen on CAL, scored on TEST",
    "cal": "heads fitted on CAL surveys (never seen by BotaCLIP), penalty by 3-fold block CV within CAL, "
           "scored on TEST",
}
COLUMNS = [("macro_auc", "macro AUC"), ("sample_f1", "sample F1"), ("recall@50", "Recall@50"),
           ("recall@250", "Recall@250"), ("auc_vs_truth", "AUC vs truth")]


@torch.no_grad()
def sdm_features(model, norm, inputs: dict, batch: int = 256) -> np.ndarray:
    """Penultimate features [N, F] of a deep-SDM: its encoders' pooled outputs, concatenated."""
    model.eval()
    P = model.config.patch_size
    n = len(next(iter(inputs.values())))
    out = []
    for i in range(0, n, batch):
        parts = []
        for name, enc in model.encoders.items():
            arr = inputs[name][i:i + batch]
            if name == "s2":
                off = (arr.shape[-1] - P) // 2
                arr = np.ascontiguousarray(arr[..., off:off + P, off:off + P])
            parts.append(enc(norm.apply(name, arr)))
        out.append(torch.cat(parts, 1).numpy())
    return np.concatenate(out)


def _standardiser(X: np.ndarray):
    mu, sd = X.mean(0), X.std(0) + 1e-6
    return lambda A: torch.from_numpy(((A - mu) / sd).astype(np.float32))


def _fit_logistic(Xt: torch.Tensor, Yt: torch.Tensor, lam: float, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    prior = Yt.mean(0).clamp(1e-4, 1 - 1e-4)
    W = torch.zeros(Xt.shape[1], Yt.shape[1], requires_grad=True)
    b = torch.logit(prior).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(Xt @ W + b, Yt) + 0.5 * lam * (W ** 2).sum() / Yt.shape[1]
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


def _predictor(std, W, b):
    def predict(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(std(X) @ W + b).numpy()

    return predict


def fit_linear_head(X_tr: np.ndarray, Y_tr: np.ndarray, X_cal: np.ndarray, Y_cal: np.ndarray,
                    penalties=PENALTIES, iters: int = 150):
    """Multi-label logistic regression (standardised inputs, L2 on the weights), penalty chosen on CAL
    macro AUC. Returns (predict function X -> probabilities, info)."""
    std = _standardiser(X_tr)
    Xt, Yt, Xc = std(X_tr), torch.from_numpy(Y_tr.astype(np.float32)), std(X_cal)
    best = None
    for lam in penalties:
        W, b = _fit_logistic(Xt, Yt, lam, iters)
        with torch.no_grad():
            auc = macro_auc(Y_cal, torch.sigmoid(Xc @ W + b).numpy())
        if best is None or auc > best[0]:
            best = (auc, lam, W, b)
    auc, lam, W, b = best
    return _predictor(std, W, b), {"penalty": lam, "cal_macro_auc": auc, "features": int(X_tr.shape[1])}


def fit_linear_head_cv(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, penalties=PENALTIES, folds: int = 3,
                       iters: int = 150, seed: int = 0):
    """The same head fitted on (X, Y), its penalty chosen by cross-validation over whole ``groups``
    (10 km blocks). Returns (predict, info with the mean validation macro AUC)."""
    uniq = np.unique(groups)
    fold_of = np.random.default_rng(seed).permutation(len(uniq)) % folds
    fold = fold_of[np.searchsorted(uniq, groups)]
    best = None
    for lam in penalties:
        aucs = []
        for f in range(folds):
            tr, va = fold != f, fold == f
            if not va.any() or not tr.any():
                continue
            std = _standardiser(X[tr])
            W, b = _fit_logistic(std(X[tr]), torch.from_numpy(Y[tr].astype(np.float32)), lam, iters)
            aucs.append(macro_auc(Y[va], _predictor(std, W, b)(X[va])))
        score = float(np.nanmean(aucs))
        if best is None or score > best[0]:
            best = (score, lam)
    score, lam = best
    std = _standardiser(X)
    W, b = _fit_logistic(std(X), torch.from_numpy(Y.astype(np.float32)), lam, iters)
    return _predictor(std, W, b), {"penalty": lam, "cal_macro_auc": score, "features": int(X.shape[1])}


def prepare(region, sdm_path: Path, seed: int = 0, log=print) -> dict:
    """PA surveys (the SDM's split), their SDM features and the SDM's own probabilities."""
    model, norm, ck = load_sdm(sdm_path)
    data = region_samples(region, seed=seed, use_po=True, with_inputs=False)
    if not np.array_equal(np.asarray(ck["species_ids"]), data.species_ids):
        raise ValueError(f"{sdm_path} was trained on another species list than this region's")
    pa = data.subset(~data.is_po)
    t = time.perf_counter()
    inputs = extract_inputs(region, pa.x, pa.y, s2_size=model.config.patch_size)
    feats = sdm_features(model, norm, inputs)
    with torch.no_grad():
        own = torch.sigmoid(model.head(torch.from_numpy(feats))).numpy() if not model.config.extra_features else None
    log(f"deep-SDM features {feats.shape} of {len(pa)} PA surveys in {time.perf_counter() - t:.1f} s")
    return {"pa": pa, "sdm": feats, "own": own, "alpha": ck["thresholds"]["alpha"]}


@torch.no_grad()
def botaclip_features(region, model: BotaCLIP, x: np.ndarray, y: np.ndarray) -> dict:
    """Frozen features h [N, F], their frozen projection h0 [N, D] and the embedding e [N, D]."""
    hs = []
    for i in range(0, len(x), 1024):
        s2 = region.extract_s2(x[i:i + 1024], y[i:i + 1024], size=model.patch_size)
        hs.append(encode(model.encoder, model.norm, s2))
    h = torch.cat(hs)
    return {"frozen": h.numpy(), "frozen_proj": model.frozen_projection(h).numpy(),
            "botaclip": model.embed_features(h).numpy()}


def paired_bootstrap(y: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, n: int = 200, seed: int = 0) -> dict:
    """Macro AUC of b minus a on the same surveys, with a 95 % interval from resampling the surveys."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        diffs.append(macro_auc(y[i], prob_b[i]) - macro_auc(y[i], prob_a[i]))
    return {"delta": macro_auc(y, prob_b) - macro_auc(y, prob_a), "lo": float(np.percentile(diffs, 2.5)),
            "hi": float(np.percentile(diffs, 97.5))}


def _row(name: str, prep: dict, prob: np.ndarray, fit: dict | None = None) -> dict:
    pa = prep["pa"]
    cal, te = pa.split == CAL, pa.split == TEST
    t_f1 = conformal.f1_optimal_threshold(pa.labels[cal], prob[cal])
    row = {"model": name, **evaluate(pa.labels[te], prob[te], t_f1, pa.p_true[te]), "f1_threshold": t_f1,
           "_test_prob": prob[te]}
    if fit:
        row.update({"features": fit["features"], "penalty": fit["penalty"], "cal_macro_auc": fit["cal_macro_auc"]})
    return row


def compare_rows(prep: dict, feats: dict, log=print, protocol: str = "train") -> list[dict]:
    """The comparison table rows for one BotaCLIP (``feats`` from ``botaclip_features``).

    ``protocol`` "train": the heads are fitted on TRAIN surveys -- the surveys BotaCLIP was trained on,
    so its embedding there carries some of their labels (the head may over-trust it); "cal": the heads
    are fitted on the CAL surveys, which neither BotaCLIP nor the SDM trained on (fewer surveys)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: {', '.join(PROTOCOLS)}")
    pa = prep["pa"]
    tr, cal = pa.split == TRAIN, pa.split == CAL
    sets = [
        ("linear head: SDM features", [prep["sdm"]]),
        ("linear head: SDM features + BotaCLIP", [prep["sdm"], feats["botaclip"]]),
        ("linear head: SDM features + frozen EO features (control)", [prep["sdm"], feats["frozen"]]),
        ("linear head: BotaCLIP embedding alone", [feats["botaclip"]]),
        ("linear head: frozen EO projection alone (same dim)", [feats["frozen_proj"]]),
        ("linear head: frozen EO features alone", [feats["frozen"]]),
    ]
    rows = []
    if prep["own"] is not None:
        rows.append(_row("deep-SDM as trained (own head, PA + PO)", prep, prep["own"]))
    for name, parts in sets:
        X = np.concatenate(parts, 1).astype(np.float32)
        t = time.perf_counter()
        if protocol == "train":
            predict, fit = fit_linear_head(X[tr], pa.labels[tr], X[cal], pa.labels[cal])
        else:
            predict, fit = fit_linear_head_cv(X[cal], pa.labels[cal], pa.block[cal])
        rows.append(_row(name, prep, predict(X), fit))
        log(f"  {name}: {X.shape[1]} features, TEST macro AUC {rows[-1]['macro_auc']:.4f} "
            f"({time.perf_counter() - t:.1f} s)")
    rows.append(_row("truth (upper bound)", prep, pa.p_true))
    base = next(r for r in rows if r["model"] == "linear head: SDM features")["_test_prob"]
    y = pa.labels[pa.split == TEST]
    for r in rows:
        if r["model"].startswith("linear head: SDM features +"):
            r["delta_vs_sdm_features"] = paired_bootstrap(y, base, r["_test_prob"])
    for r in rows:
        del r["_test_prob"]
    return rows


def compare_with_embeddings(region, sdm_path: Path, botaclip, seed: int = 0, log=print,
                            protocols=("train", "cal")) -> dict[str, list[dict]]:
    """Deep-SDM features with and without the BotaCLIP embedding (and baselines) on TEST surveys,
    one table (list of rows) per protocol."""
    model = botaclip if isinstance(botaclip, BotaCLIP) else load_botaclip(botaclip)
    prep = prepare(region, sdm_path, seed, log)
    pa = prep["pa"]
    if not np.array_equal(np.asarray(model.species_ids), pa.species_ids):
        raise ValueError("the BotaCLIP checkpoint was trained on another species list than this region's")
    feats = botaclip_features(region, model, pa.x, pa.y)
    out = {}
    for p in protocols:
        log(f"protocol {p!r}: {PROTOCOLS[p]}")
        out[p] = compare_rows(prep, feats, log, protocol=p)
    return out


def time_metatile(region, model: BotaCLIP, step: int = 1, tile=None) -> dict:
    """Seconds for the embeddings of one whole meta-tile (and the PCA colours), on this process's threads."""
    tile = tile or next(iter(region.grid.metatiles()))
    t = time.perf_counter()
    emb = metatile_embeddings(region, tile, model, step=step)
    t_emb = time.perf_counter() - t
    t = time.perf_counter()
    pca_rgb(emb, model.pca_colours)
    return {"tile": tile.id, "step": step, "shape": list(emb.shape), "embed_seconds": round(t_emb, 2),
            "pca_rgb_seconds": round(time.perf_counter() - t, 2), "threads": torch.get_num_threads()}


def format_table(rows: list[dict]) -> str:
    head = "| features | " + " | ".join(c[1] for c in COLUMNS) + " | macro AUC vs SDM features [95 % CI] |"
    lines = [head, "|---" * (len(COLUMNS) + 2) + "|"]
    for r in rows:
        d = r.get("delta_vs_sdm_features")
        delta = f"{d['delta']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" if d else ""
        lines.append(f"| {r['model']} | " + " | ".join(f"{r[k]:.3f}" for k, _ in COLUMNS) + f" | {delta} |")
    return "\n".join(lines)
