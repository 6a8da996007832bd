"""Train the deep-SDM: BCE with positive weighting, target-group background for presence-only
samples, SGD or AdamW, spatial block hold-out, resumable checkpoints, conformal thresholds."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from inference.checkpoint import save_torch
from inference.sdm import conformal
from inference.sdm.calibration import Calibration, fit_calibration
from inference.sdm.dataset import SDMData
from inference.sdm.metrics import evaluate, macro_auc
from inference.sdm.model import DEMO, PAPER, MultimodalSDM, SDMConfig, save_sdm
from inference.sdm.preprocess import MODALITIES, Normalizer
from inference.splits import CAL, TEST, TRAIN
from inference.training import BestState, resolve_device, seed_everything, write_report


@dataclass
class TrainConfig:
    size: str = "demo"  # demo | paper: the model configuration
    epochs: int = 12
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | sgd
    lr: float | None = None  # default: 2e-3 for AdamW, 0.05 for SGD
    weight_decay: float = 1e-4
    max_pos_weight: float = 20.0  # positive weight per species: sqrt(negatives / positives), capped
    po_negative_weight: float = 0.1  # weight of the pseudo-absences of presence-only samples
    po_per_epoch: float = 1.0  # presence-only samples drawn per epoch, as a multiple of PA samples
    alpha: float = 0.1  # conformal: bound on the chance of omitting a truly present species
    seed: int = 0
    patience: int = 4  # epochs without a better calibration AUC before stopping
    augment: bool = True  # random flips / quarter turns of the Sentinel-2 patch
    calibrate: bool = True  # fit Platt scaling + per-species offsets on the calibration split
    device: str = "auto"  # auto: CUDA when present (settings ``device``)
    model_overrides: dict = field(default_factory=dict)

    def model_config(self, n_species: int) -> SDMConfig:
        base = {"demo": DEMO, "paper": PAPER}[self.size]
        return SDMConfig(n_species=n_species, **{**base, **self.model_overrides})


def pos_weights(labels: np.ndarray, cap: float) -> np.ndarray:
    pos = labels.sum(0).astype(np.float64)
    neg = len(labels) - pos
    return np.clip(np.sqrt(neg / np.maximum(pos, 1)), 1.0, cap).astype(np.float32)


def _batch(norm: Normalizer, data: SDMData, idx: np.ndarray, rng: np.random.Generator | None,
           s2_size: int) -> dict[str, torch.Tensor]:
    out = {}
    for name in MODALITIES:
        arr = data.inputs[name][idx]
        if name == "s2":
            off = (arr.shape[-1] - s2_size) // 2
            arr = arr[..., off:off + s2_size, off:off + s2_size]
            if rng is not None:  # the patch's orientation carries no ecological meaning
                k = int(rng.integers(4))
                arr = np.rot90(arr, k, axes=(2, 3))
                if rng.random() < 0.5:
                    arr = arr[..., ::-1]
        out[name] = norm.apply(name, np.ascontiguousarray(arr))
    return out


@torch.no_grad()
def predict_logits(model: MultimodalSDM, norm: Normalizer, data: SDMData, batch_size: int = 256) -> np.ndarray:
    """Per-sample (per-patch) logits [N, S]."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(data), batch_size):
        idx = np.arange(i, min(i + batch_size, len(data)))
        batch = {k: v.to(device) for k, v in _batch(norm, data, idx, None, model.config.patch_size).items()}
        out.append(model(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.n_species), np.float32)


def predict(model: MultimodalSDM, norm: Normalizer, data: SDMData, batch_size: int = 256) -> np.ndarray:
    """Per-sample (per-patch) probabilities [N, S]."""
    return 1.0 / (1.0 + np.exp(-predict_logits(model, norm, data, batch_size)))


def train_sdm(data: SDMData, out: Path, config: TrainConfig, resume: bool = False,
              progress: bool = True, log=print) -> dict:
    """Train on the TRAIN split, select on CAL, calibrate thresholds on CAL, report on TEST.

    Checkpoints: ``out`` (best model, with species list, normalisation, configuration and
    thresholds) and ``out.with_suffix('.last.pt')`` (the state to resume an interrupted run).
    """
    rng = seed_everything(config.seed)
    device = torch.device(resolve_device(config.device))
    n_species = data.labels.shape[1]
    mconf = config.model_config(n_species)
    train = data.part(TRAIN)
    cal_pa = data.part(CAL, pa_only=True)
    test_pa = data.part(TEST, pa_only=True)
    if len(train) == 0 or len(cal_pa) == 0:
        raise ValueError("training needs samples in the train and calibration splits")
    norm = Normalizer.fit(train.inputs, seed=config.seed)
    model = MultimodalSDM(mconf).to(device)
    lr = config.lr or (2e-3 if config.optimizer == "adamw" else 0.05)
    if config.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}: use adamw or sgd")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    pw = torch.from_numpy(pos_weights(train.labels[~train.is_po], config.max_pos_weight)).to(device)

    last_path = out.with_suffix(".last.pt")
    state = {"epoch": 0, "history": []}
    best = BestState(config.patience)
    if resume and last_path.is_file():
        ck = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        state = ck["state"]
        if "best" in ck:
            best.load(ck["best"])
        else:  # a resumable state written before BestState
            best.load({"score": state.pop("best_auc"), "state": state.pop("best_state"), "epoch": None,
                       "bad_epochs": state.pop("bad_epochs")})
        rng.bit_generator.state = ck["numpy_rng"]
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from {last_path} at epoch {state['epoch']}")

    pa_idx = np.flatnonzero(~train.is_po)
    po_idx = np.flatnonzero(train.is_po)
    n_po = min(len(po_idx), int(round(config.po_per_epoch * len(pa_idx))))
    t0 = time.perf_counter()
    while state["epoch"] < config.epochs and not best.stop:
        epoch = state["epoch"]
        model.train()
        order = np.concatenate([pa_idx, rng.choice(po_idx, n_po, replace=False) if n_po else po_idx[:0]])
        order = rng.permutation(order)
        n_batches = math.ceil(len(order) / config.batch_size)
        bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        total = 0.0
        for b in bar:
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            batch = {k: v.to(device) for k, v in
                     _batch(norm, train, idx, rng if config.augment else None, mconf.patch_size).items()}
            y = torch.from_numpy(train.labels[idx].astype(np.float32)).to(device)
            po = torch.from_numpy(train.is_po[idx])[:, None].to(device)
            logits = model(batch)
            # Presences weigh pos_weight; absences 1, pseudo-absences of presence-only cells less.
            w = torch.where(y > 0, pw.expand_as(y), torch.where(po, config.po_negative_weight, 1.0))
            loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{total / ((b + 1) * config.batch_size):.4f}")
        sched.step()
        cal_prob = predict(model, norm, cal_pa)
        auc = macro_auc(cal_pa.labels, cal_prob)
        state["history"].append({"epoch": epoch + 1, "loss": total / max(len(order), 1), "cal_macro_auc": auc,
                                 "seconds": round(time.perf_counter() - t0, 1)})
        log(f"epoch {epoch + 1}: loss {total / max(len(order), 1):.4f}  calibration macro AUC {auc:.4f}")
        best.update(auc, model, epoch + 1)
        state["epoch"] = epoch + 1
        save_torch(last_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "state": state, "best": best.to_dict(),
                               "numpy_rng": rng.bit_generator.state,
                               "torch_rng": torch.get_rng_state()})

    best.restore(model)
    model.cpu()  # calibration, thresholds and the saved model: on the CPU
    raw_test_prob = predict(model, norm, test_pa) if len(test_pa) else None
    if config.calibrate:
        calib = fit_calibration(predict_logits(model, norm, cal_pa), cal_pa.labels, cal_pa.area)
        calib.fold_into(model.head)  # the saved model outputs calibrated logits
    else:
        calib = Calibration.identity(n_species)
    cal_prob = predict(model, norm, cal_pa)
    thresholds = conformal.calibrate(cal_pa.labels, cal_prob, config.alpha, cal_pa.x, cal_pa.y, cal_pa.block)
    t_f1 = thresholds["f1_optimal"]
    report = {"train_seconds": round(time.perf_counter() - t0, 1), "epochs": state["epoch"],
              "history": state["history"], "n_train": len(train), "n_cal": len(cal_pa), "n_test": len(test_pa),
              "thresholds": thresholds}
    if len(test_pa):
        test_prob = predict(model, norm, test_pa)
        report["test"] = evaluate(test_pa.labels, test_prob, t_f1, test_pa.p_true)
        report["test"].update(conformal.held_out_report(test_pa.labels, test_prob, thresholds, test_pa.block))
        if test_pa.p_true is not None:  # richness bias: predicted vs true expected species per 100 m2 plot
            report["test"]["richness"] = {"true": float(test_pa.p_true.sum(1).mean()),
                                          "predicted_raw": float(raw_test_prob.sum(1).mean()),
                                          "predicted": float(test_prob.sum(1).mean())}
    report["calibration"] = calib.to_dict()
    save_sdm(out, model, norm, data.species_ids, report["thresholds"], report, asdict(config))
    write_report(out.with_suffix(".json"), report)
    return report


