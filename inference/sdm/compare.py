"""The honest comparison: deep-SDM, MaxEnt and random forest on the same data and split."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from inference.sdm import baselines, conformal
from inference.sdm.dataset import region_samples
from inference.sdm.metrics import evaluate
from inference.sdm.model import load_sdm
from inference.sdm.train import predict
from inference.splits import CAL, TEST, TRAIN

COLUMNS = [("macro_auc", "macro AUC"), ("sample_f1", "sample F1"), ("recall@50", "Recall@50"),
           ("recall@250", "Recall@250"), ("auc_vs_truth", "AUC vs truth")]


def _row(name: str, y, prob_cal, y_cal, prob, p_true, fit_s: float, alpha: float) -> dict:
    t_f1 = conformal.f1_optimal_threshold(y_cal, prob_cal)
    t_conf = conformal.global_threshold(y_cal, prob_cal, alpha)
    row = {"model": name, **evaluate(y, prob, t_f1, p_true), "fit_seconds": fit_s,
           "f1_threshold": t_f1, "conformal_threshold": t_conf,
           "omission_at_conformal": conformal.omission_rate(y, prob, t_conf)}
    return row


def compare_sdm(region, sdm_path: Path, seed: int = 0, log=print) -> list[dict]:
    """Metrics of the three models on the held-out PA surveys (test blocks) of ``region``."""
    model, norm, ck = load_sdm(sdm_path)
    alpha = ck["thresholds"]["alpha"]
    data = region_samples(region, seed=seed, s2_size=model.config.patch_size)
    if not np.array_equal(np.asarray(ck["species_ids"]), data.species_ids):
        raise ValueError(f"{sdm_path} was trained on another species list than this region's")
    train, cal, test = data.part(TRAIN), data.part(CAL, pa_only=True), data.part(TEST, pa_only=True)
    rows = []
    log(f"deep-SDM: {len(train)} training samples, {len(cal)} calibration and {len(test)} test surveys")
    rows.append(_row("deep-SDM (ResNet-6 x 3)", test.labels, predict(model, norm, cal), cal.labels,
                     predict(model, norm, test), test.p_true, float(ck["report"]["train_seconds"]), alpha))
    X_tr, names = baselines.tabular_features(train.inputs)
    X_cal, _ = baselines.tabular_features(cal.inputs)
    X_te, _ = baselines.tabular_features(test.inputs)
    log(f"baselines: {X_tr.shape[1]} tabular features")
    t = time.perf_counter()
    rf, _info = baselines.fit_random_forest(X_tr, train.labels, X_cal, cal.labels, seed=seed)
    fit = time.perf_counter() - t
    rows.append(_row("random forest", test.labels, baselines.predict_random_forest(rf, X_cal), cal.labels,
                     baselines.predict_random_forest(rf, X_te), test.p_true, fit, alpha))
    log(f"random forest fitted in {fit:.0f} s")
    t = time.perf_counter()
    mx, _info = baselines.fit_maxent(X_tr, train.labels, X_cal, cal.labels, is_po=train.is_po)
    fit = time.perf_counter() - t
    rows.append(_row("MaxEnt (elapid)", test.labels, baselines.predict_maxent(mx, X_cal), cal.labels,
                     baselines.predict_maxent(mx, X_te), test.p_true, fit, alpha))
    log(f"MaxEnt fitted in {fit:.0f} s")
    truth_cal = cal.p_true
    rows.append(_row("truth (upper bound)", test.labels, truth_cal, cal.labels, test.p_true, test.p_true, 0.0, alpha))
    return rows


def format_table(rows: list[dict]) -> str:
    head = "| model | " + " | ".join(c[1] for c in COLUMNS) + " | omission at conformal t | fit (s) |"
    sep = "|---" * (len(COLUMNS) + 3) + "|"
    lines = [head, sep]
    for r in rows:
        vals = " | ".join(f"{r[k]:.3f}" for k, _ in COLUMNS)
        lines.append(f"| {r['model']} | {vals} | {r['omission_at_conformal']:.3f} | {r['fit_seconds']:.0f} |")
    return "\n".join(lines)
