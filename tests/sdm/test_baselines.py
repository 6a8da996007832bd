"""Tabular SDM baselines (inference.sdm.baselines) on a tiny generated region: they learn, honestly."""

from __future__ import annotations

import numpy as np
import pytest

from inference.sdm.baselines import (
    FEATURE_NAMES,
    fit_maxent,
    fit_random_forest,
    predict_maxent,
    predict_random_forest,
    tabular_features,
)
from inference.sdm.metrics import macro_auc, soft_auc_per_species
from inference.splits import CAL, TEST, TRAIN

N_SPECIES = 30


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from inference.data.region import generate_region
    from inference.sdm.dataset import region_samples

    region = generate_region(tmp_path_factory.mktemp("sdm") / "r", seed=3, nx=1, ny=1, n_species=N_SPECIES)
    return region_samples(region, seed=0, s2_size=64)


@pytest.fixture(scope="module")
def table(data):
    X, names = tabular_features(data.inputs)
    train = data.split == TRAIN
    cal = (data.split == CAL) & ~data.is_po
    test = (data.split == TEST) & ~data.is_po
    assert test.sum() >= 30 and data.labels[test].any(0).sum() >= 10, "tiny region too small to test on"
    return X, names, train, cal, test


def nearest_block_prevalence(data, train, test) -> np.ndarray:
    """Trivial spatial baseline: species prevalence of the nearest training block (by centroid)."""
    blocks = np.unique(data.block[train])
    cx = np.array([data.x[train][data.block[train] == b].mean() for b in blocks])
    cy = np.array([data.y[train][data.block[train] == b].mean() for b in blocks])
    prev = np.stack([data.labels[train][data.block[train] == b].mean(0) for b in blocks])
    d2 = (data.x[test, None] - cx) ** 2 + (data.y[test, None] - cy) ** 2
    return prev[np.argmin(d2, 1)].astype(np.float32)


def test_tabular_features(data, table):
    X, names, *_ = table
    assert X.shape == (len(data), len(FEATURE_NAMES)) and X.dtype == np.float32
    assert names == FEATURE_NAMES and len(set(names)) == len(names)
    assert np.isfinite(X).all()
    assert X.std(0).min() > 0, [n for n, s in zip(names, X.std(0)) if s == 0]
    again, _ = tabular_features({k: v.copy() for k, v in data.inputs.items()}, chunk=97)
    np.testing.assert_array_equal(X, again)            # same inputs, same features, any chunking
    sub, _ = tabular_features({k: v[5:9] for k, v in data.inputs.items()})
    np.testing.assert_array_equal(X[5:9], sub)         # no fitting: a row depends on its sample only
    # units: temperatures in degrees C, precipitation in mm per month, NDVI in [-1, 1]
    col = {n: i for i, n in enumerate(names)}
    assert -5 < X[:, col["clim_tas_annual"]].mean() < 20
    assert 20 < X[:, col["clim_pr_annual"]].mean() < 300
    assert np.abs(X[:, col["s2_ndvi_c5"]]).max() <= 1


def check_learns(name, prob, data, table):
    X, _, train, _, test = table
    y, p_true = data.labels[test], data.p_true[test]
    assert prob.shape == (test.sum(), data.labels.shape[1]) and prob.dtype == np.float32
    assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    auc = macro_auc(y, prob)
    prev_auc = macro_auc(y, np.repeat(data.labels[train].mean(0, keepdims=True), test.sum(), 0))
    block_auc = macro_auc(y, nearest_block_prevalence(data, train, test))
    soft = float(np.nanmean(soft_auc_per_species(p_true, prob)))
    print(f"{name}: test macro AUC {auc:.3f} (prevalence {prev_auc:.3f}, nearest block {block_auc:.3f}), "
          f"AUC vs truth {soft:.3f}")
    assert prev_auc == pytest.approx(0.5)
    assert auc > 0.62 and auc > block_auc + 0.03
    assert soft > 0.6


def test_random_forest_learns(data, table):
    X, _, train, cal, test = table
    grid = {"min_samples_leaf": [10, 30], "max_features": ["sqrt"]}
    model, info = fit_random_forest(X[train], data.labels[train], X[cal], data.labels[cal],
                                    seed=0, n_jobs=2, grid=grid, n_estimators=30)
    assert len(info["grid"]) == 2 and info["chosen"] in [{k: g[k] for k in grid} for g in info["grid"]]
    assert info["val_macro_auc"] == max(g["val_macro_auc"] for g in info["grid"])
    check_learns("random forest", predict_random_forest(model, X[test]), data, table)


def test_random_forest_species_absent_from_training(table, data):
    X, _, train, cal, _ = table
    Y = data.labels[train].copy()
    Y[:, 0] = False                                     # never present in training
    model, _ = fit_random_forest(X[train], Y, X[cal], data.labels[cal], seed=0, n_jobs=2,
                                 grid={"min_samples_leaf": [30], "max_features": ["sqrt"]}, n_estimators=5)
    prob = predict_random_forest(model, X[cal])
    assert prob.shape == (cal.sum(), N_SPECIES) and (prob[:, 0] == 0).all()


def test_maxent_learns(data, table):
    X, _, train, cal, test = table
    grid = {"feature_types": ["lq"], "beta_multiplier": [1.0, 4.0]}
    Y = data.labels[train].copy()
    rare = int(np.argmin(Y.sum(0)))
    Y[:, rare] = False
    Y[:2, rare] = True                                  # 2 presences: below the minimum of 3
    model, info = fit_maxent(X[train], Y, X[cal], data.labels[cal], is_po=data.is_po[train], n_jobs=2,
                             grid=grid, seed=0, max_background=2000, n_tune_species=12)
    assert len(info["grid"]) == 2 and info["n_tune_species"] <= 12
    assert 10 <= info["n_covariates"] < len(FEATURE_NAMES)
    assert model.models[rare] is None
    prob = predict_maxent(model, X[test])
    assert np.allclose(prob[:, rare], 2 / train.sum())  # constant training prevalence
    keep = np.ones(N_SPECIES, bool)
    keep[rare] = False
    data_k = data.subset(np.ones(len(data), bool))
    data_k.labels, data_k.p_true = data.labels[:, keep], data.p_true[:, keep]
    check_learns("maxent", np.ascontiguousarray(prob[:, keep]), data_k, table)
