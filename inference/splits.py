"""The spatial block hold-out every model shares: whole 10 km blocks go to TRAIN, CAL (model
selection, calibration, conformal thresholds) or TEST (reported metrics), so the same seed gives
the deep-SDM, Pl@ntBERT, BotaCLIP and PlantTraitNet the same held-out ground."""

from __future__ import annotations

import numpy as np

TRAIN, CAL, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", CAL: "calibration", TEST: "test"}
BLOCK_M = 10_000


def spatial_blocks(x: np.ndarray, y: np.ndarray, size: float = BLOCK_M) -> np.ndarray:
    """Id of the ``size`` x ``size`` block containing each point (blocks on a global grid)."""
    bx = np.floor(np.asarray(x) / size).astype(np.int64)
    by = np.floor(np.asarray(y) / size).astype(np.int64)
    return bx * 1_000_000 + by


def assign_splits(block: np.ndarray, seed: int, fractions=(0.6, 0.2, 0.2)) -> np.ndarray:
    """Whole blocks go to train, calibration or test (spatial block hold-out), shuffled by ``seed``."""
    uniq = np.unique(block)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    n_cal = max(1, int(round(fractions[1] * len(uniq))))
    n_test = max(1, int(round(fractions[2] * len(uniq))))
    if n_cal + n_test >= len(uniq):
        raise ValueError(f"only {len(uniq)} spatial blocks: too few for a train / calibration / test split")
    split_of = np.full(len(uniq), TRAIN, np.int8)
    split_of[order[:n_cal]] = CAL
    split_of[order[n_cal:n_cal + n_test]] = TEST
    return split_of[np.searchsorted(uniq, block)]
