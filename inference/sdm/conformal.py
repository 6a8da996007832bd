"""Conformal thresholds that bound the chance of omitting a truly present species.

The cascade's assemblages use **conformal risk control over 5 km calibration sub-blocks**
(:func:`calibrate` picks it, :func:`assemblage_threshold` reads it back): measured over three
generated regions it keeps the alpha promise on held-out spatial blocks where split conformal over
pooled presences does not (docs/measurements.md). The **global** threshold is kept for comparison
and as the fallback where too few sub-blocks exist for alpha. Its guarantee is marginal over (cell,
present species) pairs: with calibration presences' predicted probabilities s_1..s_n, the threshold
t = the floor(alpha (n + 1))-th smallest score gives P(p < t) <= alpha for a new present species
(split conformal, exchangeable data), which neighbouring cells are not. A per-species threshold would need enough calibration
presences of every species; rare species have a handful, so their quantile is either undefined or
so low that their maps fill the region. The per-species variant is available
(``species_thresholds``) for species with at least ``min_presences`` calibration presences, falling
back to the global threshold for the others.
"""

from __future__ import annotations

import math

import numpy as np

from inference.sdm.metrics import sample_f1
from inference.splits import spatial_blocks

SUB_BLOCK_M = 5_000  # the 5 km quarters of the 10 km hold-out blocks: the calibration units


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


def calibrate(y_cal: np.ndarray, prob_cal: np.ndarray, alpha: float, x: np.ndarray | None = None,
              y: np.ndarray | None = None, blocks: np.ndarray | None = None) -> dict:
    """Every threshold of a calibrated SDM, and the one its assemblages use (``conformal``).

    ``x``, ``y`` (EPSG:3035 m) give the 5 km sub-blocks, ``blocks`` the 10 km hold-out blocks; the
    cascade threshold is conformal risk control over the sub-blocks (``conformal_method``
    "subblocks"). Without coordinates, or with fewer sub-blocks than alpha allows
    (1 / (n + 1) > alpha), it is the global split-conformal threshold, and the method says why."""
    y_cal = np.asarray(y_cal, bool)
    out = {"alpha": alpha, "conformal_global": global_threshold(y_cal, prob_cal, alpha),
           "f1_optimal": f1_optimal_threshold(y_cal, prob_cal)}
    if blocks is not None:
        out["conformal_blocks"] = block_threshold(y_cal, prob_cal, blocks, alpha)
        out["calibration_blocks"] = int(len(np.unique(np.asarray(blocks)[y_cal.any(1)])))
    out["conformal"], out["conformal_method"] = out["conformal_global"], "global (no calibration coordinates)"
    if x is not None and y is not None:
        sub = spatial_blocks(x, y, SUB_BLOCK_M)
        n_sub = int(len(np.unique(sub[y_cal.any(1)])))
        out["conformal_subblocks"], out["calibration_subblocks"] = block_threshold(y_cal, prob_cal, sub, alpha), n_sub
        if 1.0 / (n_sub + 1) <= alpha:
            out["conformal"], out["conformal_method"] = out["conformal_subblocks"], "subblocks"
        else:
            out["conformal_method"] = (f"global ({n_sub} calibration sub-blocks hold presences; conformal risk "
                                       f"control at alpha {alpha} needs at least {math.ceil(1 / alpha) - 1})")
    return out


def assemblage_threshold(thresholds: dict) -> float:
    """The threshold that turns probabilities into assemblages (``conformal``; checkpoints written
    before sub-block calibration have only ``conformal_global``). KeyError: none calibrated."""
    return float(thresholds["conformal"] if "conformal" in thresholds else thresholds["conformal_global"])


def has_assemblage_threshold(thresholds: dict) -> bool:
    return "conformal" in thresholds or "conformal_global" in thresholds


def held_out_report(y: np.ndarray, prob: np.ndarray, thresholds: dict, blocks: np.ndarray | None = None) -> dict:
    """Held-out figures of each conformal threshold in ``thresholds``: omission pooled over the
    presences (``omission_at_<name>``), averaged over ``blocks`` (``block_omission_at_<name>``), and
    the mean assemblage size (``mean_set_size_at_<name>``)."""
    out = {}
    for name in ("conformal", "conformal_global", "conformal_blocks", "conformal_subblocks"):
        if name in thresholds:
            t = float(thresholds[name])
            out[f"omission_at_{name}"] = omission_rate(y, prob, t)
            out[f"mean_set_size_at_{name}"] = float((prob >= t).sum(1).mean())
            if blocks is not None:
                out[f"block_omission_at_{name}"] = block_omission(y, prob, blocks, t)
    return out
