"""Train PlantTraitNet on cached encoder features, with the two-step uncertainty-guided cleaning loop.

Training (:func:`fit`): AdamW with a cosine schedule; every epoch draws a new label per photo and
trait from its species' lognormal (:func:`inference.traits.data.sample_labels`), standardises it
with the training-set mean and sd of the species log medians, and goes through batches stratified
by plant functional type; the loss is the mean over traits of the per-trait NLL (Laplace for leaf
area, Gaussian for the others).

Cleaning loop (:func:`train_with_cleaning`), exactly:

1. **Reference set.** The photos of a random ``reference_fraction`` (20 %) of the 5 km blocks are
   set aside (:func:`inference.traits.data.block_split`); they are never trained on. Their target
   is the individual's measured (true) log trait where known (``reference="truth"``; on generated
   regions ``photos_truth.csv``, the stand-in for a field-measured reference set) or else the
   species log median of the label (``reference="labels"``, what a real data set always has).
   ``"auto"`` takes truth when available.
2. **Step 1, uncertainty.** A model is trained on the remaining photos for ``warmup_fraction`` of
   the epochs ("early training"). Its joint uncertainty per training photo is the sum over the
   four traits of the predicted variance in standardised units; the ``uncertainty_drop`` (5 %)
   photos with the highest joint uncertainty are dropped. The early model and the joint
   uncertainty of the last dropped photo form the **screen** (:class:`Screen`): photos at or above
   that threshold are also left out of the reference set's scoring and, at prediction time, out of
   maps (a model trained on cleaned photos has never seen walls, roads or sky and extrapolates on
   them; unscreened, they wreck both the reference score and the grid means).
3. **Step 2, residual-aware filtering.** A model is trained for the full epochs on the photos kept
   by step 1. Each kept photo's residual is the mean over traits of |predicted mean - species log
   median| in standardised units. For each candidate fraction f in ``residual_fractions``
   (0, 2, 5, 10, 15, 20 %) the f largest-residual photos are dropped and a model is trained from
   scratch on the rest (f = 0 is the step-2 model itself); each is scored on the reference set by
   the mean over traits of R^2 (predicted mean vs reference target, log scale).
4. **Turning point.** The score first rises while removed photos are mostly noise and falls once
   good photos go; the turning point f* is the smallest candidate whose score is within
   ``turning_tolerance`` (0.005) of the best score. The model trained at f* is the final model.
   All candidates use the same seed, so the curve compares data, not initialisations.

The checkpoint (``settings.layout.models_dir / region / "traits.pt"``) holds the model configuration,
the random stand-in encoders' weights (pretrained ones stay in their local folder and are named
by path), the trainable weights, the label scaler, the cleaning record and the report; a JSON
report is written beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from inference.training import resolve_device, seed_everything, write_report

from .data import PhotoSet, block_split, photo_features, sample_labels, stratified_batches
from .model import FrozenEncoders, TraitNet, TraitNetConfig, make_config
from .predictor import Features, LabelScaler, Screen, predict_z, save_traits


@dataclass
class TraitTrainConfig:
    size: str = "demo"  # tiny | demo | paper
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    clean: bool = True
    warmup_fraction: float = 0.3
    uncertainty_drop: float = 0.05
    residual_fractions: tuple[float, ...] = (0.0, 0.02, 0.05, 0.10, 0.15, 0.20)
    turning_tolerance: float = 0.005
    reference_fraction: float = 0.2
    reference: str = "auto"  # auto | truth | labels
    block_m: float = 5_000
    compare_without_cleaning: bool = True  # also train the uncleaned model for the report
    device: str = "auto"  # where fit trains (auto: CUDA when present; settings ``device``)
    model_overrides: dict = field(default_factory=dict)

    def model_config(self) -> TraitNetConfig:
        return make_config(self.size, **self.model_overrides)


# ---------------------------------------------------------------------------------------------
# metrics


def r2_score(pred: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> float:
    ok = np.isfinite(pred) & np.isfinite(target)
    if weights is not None:
        ok &= np.isfinite(weights) & (weights > 0)
    if ok.sum() < 2:
        return float("nan")
    p, t = pred[ok], target[ok]
    w = np.ones_like(t) if weights is None else weights[ok]
    tm = np.average(t, weights=w)
    ss_tot = np.sum(w * (t - tm) ** 2)
    return float(1 - np.sum(w * (t - p) ** 2) / ss_tot) if ss_tot > 0 else float("nan")


def per_trait_metrics(pred: np.ndarray, target: np.ndarray, train_mean: np.ndarray, traits) -> dict:
    """R^2 and MAE on log traits per trait, and those of the trivial baseline (the training mean)."""
    out = {}
    for j, t in enumerate(traits):
        ok = np.isfinite(target[:, j]) & np.isfinite(pred[:, j])
        base = np.full(ok.sum(), train_mean[j])
        out[t] = {"r2": r2_score(pred[ok, j], target[ok, j]),
                  "mae": float(np.mean(np.abs(pred[ok, j] - target[ok, j]))) if ok.any() else float("nan"),
                  "baseline_r2": r2_score(base, target[ok, j]),
                  "baseline_mae": float(np.mean(np.abs(base - target[ok, j]))) if ok.any() else float("nan"),
                  "n": int(ok.sum())}
    return out


# ---------------------------------------------------------------------------------------------
# training


def new_net(mcfg: TraitNetConfig, feats: Features, seed: int, geo_weights: Path | None = None) -> TraitNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TraitNet(mcfg, feats.image.shape[1], 0 if feats.depth is None else feats.depth.shape[1])
    if geo_weights is not None and net.geo is not None:
        net.geo.load_embedding(geo_weights)
    return net


def _rng_devices(device: torch.device) -> list:
    """The devices whose RNG ``torch.random.fork_rng`` must save and restore besides the CPU's."""
    return [device] if device.type == "cuda" else []


def fit(net: TraitNet, feats: Features, photos: PhotoSet, idx: np.ndarray, scaler: LabelScaler,
        cfg: TraitTrainConfig, epochs: int, seed: int) -> list[float]:
    """Train ``net`` on photos ``idx``, on ``resolve_device(cfg.device)`` (``net`` stays there; the
    features go over one batch at a time); returns the mean training NLL of every epoch.

    The dropout stream is seeded from ``seed`` inside a forked RNG: a fit depends on its own
    arguments only, and leaves the global RNG as it found it."""
    device = torch.device(resolve_device(cfg.device))
    net.to(device)
    rng = np.random.default_rng(seed)
    idx = np.asarray(idx)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_steps = max(1, epochs * int(np.ceil(len(idx) / cfg.batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=n_steps + epochs, pct_start=0.1)
    pft = photos.pft[idx]
    history = []
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        for _ in range(epochs):
            net.train()
            y = scaler.to_z(sample_labels(rng, photos.log_median[idx], photos.log_sd[idx]))
            yt = torch.as_tensor(y, dtype=torch.float32)
            valid = torch.isfinite(yt)
            total, count = 0.0, 0
            for b in stratified_batches(rng, pft, cfg.batch_size):
                batch = feats.take(idx[b], device)
                mean, logvar = net(batch["image"], batch["geo"], batch["depth"])
                loss = net.loss(yt[b].to(device), mean, logvar, valid[b].to(device)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(b)
                count += len(b)
            history.append(total / max(count, 1))
    return history


def reference_score(net: TraitNet, feats: Features, ref_idx: np.ndarray, ref_target: np.ndarray,
                    scaler: LabelScaler) -> tuple[float, list[float]]:
    zm, zv = predict_z(net, feats, ref_idx)
    pred, _ = scaler.to_log(zm, zv)
    per = [r2_score(pred[:, j], ref_target[:, j]) for j in range(pred.shape[1])]
    return float(np.nanmean(per)), per


def train_plain(feats: Features, photos: PhotoSet, train_idx: np.ndarray, scaler: LabelScaler,
                mcfg: TraitNetConfig, cfg: TraitTrainConfig,
                geo_weights: Path | None = None) -> tuple[TraitNet, list[float]]:
    net = new_net(mcfg, feats, cfg.seed, geo_weights)
    hist = fit(net, feats, photos, train_idx, scaler, cfg, cfg.epochs, cfg.seed)
    return net, hist


def train_with_cleaning(feats: Features, photos: PhotoSet, train_idx: np.ndarray, ref_idx: np.ndarray,
                        ref_target: np.ndarray, scaler: LabelScaler, mcfg: TraitNetConfig, cfg: TraitTrainConfig,
                        geo_weights: Path | None = None, log=print) -> tuple[TraitNet, dict, Screen]:
    """The two-step cleaning loop of the module docstring; returns the final model, its record and
    the step-1 screen."""
    train_idx = np.asarray(train_idx)
    t0 = time.perf_counter()
    # step 1: early-training uncertainty
    warm = max(1, int(round(cfg.warmup_fraction * cfg.epochs)))
    net_a = new_net(mcfg, feats, cfg.seed, geo_weights)
    fit(net_a, feats, photos, train_idx, scaler, cfg, warm, cfg.seed)
    _, zv = predict_z(net_a, feats, train_idx)
    joint = zv.sum(1)
    n_drop1 = int(round(cfg.uncertainty_drop * len(train_idx)))
    order1 = np.argsort(-joint, kind="stable")
    drop1 = train_idx[order1[:n_drop1]]
    keep1 = np.sort(train_idx[order1[n_drop1:]])
    u_threshold = float(joint[order1[n_drop1 - 1]]) if n_drop1 else float("inf")
    log(f"  cleaning step 1: dropped {n_drop1} of {len(train_idx)} photos with joint uncertainty >= {u_threshold:.3f}")
    screen = Screen(net_a, u_threshold)
    ref_all = np.asarray(ref_idx)
    ref_ok = screen.keep(feats, ref_all)
    ref_idx, ref_target = ref_all[ref_ok], np.asarray(ref_target)[ref_ok]
    log(f"  screen: {int((~ref_ok).sum())} of {len(ref_all)} reference photos fail it and are not scored")

    # step 2: residuals of a model trained on the step-1 set; candidates scored on the reference set
    net_b = new_net(mcfg, feats, cfg.seed + 1, geo_weights)
    fit(net_b, feats, photos, keep1, scaler, cfg, cfg.epochs, cfg.seed + 1)
    zm, _ = predict_z(net_b, feats, keep1)
    zlab = scaler.to_z(photos.log_median[keep1])
    resid = np.nanmean(np.abs(zm - zlab), 1)
    resid = np.where(np.isfinite(resid), resid, np.inf)
    order2 = np.argsort(-resid, kind="stable")
    curve, nets = [], {}
    for f in cfg.residual_fractions:
        n_drop = int(round(f * len(keep1)))
        if n_drop == 0:
            net_f = net_b
        else:
            keep2 = np.sort(keep1[order2[n_drop:]])
            net_f = new_net(mcfg, feats, cfg.seed + 1, geo_weights)
            fit(net_f, feats, photos, keep2, scaler, cfg, cfg.epochs, cfg.seed + 1)
        score, per = reference_score(net_f, feats, ref_idx, ref_target, scaler)
        thr = float(resid[order2[n_drop - 1]]) if n_drop else float("inf")
        curve.append({"fraction": f, "dropped": n_drop, "residual_threshold": thr, "reference_r2": score,
                      "reference_r2_per_trait": per})
        nets[f] = net_f
        log(f"  cleaning step 2: drop {f:5.1%} ({n_drop:4d}) largest residuals -> reference mean R2 {score:.4f}")
    best = max(c["reference_r2"] for c in curve)
    chosen = next(c for c in curve if c["reference_r2"] >= best - cfg.turning_tolerance)
    f_star = chosen["fraction"]
    n2 = chosen["dropped"]
    drop2 = keep1[order2[:n2]]
    record = {
        "step1": {"warmup_epochs": warm, "dropped": int(n_drop1), "joint_uncertainty_threshold": u_threshold,
                  "dropped_index": drop1.tolist(), "reference_screened_out": int((~ref_ok).sum())},
        "step2": {"curve": curve, "turning_point": f_star, "dropped": int(n2),
                  "residual_threshold": chosen["residual_threshold"], "dropped_index": drop2.tolist(),
                  "ranked_index": keep1[order2[:max(c["dropped"] for c in curve)]].tolist()},
        "kept": int(len(train_idx) - n_drop1 - n2), "seconds": round(time.perf_counter() - t0, 1),
    }
    log(f"  turning point: drop {f_star:.1%} by residual (reference mean R2 {chosen['reference_r2']:.4f})")
    return nets[f_star], record, screen


def _reference_target(photos: PhotoSet, mode: str) -> tuple[np.ndarray, str]:
    if mode not in ("auto", "truth", "labels"):
        raise ValueError(f"reference must be auto, truth or labels, not {mode!r}")
    if mode == "truth" and photos.truth is None:
        raise ValueError("reference='truth' needs the photos' true traits (photos_truth.csv)")
    if mode in ("auto", "truth") and photos.truth is not None:
        return photos.truth["log_traits"], "truth"
    return photos.log_median, "labels"


def fit_model(photos: PhotoSet, feats: Features, train_idx: np.ndarray, ref_idx: np.ndarray, cfg: TraitTrainConfig,
              mcfg: TraitNetConfig, clean: bool, geo_weights: Path | None = None,
              log=print) -> tuple[TraitNet, LabelScaler, dict, Screen | None]:
    """Train one model on ``train_idx`` (cleaned with ``ref_idx`` as reference set when ``clean``);
    returns the model, its label scaler, the training record and the screen (None without cleaning),
    the model and the screen on the CPU."""
    scaler = LabelScaler.fit(photos.log_median[train_idx])
    t0 = time.perf_counter()
    screen = None
    if clean:
        target, kind = _reference_target(photos, cfg.reference)
        net, record, screen = train_with_cleaning(feats, photos, train_idx, ref_idx, target[ref_idx], scaler, mcfg,
                                                  cfg, geo_weights, log)
        record["reference"] = kind
    else:
        net, hist = train_plain(feats, photos, train_idx, scaler, mcfg, cfg, geo_weights)
        record = {"history": hist}
    record["train_seconds"] = round(time.perf_counter() - t0, 1)
    net.cpu()  # the model and its screen leave on the CPU (checkpoints, maps)
    if screen is not None:
        screen.net.cpu()
    return net, scaler, record, screen


def encode_photos(cfg, photos: PhotoSet, dinov2_path, depth_path, cache_dir, log=print):
    """Frozen-encoder features of every photo (cached on disk), the seconds it took, the encoders."""
    mcfg = cfg.model_config()
    encoders = FrozenEncoders(mcfg, dinov2_path, depth_path if mcfg.use_depth else None)
    t0 = time.perf_counter()
    feats = Features.build(photo_features(encoders, photos, cache_dir, log=log), photos)
    encode_s = time.perf_counter() - t0
    log(f"encoded {len(photos)} photos in {encode_s:.1f} s")
    return feats, encode_s, encoders


def train_traits(photos: PhotoSet, out: Path, cfg: TraitTrainConfig, dinov2_path: Path | None = None,
                 depth_path: Path | None = None, climplicit_path: Path | None = None,
                 cache_dir: Path | None = None, log=print) -> dict:
    """Encode the photos once, hold out the reference blocks, train (with cleaning unless
    ``cfg.clean`` is False), report reference-set metrics, save ``out`` and ``out.with_suffix('.json')``.

    Reference metrics are R^2 / MAE per trait on log values against the species labels and, where
    known, the true individual traits, next to the trivial baseline (the training mean); with
    cleaning, also on the reference photos that pass the screen, and for the model trained on the
    same photos without cleaning. The reference set chose the turning point, so these numbers are
    slightly optimistic for the cleaned model; ``geoflora evaluate traits`` scores held-out folds.
    """
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    mcfg = cfg.model_config()
    feats, encode_s, encoders = encode_photos(cfg, photos, dinov2_path, depth_path, cache_dir, log)
    is_ref = block_split(photos.x, photos.y, cfg.reference_fraction, cfg.seed, cfg.block_m)
    train_idx, ref_idx = np.flatnonzero(~is_ref), np.flatnonzero(is_ref)
    log(f"training photos {len(train_idx)}, reference photos {len(ref_idx)} ({cfg.block_m / 1000:g} km blocks)")

    t0 = time.perf_counter()
    net, scaler, record, screen = fit_model(photos, feats, train_idx, ref_idx, cfg, mcfg, cfg.clean, climplicit_path,
                                            log)
    train_s = time.perf_counter() - t0
    report = {"n_photos": len(photos), "n_train": int(len(train_idx)), "n_reference": int(len(ref_idx)),
              "encode_seconds": round(encode_s, 1), "train_seconds": round(train_s, 1), "cleaning": None}
    if cfg.clean:
        report["cleaning"] = dict(record)
        for step in ("step1", "step2"):
            report["cleaning"][step] = {k: v for k, v in record[step].items() if not k.endswith("_index")}
    ref_ok = screen.keep(feats, ref_idx) if screen is not None else np.ones(len(ref_idx), bool)

    def evaluate(n: TraitNet) -> dict:
        zm, zv = predict_z(n, feats, ref_idx)
        pred, _ = scaler.to_log(zm, zv)
        res = {}
        subsets = {"": np.ones(len(ref_idx), bool)}
        if screen is not None:
            subsets[", screened"] = ref_ok
        for suffix, m in subsets.items():
            res["vs species labels" + suffix] = per_trait_metrics(pred[m], photos.log_median[ref_idx][m], scaler.mean,
                                                                  mcfg.traits)
            if photos.truth is not None:
                res["vs true traits" + suffix] = per_trait_metrics(pred[m], photos.truth["log_traits"][ref_idx][m],
                                                                   scaler.mean, mcfg.traits)
        return res

    report["reference_metrics"] = evaluate(net)
    if cfg.clean and cfg.compare_without_cleaning:
        net0, _, _, _ = fit_model(photos, feats, train_idx, ref_idx, cfg, mcfg, False, climplicit_path, log)
        report["reference_metrics_without_cleaning"] = evaluate(net0)
    if photos.truth is not None and cfg.clean:
        dropped = np.array(record["step1"]["dropped_index"] + record["step2"]["dropped_index"], np.int64)
        non_plant = ~photos.truth["is_plant"]
        kept = np.setdiff1d(train_idx, dropped)
        report["cleaning"]["non_plant_share_dropped"] = float(non_plant[dropped].mean()) if len(dropped) else None
        report["cleaning"]["non_plant_share_kept"] = float(non_plant[kept].mean()) if len(kept) else None
        report["cleaning"]["non_plant_reference_screened_out"] = int((non_plant[ref_idx] & ~ref_ok).sum())
        report["cleaning"]["non_plant_reference"] = int(non_plant[ref_idx].sum())
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    save_traits(out, encoders, net, scaler, mcfg, cfg, report, climplicit_path, record, screen)
    write_report(out.with_suffix(".json"), report)
    return report


__all__ = ["TraitTrainConfig", "fit", "fit_model", "train_with_cleaning", "train_plain", "train_traits",
           "per_trait_metrics", "r2_score"]
