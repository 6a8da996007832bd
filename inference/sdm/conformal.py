"""Conformal thresholds that bound the chance of omitting a truly present species.

GeoFlora uses one **global** threshold by default. The guarantee is marginal over (cell, present
species) pairs: with calibration presences' predicted probabilities s_1..s_n, the threshold
t = the floor(alpha (n + 1))-th smallest score gives P(p < t) <= alpha for a new present species
(split conformal, exchangeable data). A per-species threshold would need enough calibration
presences of every species; rare species have a handful, so their quantile is either undefined or
so low that their maps fill the region. The per-species variant is available
(``species_thresholds``) for species with at least ``min_presences`` calibration presences, falling
back to the global threshold for the others.
"""

from __future__ import annotations

import math

import numpy as np

from inference.sdm.metrics import sample_f1


def global_threshold(y_cal: np.ndarray, prob_cal: np.ndarray, alpha: float = 0.1) -> float:
    """Largest t such that at most a share ``alpha`` of calibration presences score below t."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    scores = np.sort(prob_cal[y_cal.astype(bool)])
    n = scores.size
    if n == 0:
        raise ValueError("no presences in the calibration data")
    k = math.floor(alpha * (n + 1))  # number of presences allowed below the threshold
    if k < 1:
        return 0.0
    return float(scores[k - 1]) if k <= n else 1.0


def species_thresholds(y_cal: np.ndarray, prob_cal: np.ndarray, alpha: float = 0.1,
                       min_presences: int = 30) -> np.ndarray:
    """Per-species conformal thresholds, the global one where a species has too few presences."""
    t_glob = global_threshold(y_cal, prob_cal, alpha)
    out = np.full(y_cal.shape[1], t_glob, dtype=np.float64)
    for j in range(y_cal.shape[1]):
        pres = y_cal[:, j].astype(bool)
        if pres.sum() >= min_presences:
            out[j] = global_threshold(pres[:, None], prob_cal[:, j:j + 1], alpha)
    return out


def omission_rate(y: np.ndarray, prob: np.ndarray, threshold: float | np.ndarray) -> float:
    """Share of truly present species (cell, species pairs) that fall below the threshold."""
    y = y.astype(bool)
    below = prob < threshold
    return float((below & y).sum() / max(y.sum(), 1))


def f1_optimal_threshold(y: np.ndarray, prob: np.ndarray, grid: np.ndarray | None = None) -> float:
    """The single threshold maximising sample-averaged F1 (the paper's choice for species maps)."""
    grid = np.linspace(0.01, 0.99, 99) if grid is None else grid
    scores = [sample_f1(y, prob >= t) for t in grid]
    return float(grid[int(np.argmax(scores))])
