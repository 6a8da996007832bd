"""Conformal risk control over spatial blocks: the threshold's finite-sample guarantee on data whose
blocks are exchangeable (and whose presences, within a block, are not)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.sdm.conformal import block_omission, block_threshold, global_threshold


def test_block_threshold_by_hand():
    # four blocks of two presences: at t = 0.2 one block loses one of two (sum of losses 0.5)
    scores = [[0.1, 0.5], [0.2, 0.6], [0.3, 0.7], [0.4, 0.8]]
    p = np.array([s for b in scores for s in b])[:, None]
    y = np.ones_like(p, bool)
    blocks = np.repeat(np.arange(4), 2)
    # (0.5 + 1) / 5 = 0.3: feasible at alpha 0.3; at t = 0.3 the sum is 1.0, (1 + 1) / 5 = 0.4 is not
    assert block_threshold(y, p, blocks, 0.3) == 0.2
    assert block_threshold(y, p, blocks, 0.4) == 0.3
    assert block_threshold(y, p, blocks, 0.2) == 0.1  # only the smallest score: no loss, 1 / 5
    assert block_threshold(y, p, blocks, 0.19) == 0.0  # 1 / (n + 1) > alpha: nothing qualifies
    assert block_omission(y, p, blocks, 0.35) == pytest.approx(np.mean([0.5, 0.5, 0.5, 0.0]))
    # absences and blocks without presences do not count
    y2 = np.vstack([y, np.zeros((3, 1), bool)])
    p2 = np.vstack([p, np.zeros((3, 1))])
    assert block_threshold(y2, p2, np.r_[blocks, 7, 7, 8], 0.3) == 0.2
    with pytest.raises(ValueError, match="one block id per calibration sample"):
        block_threshold(y, p, blocks[:-1], 0.3)


def _blocks(rng, n):
    """n + 1 exchangeable blocks: a block effect u makes a block both richer (more presences) and
    better predicted, and its presences alike (not exchangeable across blocks)."""
    out = []
    for _ in range(n + 1):
        u = rng.normal()
        m = int(rng.poisson(np.exp(2.5 + 0.8 * u))) + 1
        out.append(1 / (1 + np.exp(-(u + 0.7 * rng.normal(size=m)))))
    return out


@pytest.mark.parametrize("n, alpha", [(10, 0.2), (30, 0.1), (30, 0.2)])
def test_expected_omission_of_a_new_block_is_at_most_alpha(n, alpha):
    rng = np.random.default_rng(1)
    crc, pooled = [], []
    for _ in range(600):
        blocks = _blocks(rng, n)
        p = np.concatenate(blocks[:-1])[:, None]
        b = np.repeat(np.arange(n), [len(s) for s in blocks[:-1]])
        y = np.ones_like(p, bool)
        crc.append(float((blocks[-1] < block_threshold(y, p, b, alpha)).mean()))
        pooled.append(float((blocks[-1] < global_threshold(y, p, alpha)).mean()))
    se = np.std(crc) / np.sqrt(len(crc))
    assert np.mean(crc) <= alpha + 2 * se  # the guarantee (finite sample, any within-block dependence)
    assert np.mean(crc) >= alpha - 2 / (n + 1) - 2 * se  # and not vacuous: within 2 / (n + 1) of alpha
    assert np.mean(pooled) > alpha + 0.05  # pooled presences: rich, well predicted blocks set the threshold


def test_calibrate_uses_subblocks_where_alpha_allows_and_says_why_not_otherwise():
    from inference.sdm.conformal import SUB_BLOCK_M, assemblage_threshold, calibrate

    rng = np.random.default_rng(3)
    n_sub = 12  # 12 sub-blocks with presences: CRC exists at alpha 0.1 (1/13 <= 0.1), not at 0.05 (1/13 > 0.05)
    sub = np.repeat(np.arange(n_sub), 40)
    x = (sub % 4) * SUB_BLOCK_M + 100.0
    yy = (sub // 4) * SUB_BLOCK_M + 100.0
    prob = rng.uniform(size=(sub.size, 3))
    y = rng.uniform(size=prob.shape) < prob

    th = calibrate(y, prob, 0.1, x, yy, blocks=sub // 4)
    assert th["conformal_method"] == "subblocks" and th["calibration_subblocks"] == n_sub
    assert th["conformal"] == th["conformal_subblocks"] == block_threshold(y, prob, sub, 0.1) > 0
    assert th["conformal_global"] == global_threshold(y, prob, 0.1) and th["calibration_blocks"] == 3
    assert assemblage_threshold(th) == th["conformal"]

    th = calibrate(y, prob, 0.05, x, yy)
    assert th["conformal"] == th["conformal_global"] > 0 and th["conformal_subblocks"] == 0.0
    assert th["conformal_method"].startswith("global (12 calibration sub-blocks") and "at least 19" in th["conformal_method"]
    assert calibrate(y, prob, 0.1)["conformal_method"] == "global (no calibration coordinates)"
    # checkpoints written before sub-block calibration: their global threshold
    assert assemblage_threshold({"conformal_global": 0.07, "alpha": 0.1}) == 0.07
