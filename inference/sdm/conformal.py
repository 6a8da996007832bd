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


def block_threshold(y_cal: np.ndarray, prob_cal: np.ndarray, blocks: np.ndarray, alpha: float = 0.1) -> float:
    """A threshold whose guarantee holds for whole spatial blocks: conformal risk control over the
    calibration blocks (Angelopoulos, Bates, Fisch, Lei and Schuster, "Conformal risk control",
    ICLR 2024).

    The loss of a block b at threshold t is L_b(t), the share of its presences scoring below t
    (bounded by 1, non-decreasing in t). With the n calibration blocks that hold presences, the
    threshold is the largest t with (sum_b L_b(t) + 1) / (n + 1) <= alpha. If the blocks are
    exchangeable with a new block (the units the spatial hold-out moves whole), the expected
    omission of the new block is at most alpha, whatever the dependence inside a block; split
    conformal over pooled presences (:func:`global_threshold`) assumes exchangeable presences,
    which neighbouring cells are not. The price: with few blocks no t qualifies
    (1 / (n + 1) > alpha) and the threshold is 0 (every species everywhere).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    y_cal = np.asarray(y_cal, bool)
    blocks = np.asarray(blocks)
    if blocks.shape != (y_cal.shape[0],):
        raise ValueError(f"one block id per calibration sample: {blocks.shape} for {y_cal.shape[0]} samples")
    per_block = []
    for b in np.unique(blocks):
        rows = blocks == b
        scores = np.sort(np.asarray(prob_cal)[rows][y_cal[rows]])
        if scores.size:
            per_block.append(scores)
    n = len(per_block)
    if n == 0:
        raise ValueError("no presences in the calibration data")
    candidates = np.unique(np.concatenate(per_block))  # L_b is constant between two scores
    risk = np.zeros(candidates.size)
    for scores in per_block:
        risk += np.searchsorted(scores, candidates, side="left") / scores.size  # share strictly below t
    feasible = (risk + 1.0) / (n + 1) <= alpha  # a prefix: the risk grows with t
    if not feasible[0]:
        return 0.0
    return float(candidates[np.flatnonzero(feasible)[-1]])


def block_omission(y: np.ndarray, prob: np.ndarray, blocks: np.ndarray, threshold: float) -> float:
    """Mean over blocks (with presences) of the share of their presences below ``threshold``."""
    y = np.asarray(y, bool)
    rates = [float((np.asarray(prob)[r][y[r]] < threshold).mean()) for b in np.unique(blocks)
             if (y[r := np.asarray(blocks) == b]).any()]
    return float(np.mean(rates)) if rates else 0.0


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
