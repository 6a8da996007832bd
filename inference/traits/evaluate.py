"""Score trait maps against a generated region's truth.

Truth at 50 m: the community-weighted mean (:func:`inference.traits.maps.cwm`, no threshold) of the
species' log-trait means weighted by the TRUE probabilities. Truth of a photo-grid cell: the mean
of the 50 m truth over the cell.

Maps scored:

* **photo maps** (:func:`inference.traits.maps.grid_aggregate`): every photo gets an
  out-of-fold prediction from a model that never saw its 10 km block (``folds``-fold cross-fitting
  over spatial blocks); predictions are averaged per grid cell with at least ``min_count`` photos.
  Once with models trained without cleaning, once with the two-step cleaning loop; both train on
  the same photos (each fold's training blocks minus the reference blocks the cleaning loop scores
  on). Each is scored on all photos and on the photos that pass the cleaning loop's step-1 screen
  (:class:`inference.traits.predictor.Screen`; the others are left out of the map); the uncleaned
  model with the screen isolates what the screen alone does. Two
  model-free rows frame them: the species log medians of the photographed plants (what a
  perfect species identification plus a TRY look-up would give) and the individuals' true traits
  (a perfect trait measurement: the limit set by where photos were taken).
* **CWM maps at 50 m** from an SDM (per-cell probabilities of the meta-tile runner, with and
  without the conformal threshold of the checkpoint), scored at 50 m and on the photo grid; without
  an SDM checkpoint, from the true probabilities cut at a threshold (the effect of the assemblage
  threshold alone), labelled as such.

Metrics per trait on log values, area-weighted (each 50 m cell weighs 1, each grid cell the number
of its 50 m cells with a truth value): R^2 (1 - SSE / SST around the weighted truth mean), nMAE =
weighted MAE / (max - min of the truth over the scored cells) and Pearson r; the JSON report adds
the bias (weighted mean error), which is what drives R^2 below zero where r is high.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from backend.core.atomic import write_text
from inference.grid import CELL_M, CELLS_PER_METATILE
from inference.sdm import conformal
from inference.sdm.model import load_sdm
from inference.sdm.predict import MetaTileSDM
from inference.training import write_report

from .data import PhotoSet, block_folds, block_split, load_photos
from .maps import CWMAccumulator, block_mean, grid_aggregate, species_log_medians
from .model import TRAITS
from .predictor import Features, predict_z
from .train import TraitTrainConfig, encode_photos, fit_model


def weighted_metrics(pred: np.ndarray, truth: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """R^2, nMAE (MAE / truth range), Pearson r and bias (weighted mean of pred - truth) of ``pred``
    vs ``truth`` where both are finite."""
    pred, truth = np.asarray(pred, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    w = np.ones_like(truth) if weights is None else np.asarray(weights, np.float64).ravel()
    ok = np.isfinite(pred) & np.isfinite(truth) & np.isfinite(w) & (w > 0)
    n = int(ok.sum())
    if n < 3:
        return {"r2": float("nan"), "nmae": float("nan"), "r": float("nan"), "bias": float("nan"), "n": n}
    p, t, w = pred[ok], truth[ok], w[ok]
    w = w / w.sum()
    tm, pm = np.sum(w * t), np.sum(w * p)
    sst = np.sum(w * (t - tm) ** 2)
    r2 = 1 - np.sum(w * (t - p) ** 2) / sst if sst > 0 else float("nan")
    rng = t.max() - t.min()
    nmae = np.sum(w * np.abs(p - t)) / rng if rng > 0 else float("nan")
    cov = np.sum(w * (p - pm) * (t - tm))
    sp = np.sqrt(np.sum(w * (p - pm) ** 2))
    r = cov / (sp * np.sqrt(sst)) if sp > 0 and sst > 0 else float("nan")
    return {"r2": float(r2), "nmae": float(nmae), "r": float(r), "bias": float(pm - tm), "n": n}


def _mosaic(region, per_tile) -> np.ndarray:
    """Assemble per-meta-tile arrays [..., 500, 500] into a region raster [..., H, W] (row 0 = north)."""
    H, W = region.grid.shape()
    out = None
    for tile in region.grid.metatiles():
        arr = per_tile(tile)
        if out is None:
            out = np.full(arr.shape[:-2] + (H, W), np.nan, np.float32)
        rows, cols = region.grid.window_of(tile)
        out[..., rows, cols] = arr
    return out


def truth_cwm(region, log=print) -> tuple[np.ndarray, np.ndarray]:
    """True community-weighted mean and sd [4, H, W] of the whole region (true probabilities)."""
    mu = species_log_medians(region)
    n = CELLS_PER_METATILE

    def tile_cwm(tile):
        acc = CWMAccumulator(mu, (n, n))
        for sl, p in region.iter_true_probability(tile):
            acc.add(sl, p)
        m, s = acc.result()
        return np.concatenate([m, s])

    t0 = time.perf_counter()
    both = _mosaic(region, tile_cwm)
    log(f"true CWM of {len(list(region.grid.metatiles()))} meta-tiles in {time.perf_counter() - t0:.1f} s")
    return both[:4], both[4:]


def sdm_cwm(region, sdm_path: Path, thresholds: dict[str, float | None], cache_dir: Path | None = None,
            log=print) -> dict[str, np.ndarray]:
    """CWM mean [4, H, W] from the SDM's per-cell probabilities, one per named threshold (cached)."""
    sdm_path = Path(sdm_path)
    key = hashlib.sha1(f"{sdm_path.resolve()}|{sdm_path.stat().st_mtime_ns}|{region.path.resolve()}|"
                       f"{sorted(thresholds.items())}".encode()).hexdigest()[:16]
    cache = None if cache_dir is None else Path(cache_dir) / f"sdm-cwm-{key}.npz"
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    model, norm, ck = load_sdm(sdm_path)
    runner = MetaTileSDM(model, norm)
    mu = species_log_medians(region, ck["species_ids"])
    n = CELLS_PER_METATILE
    names = list(thresholds)

    def tile_cwm(tile):
        t0 = time.perf_counter()
        p = runner.probabilities(region, tile)
        out = []
        for name in names:
            acc = CWMAccumulator(mu, (n, n), thresholds[name])
            acc.add(slice(0, p.shape[0]), p)
            out.append(acc.result()[0])
        log(f"  SDM CWM of {tile.id} in {time.perf_counter() - t0:.1f} s")
        return np.stack(out)

    allm = _mosaic(region, tile_cwm)
    res = {name: allm[i] for i, name in enumerate(names)}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez_compressed(tmp, **res)
        tmp.replace(cache)
    return res


def out_of_fold_predictions(photos: PhotoSet, feats: Features, cfg: TraitTrainConfig, clean: bool, folds: np.ndarray,
                            geo_weights: Path | None = None,
                            log=print) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Predictions [N, T] (log mean, log variance) of every photo by the model of the other folds,
    and whether each photo passes that model's screen (all True without cleaning)."""
    mcfg = cfg.model_config()
    T = len(mcfg.traits)
    mean = np.full((len(photos), T), np.nan)
    var = np.full((len(photos), T), np.nan)
    passed = np.ones(len(photos), bool)
    records = []
    for k in np.unique(folds):
        test = np.flatnonzero(folds == k)
        pool = np.flatnonzero(folds != k)
        is_ref = block_split(photos.x[pool], photos.y[pool], cfg.reference_fraction, cfg.seed + int(k), cfg.block_m)
        train_idx, ref_idx = pool[~is_ref], pool[is_ref]
        log(f" fold {k}: train {len(train_idx)}, reference {len(ref_idx)}, held out {len(test)} "
            f"({'with' if clean else 'without'} cleaning)")
        net, scaler, rec, screen = fit_model(photos, feats, train_idx, ref_idx, cfg, mcfg, clean, geo_weights, log=log)
        zm, zv = predict_z(net, feats, test)
        mean[test], var[test] = scaler.to_log(zm, zv)
        if screen is not None:
            passed[test] = screen.keep(feats, test)
        summary = {"fold": int(k), "n_train": int(len(train_idx)), "n_reference": int(len(ref_idx)),
                   "n_test": int(len(test)), "train_seconds": rec["train_seconds"]}
        if clean:
            dropped = np.array(rec["step1"]["dropped_index"] + rec["step2"]["dropped_index"], np.int64)
            summary.update(turning_point=rec["step2"]["turning_point"], dropped_step1=rec["step1"]["dropped"],
                           dropped_step2=rec["step2"]["dropped"],
                           curve=[{k2: c[k2] for k2 in ("fraction", "dropped", "reference_r2")}
                                  for c in rec["step2"]["curve"]])
            if photos.truth is not None:
                non_plant = ~photos.truth["is_plant"]
                kept = np.setdiff1d(train_idx, dropped)
                summary["non_plant_share_dropped"] = float(non_plant[dropped].mean()) if len(dropped) else None
                summary["non_plant_share_kept"] = float(non_plant[kept].mean())
                summary["held_out_screened_out"] = int((~passed[test]).sum())
                summary["held_out_non_plant_screened_out"] = int((non_plant[test] & ~passed[test]).sum())
                summary["held_out_non_plant"] = int(non_plant[test].sum())
        records.append(summary)
    return mean, var, passed, records


def evaluate_traits(region, cfg: TraitTrainConfig | None = None, grid_m: float = 5_000, min_count: int = 20,
                    folds: int = 2, sdm_path: Path | None = None, cache_dir: Path | None = None,
                    dinov2_path: Path | None = None, depth_path: Path | None = None,
                    climplicit_path: Path | None = None, true_threshold: float = 0.1, log=print) -> dict:
    """Photo maps with and without cleaning and CWM maps vs the truth: rows of metrics (see module doc)."""
    cfg = cfg or TraitTrainConfig()
    t_start = time.perf_counter()
    photos = load_photos(region.photos_csv)
    if photos.truth is None:
        raise ValueError(f"{region.path}: photos_truth.csv is missing; trait evaluation needs a generated region")
    feats, encode_s, _ = encode_photos(cfg, photos, dinov2_path, depth_path, cache_dir, log)
    fold = block_folds(photos.x, photos.y, folds, cfg.seed, block_m=10_000)

    truth_mean, _ = truth_cwm(region, log)
    rows: list[dict] = []
    bounds = region.grid.bounds
    resolutions = [grid_m, 2 * grid_m]

    def add_rows(name: str, res: float, pred: np.ndarray, truth: np.ndarray, weights, n_cells: int):
        for j, t in enumerate(TRAITS):
            m = weighted_metrics(pred[j], truth[j], weights)
            rows.append({"map": name, "resolution_m": res, "trait": t, **m, "cells": n_cells})

    def grid_truth(res: float):
        f = int(round(res / CELL_M))
        return block_mean(truth_mean, f)

    def score_photo_map(name: str, mean: np.ndarray, var: np.ndarray) -> None:
        for res in resolutions:
            g = grid_aggregate(photos.x, photos.y, mean, var, bounds, res, min_count, TRAITS)
            tg, area = grid_truth(res)
            w = np.where(g.valid, area, 0).astype(np.float64)
            add_rows(name, res, g.mean, tg, w, int(g.valid.sum()))

    timings = {"encode_seconds": round(encode_s, 1)}
    fold_records = {}
    per_photo = {}
    preds = {}
    for clean in (False, True):
        t0 = time.perf_counter()
        key = "with cleaning" if clean else "without cleaning"
        preds[clean] = out_of_fold_predictions(photos, feats, cfg, clean, fold, climplicit_path, log)
        timings[f"train_{key.replace(' ', '_')}_seconds"] = round(time.perf_counter() - t0, 1)
        fold_records[key] = preds[clean][3]
    passed = preds[True][2]
    all_photos = np.ones(len(photos), bool)
    variants = {  # name -> (mean, var, photos kept)
        "photos, model without cleaning, all photos": (preds[False][0], preds[False][1], all_photos),
        "photos, model without cleaning, screened photos": (preds[False][0], preds[False][1], passed),
        "photos, model with cleaning, all photos": (preds[True][0], preds[True][1], all_photos),
        "photos, model with cleaning, screened photos": (preds[True][0], preds[True][1], passed),
    }
    for name, (mean, var, keep) in variants.items():
        m = np.where(keep[:, None], mean, np.nan)
        score_photo_map(name, m, var)
        per_photo[name] = {t: weighted_metrics(m[:, j], photos.truth["log_traits"][:, j]) for j, t in enumerate(TRAITS)}
    zero = np.zeros_like(photos.log_median)
    score_photo_map("photos, species labels (no model)", photos.log_median, zero)
    score_photo_map("photos, true individual traits (no model)", photos.truth["log_traits"], zero)

    # CWM maps at 50 m
    cwm_source = None
    if sdm_path is not None and Path(sdm_path).is_file():
        ck = torch.load(sdm_path, map_location="cpu", weights_only=False)
        thr = conformal.assemblage_threshold(ck["thresholds"])
        t0 = time.perf_counter()
        maps = sdm_cwm(region, Path(sdm_path), {"all": None, "conformal": thr}, cache_dir, log)
        timings["sdm_cwm_seconds"] = round(time.perf_counter() - t0, 1)
        named = {"CWM, SDM probabilities (all species)": maps["all"],
                 f"CWM, SDM assemblage (conformal p >= {thr:.3f})": maps["conformal"]}
        cwm_source = f"SDM checkpoint {sdm_path}"
    else:
        mu = species_log_medians(region)
        n = CELLS_PER_METATILE

        def tile_thr(tile):
            acc = CWMAccumulator(mu, (n, n), true_threshold)
            for sl, p in region.iter_true_probability(tile):
                acc.add(sl, p)
            return acc.result()[0]

        named = {f"CWM, TRUE probabilities, assemblage p >= {true_threshold:g}": _mosaic(region, tile_thr)}
        cwm_source = "true probabilities (no SDM checkpoint)"
    valid50 = np.isfinite(truth_mean[0])
    for name, m in named.items():
        add_rows(name, CELL_M, m, truth_mean, valid50.astype(np.float64), int((valid50 & np.isfinite(m[0])).sum()))
        for res in resolutions:
            f = int(round(res / CELL_M))
            mg, _ = block_mean(m, f)
            tg, area = grid_truth(res)
            add_rows(name, res, mg, tg, area.astype(np.float64), int((area > 0).sum()))
    timings["total_seconds"] = round(time.perf_counter() - t_start, 1)
    return {"rows": rows, "per_photo_vs_true_traits": per_photo, "folds": fold_records, "cwm_source": cwm_source,
            "grid_m": grid_m, "min_count": min_count, "n_photos": len(photos), "timings": timings,
            "train_config": asdict(cfg)}


def format_table(rows: list[dict]) -> str:
    """Markdown: one row per map and resolution, R^2 / nMAE / r per trait and their mean."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        groups.setdefault((r["map"], r["resolution_m"]), {})[r["trait"]] = r
    head = "| map | res | cells | " + " | ".join(f"{t} R² / nMAE / r" for t in TRAITS) + " | mean R² |"
    out = [head, "|" + "---|" * (4 + len(TRAITS))]
    for (name, res), d in groups.items():
        cells = next(iter(d.values()))["cells"]
        parts = []
        for t in TRAITS:
            m = d.get(t)
            parts.append("–" if m is None else f"{m['r2']:.2f} / {m['nmae']:.3f} / {m['r']:.2f}")
        mean_r2 = np.nanmean([d[t]["r2"] for t in TRAITS if t in d])
        res_s = f"{res / 1000:g} km" if res >= 1000 else f"{res:g} m"
        out.append(f"| {name} | {res_s} | {cells} | " + " | ".join(parts) + f" | {mean_r2:.3f} |")
    return "\n".join(out)


def save_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "traits_evaluation.json"
    md = out_dir / "traits_evaluation.md"
    write_report(js, report)
    write_text(md, format_table(report["rows"]) + "\n")
    return js, md
