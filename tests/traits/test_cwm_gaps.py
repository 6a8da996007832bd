"""Community-weighted means over trait tables with gaps (inference/traits/maps.py): each trait is
masked on its own, and its coverage says what share of the assemblage's weight it rests on."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from inference.data.interface import Species, TraitDistribution
from inference.traits.maps import CWMAccumulator, cwm, species_log_medians

NAN = float("nan")


def test_cwm_with_a_missing_trait_hand_computed():
    # 3 species x 2 traits; species 1 lacks trait 1
    mu = np.array([[0.0, 1.0],
                   [2.0, NAN],
                   [4.0, 3.0]])
    # cells: a mixed one, one with only the species without trait 1, an empty one
    prob = np.array([[[0.6, 0.0, 0.0]], [[0.2, 0.5, 0.0]], [[0.2, 0.0, 0.0]]], np.float32)
    mean, sd, cov = cwm(prob, mu, return_coverage=True)
    assert mean.shape == sd.shape == cov.shape == (2, 1, 3)
    # trait 0, everybody: (0.6 * 0 + 0.2 * 2 + 0.2 * 4) / 1.0 = 1.2
    assert mean[0, 0, 0] == pytest.approx(1.2, rel=1e-6)
    assert sd[0, 0, 0] == pytest.approx(math.sqrt((0.6 * 1.44 + 0.2 * 0.64 + 0.2 * 7.84) / 1.0), rel=1e-5)
    # trait 1, species 0 and 2 only, weights renormalised over 0.8: (0.6 * 1 + 0.2 * 3) / 0.8 = 1.5
    assert mean[1, 0, 0] == pytest.approx(1.5, rel=1e-6)
    assert sd[1, 0, 0] == pytest.approx(math.sqrt((0.6 * 0.25 + 0.2 * 2.25) / 0.8), rel=1e-5)   # sqrt(0.75)
    np.testing.assert_allclose(cov[:, 0, 0], [1.0, 0.8], rtol=1e-6)
    # cell 1: only species 1, which lacks trait 1: trait 0 is its value, trait 1 NaN with coverage 0
    assert mean[0, 0, 1] == pytest.approx(2.0) and sd[0, 0, 1] == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(mean[1, 0, 1]) and np.isnan(sd[1, 0, 1]) and cov[1, 0, 1] == 0.0 and cov[0, 0, 1] == 1.0
    # cell 2: empty assemblage: NaN everywhere, coverage too
    assert np.isnan(mean[:, 0, 2]).all() and np.isnan(sd[:, 0, 2]).all() and np.isnan(cov[:, 0, 2]).all()
    # the two-value signature is unchanged
    m2, s2 = cwm(prob, mu)
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(s2, sd)
    # with a threshold of 0.5 only species 0 is left in cell 0 (it has both traits)
    mt, _, ct = cwm(prob, mu, threshold=0.5, return_coverage=True)
    np.testing.assert_allclose(mt[:, 0, 0], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(ct[:, 0, 0], [1.0, 1.0])
    assert np.isnan(mt[1, 0, 1]) and ct[1, 0, 1] == 0.0           # species 1 (0.5) is in, without trait 1


def test_intraspecific_sds_with_gaps():
    mu = np.array([[0.0, 1.0], [2.0, NAN], [4.0, 3.0]])
    sds = np.array([[0.5, 0.5], [0.5, NAN], [0.5, NAN]])    # species 2 has a mean but no sd for trait 1
    prob = np.array([[[0.6]], [[0.2]], [[0.2]]], np.float32)
    _, sd = cwm(prob, mu, log_trait_sds=sds)
    assert sd[0, 0, 0] == pytest.approx(math.sqrt(0.6 * 1.44 + 0.2 * 0.64 + 0.2 * 7.84 + 0.25), rel=1e-5)
    # trait 1: between-species variance 0.75, plus 0.25 from species 0 only: (0.6 * 0.25) / 0.8
    assert sd[1, 0, 0] == pytest.approx(math.sqrt(0.75 + 0.6 * 0.25 / 0.8), rel=1e-5)


def test_a_trait_nobody_has_and_no_gaps():
    rng = np.random.default_rng(3)
    mu = rng.normal(0, 1, (20, 4))
    prob = rng.uniform(0, 1, (20, 6, 7)).astype(np.float32)
    m_full, s_full, c_full = cwm(prob, mu, threshold=0.3, return_coverage=True)
    np.testing.assert_array_equal(c_full[np.isfinite(m_full)], 1.0)
    gappy = mu.copy()
    gappy[:, 2] = NAN                                          # nobody has trait 2
    m, s, c = cwm(prob, gappy, threshold=0.3, return_coverage=True)
    assert np.isnan(m[2]).all() and np.isnan(s[2]).all()
    filled = np.isfinite(m_full[0])
    np.testing.assert_array_equal(c[2][filled], 0.0)
    np.testing.assert_allclose(m[[0, 1, 3]], m_full[[0, 1, 3]], rtol=1e-5, atol=1e-6)   # the others unchanged
    np.testing.assert_allclose(s[[0, 1, 3]], s_full[[0, 1, 3]], rtol=1e-4, atol=1e-5)


def test_streaming_with_gaps_matches_a_reference():
    rng = np.random.default_rng(1)
    S = 300
    prob = rng.uniform(0, 0.3, (S, 40, 50)).astype(np.float32)
    mu = rng.normal(0, 2, (S, 4))
    mu[rng.uniform(0, 1, (S, 4)) < np.array([0.0, 0.1, 0.5, 0.9])] = NAN   # gaps from none to most
    m1, s1, c1 = cwm(torch.from_numpy(prob), mu, threshold=0.1, chunk=64, return_coverage=True)
    assert torch.is_tensor(m1) and torch.is_tensor(c1)
    acc = CWMAccumulator(mu, (40, 50), threshold=0.1)
    for s0 in range(0, S, 100):
        acc.add(slice(s0, s0 + 100), prob[s0:s0 + 100])
    m2, s2, c2 = acc.result(return_coverage=True)
    np.testing.assert_allclose(m1.numpy(), m2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c1.numpy(), c2, rtol=1e-5, atol=1e-6)
    w = np.where(prob >= 0.1, prob, 0).reshape(S, -1).astype(np.float64)
    has = np.isfinite(mu)
    wt = has.T.astype(np.float64) @ w                                   # [T, cells]
    ref_mean = (np.where(has, mu, 0).T @ w) / wt
    ref_cov = wt / w.sum(0)
    np.testing.assert_allclose(m2.reshape(4, -1), ref_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c2.reshape(4, -1), ref_cov, rtol=1e-5)
    assert (c2[0] == 1).all() and 0.05 < c2[3].mean() < 0.2


def test_infinite_values_are_still_errors():
    prob = np.ones((2, 1, 1), np.float32)
    with pytest.raises(ValueError, match="infinite"):
        cwm(prob, np.array([[0.0], [-np.inf]]))


def _species(i: int, sid: int, medians: dict) -> Species:
    traits = {t: TraitDistribution(m, NAN, NAN, NAN, math.log(m) if m > 0 else NAN, NAN) for t, m in medians.items()}
    return Species(i, sid, f"Species {sid}", "Genus", "", "", "herb", "herb", "LC", False, False, False, False,
                   False, False, NAN, traits)


def test_species_log_medians_with_gaps_and_unknown_ids():
    region = SimpleNamespace(species=[
        _species(0, 5, {"Height": 2.0, "LeafArea": 10.0, "SLA": 20.0, "Leaf_N": 15.0}),
        _species(1, 7, {"Height": NAN, "LeafArea": 10.0, "SLA": 20.0, "Leaf_N": 15.0}),
        _species(2, 9, {"Height": 1.0, "SLA": 25.0}),                 # no LeafArea, Leaf_N entries at all
    ])
    mu = species_log_medians(region, [9, 5, 7])
    np.testing.assert_allclose(mu[1], np.log([2.0, 10.0, 20.0, 15.0]))
    assert np.isnan(mu[2, 0]) and np.isfinite(mu[2, 1:]).all()
    assert mu[0, 0] == 0.0 and np.isnan(mu[0, [1, 3]]).all() and mu[0, 2] == pytest.approx(math.log(25))
    assert species_log_medians(region).shape == (3, 4)
    with pytest.raises(KeyError, match="not in the region's species table: 4, 8"):
        species_log_medians(region, [5, 4, 8])
    region.species.append(_species(3, 11, {"Height": 0.0}))
    with pytest.raises(ValueError, match="species 11: Height median 0.0 is not > 0"):
        species_log_medians(region)
