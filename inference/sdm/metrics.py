"""SDM evaluation metrics, vectorised over species and samples (numpy)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _weighted_auc(scores: np.ndarray, pos_w: np.ndarray, neg_w: np.ndarray) -> float:
    """AUC with per-sample positive and negative weights (ties count one half)."""
    order = np.argsort(scores, kind="mergesort")
    s, pw, nw = scores[order], pos_w[order], neg_w[order]
    # group ties
    uniq, start = np.unique(s, return_index=True)
    pw_g = np.add.reduceat(pw, start)
    nw_g = np.add.reduceat(nw, start)
    neg_below = np.cumsum(nw_g) - nw_g
    total_pos, total_neg = pw_g.sum(), nw_g.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    return float((pw_g * (neg_below + 0.5 * nw_g)).sum() / (total_pos * total_neg))


def auc_per_species(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each species (column); NaN where a species has only one class."""
    n, s = y.shape
    out = np.full(s, np.nan)
    ranks = np.apply_along_axis(rankdata, 0, scores)
    pos = y.sum(0)
    neg = n - pos
    ok = (pos > 0) & (neg > 0)
    rank_sum = (ranks * y).sum(0)
    out[ok] = (rank_sum[ok] - pos[ok] * (pos[ok] + 1) / 2) / (pos[ok] * neg[ok])
    return out


def macro_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Mean AUC over species with both presences and absences."""
    return float(np.nanmean(auc_per_species(y.astype(bool), scores)))


def soft_auc_per_species(p_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Expected AUC when presences are drawn from the true probabilities ``p_true``.

    Each sample counts as a presence with weight p and as an absence with weight 1 - p. This is the
    AUC of the scores against the truth itself, free of the noise of one Bernoulli draw.
    """
    return np.array([_weighted_auc(scores[:, j], p_true[:, j], 1.0 - p_true[:, j]) for j in range(p_true.shape[1])])


def sample_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """F1 per sample (predicted set vs observed set), averaged over samples (GeoPlant's metric)."""
    y, pred = y.astype(bool), pred.astype(bool)
    tp = (y & pred).sum(1)
    denom = y.sum(1) + pred.sum(1)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)
    return float(f1.mean())


def recall_at_k(y: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of each sample's present species found among its top-``k`` scores, averaged."""
    y = y.astype(bool)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    hit = np.take_along_axis(y, top, axis=1).sum(1)
    n_pos = y.sum(1)
    ok = n_pos > 0
    return float((hit[ok] / n_pos[ok]).mean()) if ok.any() else float("nan")


def evaluate(y: np.ndarray, prob: np.ndarray, threshold: float | np.ndarray, p_true: np.ndarray | None = None) -> dict:
    """The SDM table row: macro AUC, sample F1 at ``threshold``, Recall@50/250, AUC against the truth."""
    out = {
        "macro_auc": macro_auc(y, prob),
        "sample_f1": sample_f1(y, prob >= threshold),
        "recall@50": recall_at_k(y, prob, 50),
        "recall@250": recall_at_k(y, prob, 250),
    }
    if p_true is not None:
        soft = soft_auc_per_species(p_true, prob)
        out["auc_vs_truth"] = float(np.nanmean(soft))
    return out
