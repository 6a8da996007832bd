"""The seven indicators against hand-computed cases, and the SDM probability calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inference.indicators import SpeciesAttributes, compute_indicators, specialist_mask

# Four species: LC, VU, not assessed (None), CR.  Directive: 1 and 3.  Invasive: 0.  Trees: 2 and 3.
ATTRS = SpeciesAttributes(iucn=["LC", "VU", None, "CR"], eu_directive=[0, 1, 0, 1], invasive=[1, 0, 0, 0],
                          tree=[0, 0, 1, 1], specialist=[0, 0, 0, 1])


def _cells(*columns):
    """Probabilities [S=4, cells] from per-cell columns."""
    return torch.tensor(np.array(columns, np.float32).T)


def test_hand_computed_cell_with_threshold():
    # threshold 0.1 drops species 3 (p = 0.05) from the assemblage
    out = compute_indicators(_cells([0.5, 0.2, 0.9, 0.05]), ATTRS, 0.1)
    assert out["richness.mean"][0] == pytest.approx(1.6)
    assert out["richness.halfwidth"][0] == pytest.approx(2 * math.sqrt(0.25 + 0.16 + 0.09))
    assert out["eu_directive.mean"][0] == pytest.approx(0.2)
    assert out["eu_directive.halfwidth"][0] == pytest.approx(2 * math.sqrt(0.16))
    assert out["threatened.mean"][0] == pytest.approx(0.2)  # VU in, CR below the threshold
    assert out["trees.mean"][0] == pytest.approx(0.9)
    assert out["trees.halfwidth"][0] == pytest.approx(2 * math.sqrt(0.09))
    assert out["invasive.mean"][0] == pytest.approx(0.5)
    assert out["specialists.mean"][0] == pytest.approx(0.0)
    assert out["status.p_vu"][0] == pytest.approx(0.2)
    assert out["status.p_cr"][0] == pytest.approx(0.0)
    assert out["status.p_nt"][0] == 0.0
    assert int(out["status.most"][0]) == 3  # VU


def test_without_threshold_every_species_counts():
    out = compute_indicators(_cells([0.5, 0.2, 0.9, 0.05]), ATTRS, None)
    assert out["richness.mean"][0] == pytest.approx(1.65)
    assert out["threatened.mean"][0] == pytest.approx(0.25)
    assert out["status.p_cr"][0] == pytest.approx(0.05)
    assert int(out["status.most"][0]) == 5  # CR
    assert out["specialists.mean"][0] == pytest.approx(0.05)


def test_no_species_all_zero():
    out = compute_indicators(_cells([0, 0, 0, 0], [0.05, 0.01, 0.0, 0.09]), ATTRS, 0.1)
    for key, value in out.items():
        assert (value == 0).all(), key  # nothing in the assemblage: every count 0, no status
    assert not any(torch.signbit(v.float()).any() for v in out.values())  # no -0.0 in the files


def test_all_probabilities_one_certain_counts_and_statuses():
    out = compute_indicators(_cells([1, 1, 1, 1]), ATTRS, 0.1)
    assert out["richness.mean"][0] == 4
    assert out["richness.halfwidth"][0] == 0  # no uncertainty when every species is certain
    assert out["threatened.mean"][0] == 2
    assert out["status.p_vu"][0] == 1.0 and out["status.p_cr"][0] == 1.0
    assert torch.isfinite(torch.stack([v.float() for v in out.values()])).all()
    assert int(out["status.most"][0]) == 5


def test_missing_iucn_status_counts_in_richness_only():
    attrs = SpeciesAttributes(iucn=[None, "", "DD", "NE"], eu_directive=[0] * 4, invasive=[0] * 4, tree=[0] * 4)
    out = compute_indicators(_cells([0.9, 0.8, 0.7, 0.6]), attrs, 0.1)
    assert out["richness.mean"][0] == pytest.approx(3.0)
    assert out["threatened.mean"][0] == 0
    assert int(out["status.most"][0]) == 0
    assert all(out[f"status.p_{s}"][0] == 0 for s in ("nt", "vu", "en", "cr"))


def test_status_probability_is_one_minus_product():
    attrs = SpeciesAttributes(iucn=["EN", "EN", "EN", "LC"], eu_directive=[0] * 4, invasive=[0] * 4, tree=[0] * 4)
    out = compute_indicators(_cells([0.5, 0.4, 0.2, 0.9]), attrs, 0.1)
    assert out["status.p_en"][0] == pytest.approx(1 - 0.5 * 0.6 * 0.8)
    assert int(out["status.most"][0]) == 4


def test_per_species_thresholds_and_chunking_give_the_same_answer():
    rng = np.random.default_rng(0)
    s = 37
    attrs = SpeciesAttributes(iucn=list(rng.choice(["LC", "NT", "VU", "EN", "CR", "DD", None], s)),
                              eu_directive=rng.random(s) < 0.2, invasive=rng.random(s) < 0.1,
                              tree=rng.random(s) < 0.2, specialist=rng.random(s) < 0.1)
    prob = torch.tensor(rng.beta(0.3, 2.0, (s, 9, 11)), dtype=torch.float32)
    thr = torch.tensor(rng.uniform(0.01, 0.2, s), dtype=torch.float32)
    a = compute_indicators(prob, attrs, thr, chunk=512)
    b = compute_indicators(prob, attrs, thr, chunk=5)
    for key in a:
        assert a[key].shape == (9, 11)
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
    # direct numpy for one indicator with per-species thresholds
    p = np.where(prob.numpy() >= thr.numpy()[:, None, None], prob.numpy(), 0)
    np.testing.assert_allclose(a["trees.mean"].numpy(), p[attrs.tree].sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    prob = torch.rand(4, 64, 64)
    a = compute_indicators(prob, ATTRS, 0.1)
    b = compute_indicators(prob.cuda(), ATTRS, 0.1)
    for key in a:
        torch.testing.assert_close(a[key], b[key].cpu(), rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown IUCN"):
        SpeciesAttributes(iucn=["LC", "XX"], eu_directive=[0, 0], invasive=[0, 0], tree=[0, 0])
    with pytest.raises(ValueError, match="'tree' has 1 entries"):
        SpeciesAttributes(iucn=["LC", "LC"], eu_directive=[0, 0], invasive=[0, 0], tree=[0])
    with pytest.raises(ValueError, match="4 species attributes for 3"):
        compute_indicators(torch.rand(3, 5), ATTRS, 0.1)
    with pytest.raises(ValueError, match="3 thresholds for 4"):
        compute_indicators(torch.rand(4, 5), ATTRS, torch.full((3,), 0.1))


def test_specialists_are_confined_and_rare_elsewhere():
    n = 200
    p = np.full((n, 3), 0.001)
    p[:10, 0] = 0.6          # confined to 5 % of cells, very low elsewhere: specialist
    p[:, 1] = 0.3            # everywhere: generalist
    p[:100, 2] = 0.5         # half the region: not a specialist
    assert specialist_mask(p, threshold=0.1).tolist() == [True, False, False]
    with pytest.raises(ValueError):
        specialist_mask(np.zeros((0, 3)), 0.1)


def test_calibration_recovers_plot_probabilities_from_inflated_logits():
    """Inflated logits (as pos-weighted BCE gives) of surveys of several areas: the fit recovers q."""
    from inference.sdm.calibration import fit_calibration

    rng = np.random.default_rng(0)
    n, s = 4000, 20
    true_logit = rng.normal(-3.0, 1.5, (n, s))
    q = 1 / (1 + np.exp(-true_logit))
    area = rng.choice([25.0, 100.0, 400.0], n)
    recorded = rng.random((n, s)) < 1 - (1 - q) ** (area[:, None] / 100)
    inflated = 0.8 * true_logit + 1.5  # what the model outputs: right ranking, wrong level
    cal = fit_calibration(inflated, recorded, area)
    q_hat = 1 / (1 + np.exp(-cal.apply_logits(inflated)))
    raw = 1 / (1 + np.exp(-inflated))
    assert cal.nll_after < cal.nll_before
    assert abs(q_hat.sum(1).mean() - q.sum(1).mean()) < 0.1 * q.sum(1).mean()
    assert raw.sum(1).mean() > 2 * q.sum(1).mean()  # the problem it fixes
    assert np.abs(q_hat - q).mean() < 0.25 * np.abs(raw - q).mean()
    # folded into a linear head it gives the same probabilities
    head = torch.nn.Linear(3, s)
    x = torch.randn(5, 3)
    before = head(x).detach().numpy()
    cal.fold_into(head)
    np.testing.assert_allclose(head(x).detach().numpy(), cal.apply_logits(before), rtol=1e-5, atol=1e-5)
