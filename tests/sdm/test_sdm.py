"""The deep-SDM: shapes from constructor arguments, learning on tiny data, thresholds, fast inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.sdm import conformal
from inference.sdm.metrics import macro_auc, recall_at_k, sample_f1
from inference.sdm.model import DEMO, PAPER, MultimodalSDM, SDMConfig
from inference.splits import CAL, TEST, TRAIN, assign_splits, spatial_blocks


def test_paper_and_demo_configurations_build_from_arguments():
    paper = MultimodalSDM(SDMConfig(n_species=11_255, **PAPER))
    batch = {"s2": torch.zeros(2, 4, 128, 128), "climate": torch.zeros(2, 4, 19, 12),
             "landsat": torch.zeros(2, 6, 4, 21)}
    assert paper(batch).shape == (2, 11_255)
    assert paper.head.in_features == 3 * 512
    demo = MultimodalSDM(SDMConfig(n_species=7, s2_channels=3, **{**DEMO, "patch_size": 32}))
    batch["s2"] = torch.zeros(3, 3, 32, 32)
    batch["climate"], batch["landsat"] = batch["climate"][:1].expand(3, -1, -1, -1), batch["landsat"][:1].expand(3, -1, -1, -1)
    assert demo(batch).shape == (3, 7)


def test_blocks_are_10_km_and_splits_keep_blocks_whole():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(4.2e6, 4.25e6, 2000), rng.uniform(2.8e6, 2.85e6, 2000)
    block = spatial_blocks(x, y)
    assert len(np.unique(block)) == 25
    split = assign_splits(block, seed=3)
    for b in np.unique(block):
        assert len(np.unique(split[block == b])) == 1
    assert set(np.unique(split)) == {TRAIN, CAL, TEST}


def test_metrics_on_hand_computed_cases():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], bool)
    s = np.array([[0.9, 0.1, 0.2], [0.2, 0.8, 0.1], [0.7, 0.6, 0.3], [0.1, 0.3, 0.9]])
    assert macro_auc(y, s) == pytest.approx(1.0)
    assert macro_auc(y, -s) == pytest.approx(0.0)
    # sample 3 has 2 species; its top-1 holds one of them.
    assert recall_at_k(y, s, 1) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    # predicted at 0.65: {0}, {1}, {0}, {2}; F1 per sample 1, 1, 2*1/(1+2), 1
    assert sample_f1(y, s >= 0.65) == pytest.approx((1 + 1 + 2 / 3 + 1) / 4)


def test_conformal_threshold_bounds_omission_on_fresh_data():
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 4, size=(4000, 50))
    y_cal, y_new = rng.random(p.shape) < p, rng.random(p.shape) < p
    t = conformal.global_threshold(y_cal, p, alpha=0.1)
    assert conformal.omission_rate(y_cal, p, t) <= 0.1
    assert abs(conformal.omission_rate(y_new, p, t) - 0.1) < 0.01
    with pytest.raises(ValueError, match="alpha"):
        conformal.global_threshold(y_cal, p, alpha=1.5)


@pytest.mark.slow
def test_tiny_sdm_learns(tiny_sdm):
    """Held-out blocks: clearly above chance and the prevalence baseline (AUC 0.5), truth-consistent."""
    ck = torch.load(tiny_sdm, weights_only=False)
    test = ck["report"]["test"]
    assert test["macro_auc"] > 0.65, test
    assert test["auc_vs_truth"] > 0.65, test
    history = ck["report"]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    # The conformal guarantee on held-out surveys (alpha 0.1, tolerance for a small test set).
    assert test["omission_at_conformal"] <= 0.1 + 0.05  # the cascade threshold (thresholds["conformal"])
    assert ck["species_ids"] and ck["normalizer"]["mean"]["s2"]


def test_meta_tile_inference_matches_per_patch(tiny_sdm, tiny_region):
    from inference.data.region import load_region
    from inference.sdm.model import load_sdm
    from inference.sdm.predict import MetaTileSDM, deviation

    model, norm, _ = load_sdm(tiny_sdm)
    region = load_region(tiny_region)
    dev = deviation(MetaTileSDM(model, norm), region, next(region.grid.metatiles()), n_cells=128)
    # Only the patch borders differ (zero padding vs real neighbours); with 32 px patches the
    # border is a large share of the patch, so this is the loosest case (64 px: see README).
    assert dev["mean_abs"] < 0.01 and dev["max_abs"] < 0.1, dev
    assert dev["rank_corr"] > 0.995, dev


def test_training_resumes_after_interruption(tmp_path, tiny_samples):
    from inference.sdm.train import TrainConfig, train_sdm
    from tests.conftest import TINY_SDM

    small = tiny_samples.subset(np.arange(len(tiny_samples)) % 4 == 0)
    out = tmp_path / "sdm.pt"
    train_sdm(small, out, TrainConfig(epochs=1, model_overrides=TINY_SDM), progress=False, log=lambda *_: None)
    lines = []
    report = train_sdm(small, out, TrainConfig(epochs=2, model_overrides=TINY_SDM), resume=True,
                       progress=False, log=lines.append)
    assert any("resumed" in line and "epoch 1" in line for line in lines)
    assert [h["epoch"] for h in report["history"]] == [1, 2]
