"""Tabular SDM baselines the deep SDM is compared against: MaxEnt (elapid) and a random forest.

Both see the same three inputs as the CNN (Sentinel-2 patch, climate cube, Landsat cube), turned
into a fixed table of summary features by ``tabular_features``, and train on the same samples and
split (presence-absence surveys plus presence-only cells with target-group pseudo-absences). Each is
tuned on a validation set (the CAL split) by macro AUC over a small grid, with one setting for all
species, so that neither is handicapped by defaults nor tuned on the test split.
"""

from __future__ import annotations

import time
import warnings
from itertools import product

import numpy as np
from elapid import MaxentModel
from elapid.features import MaxentFeatureTransformer, compute_regularization
from elapid.models import estimate_C_from_betas
from joblib import Parallel, delayed
from sklearn.ensemble import RandomForestClassifier

from inference.sdm.metrics import macro_auc

# ---------------------------------------------------------------------------------------------------
# Tabular features
# ---------------------------------------------------------------------------------------------------

CLIMATE_VARS = ("pr", "tas", "tasmax", "tasmin")
LANDSAT_BANDS = ("R", "G", "B", "NIR", "SWIR1", "SWIR2")
S2_BANDS = ("R", "G", "B", "NIR")
CENTRE_PX = 5      # 5 x 5 S2 pixels at 10 m = the 50 m cell itself
NEIGHBOUR_PX = 25  # 25 x 25 S2 pixels = 250 m around the cell (an intermediate scale)
NDVI_BARE, NDVI_DENSE = 0.2, 0.6  # fixed thresholds: bare / built / water vs dense vegetation
_EPS = 1e-6


def _names() -> list[str]:
    names = []
    for v in CLIMATE_VARS:
        names += [f"clim_{v}_m{m:02d}" for m in range(1, 13)]
    for stat in ("annual", "iasd", "seas"):
        names += [f"clim_{v}_{stat}" for v in CLIMATE_VARS]
    for b in LANDSAT_BANDS:
        names += [f"ls_{b}_q{q}" for q in range(1, 5)]
    for stat in ("trend", "iasd"):
        names += [f"ls_{b}_{stat}" for b in LANDSAT_BANDS]
    names += [f"ls_ndvi_q{q}" for q in range(1, 5)]
    for stat in ("mean", "sd", "c5", "c25"):
        names += [f"s2_{b}_{stat}" for b in S2_BANDS]
    names += ["s2_ndvi_mean", "s2_ndvi_sd", "s2_ndvi_c5", "s2_ndvi_c25", "s2_ndvi_c25sd",
              "s2_frac_bare", "s2_frac_dense", "s2_ndvi_edge", "s2_ndvi_edge_c25"]
    return names


FEATURE_NAMES: list[str] = _names()


def _slope_per_decade(series: np.ndarray) -> np.ndarray:
    """Least-squares slope along the last axis (yearly steps), in units per decade."""
    n = series.shape[-1]
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    return (series @ t / (t @ t) * 10.0).astype(np.float32)


def _climate_features(c: np.ndarray) -> np.ndarray:
    """Climate cube [N, 4, years, 12] in CHELSA units -> 60 features in mm / degrees C."""
    c = c.astype(np.float32)
    phys = np.empty_like(c)
    phys[:, 0] = c[:, 0] / 100.0                # precipitation, mm per month
    phys[:, 1:] = c[:, 1:] / 10.0 - 273.15      # temperatures, degrees C
    monthly = phys.mean(2)                      # [N, 4, 12] climatology
    annual_by_year = phys.mean(3)               # [N, 4, years]
    return np.concatenate([
        monthly.reshape(len(c), -1),            # 48: per variable x month, mean over years
        monthly.mean(2),                        # 4: annual mean of the monthly values
        annual_by_year.std(2),                  # 4: inter-annual sd of the annual means
        monthly.std(2),                         # 4: seasonality (sd of the monthly climatology)
    ], 1)


def _landsat_features(ls: np.ndarray) -> np.ndarray:
    """Landsat cube [N, 6, 4, years] (0..255) -> 40 features."""
    ls = ls.astype(np.float32)
    quarterly = ls.mean(3)                      # [N, 6, 4]
    annual = ls.mean(2)                         # [N, 6, years]
    red, nir = quarterly[:, 0], quarterly[:, 3]
    ndvi_q = (nir - red) / (nir + red + _EPS)   # [N, 4]
    return np.concatenate([
        quarterly.reshape(len(ls), -1),         # 24: per band x quarter, mean over years
        _slope_per_decade(annual),              # 6: linear trend of the annual means
        annual.std(2),                          # 6: inter-annual sd
        ndvi_q,                                 # 4: NDVI of each quarter's mean
    ], 1)


def _window(a: np.ndarray, size: int) -> np.ndarray:
    """Central ``size`` x ``size`` window of [..., P, P]; the point's pixel is at (P//2, P//2)."""
    p = a.shape[-1]
    size = min(size, p)
    lo = p // 2 - size // 2
    return a[..., lo:lo + size, lo:lo + size]


def _edge(ndvi: np.ndarray) -> np.ndarray:
    """Mean absolute NDVI difference between 4-neighbour pixels: density of edges and hedges."""
    dx = np.abs(np.diff(ndvi, axis=-1)).mean((-2, -1))
    dy = np.abs(np.diff(ndvi, axis=-2)).mean((-2, -1))
    return 0.5 * (dx + dy)


def _s2_features(s2: np.ndarray) -> np.ndarray:
    """Sentinel-2 patch [N, 4, P, P] (reflectance x 10,000) -> 25 features at three scales."""
    s = s2.astype(np.float32) / 10_000.0
    red, nir = s[:, 0], s[:, 3]
    ndvi = (nir - red) / (nir + red + _EPS)     # [N, P, P]
    c5, c25 = _window(s, CENTRE_PX), _window(s, NEIGHBOUR_PX)
    n5, n25 = _window(ndvi, CENTRE_PX), _window(ndvi, NEIGHBOUR_PX)
    return np.concatenate([
        s.mean((2, 3)), s.std((2, 3)),          # 8: per band mean and sd over the whole patch
        c5.mean((2, 3)),                        # 4: per band mean of the 50 m cell
        c25.mean((2, 3)),                       # 4: per band mean of the 250 m neighbourhood
        np.stack([
            ndvi.mean((1, 2)), ndvi.std((1, 2)), n5.mean((1, 2)), n25.mean((1, 2)), n25.std((1, 2)),
            (ndvi < NDVI_BARE).mean((1, 2)), (ndvi > NDVI_DENSE).mean((1, 2)),
            _edge(ndvi), _edge(n25),
        ], 1),                                  # 9: NDVI summaries, cover fractions, edge density
    ], 1)


def tabular_features(inputs: dict[str, np.ndarray], chunk: int = 512) -> tuple[np.ndarray, list[str]]:
    """The CNN's three inputs as one table of fixed summary features (float32 [N, 125], names).

    Nothing is fitted here: every feature is a fixed function of one sample's inputs, so train,
    calibration, test and map cells get identical transformations. Features (see ``FEATURE_NAMES``):

    - climate (60), in mm per month and degrees C: per variable (pr, tas, tasmax, tasmin) x month
      the mean over 2000-2018 (48); per variable the annual mean of the monthly values, the
      inter-annual sd of annual means and the seasonality (sd of the monthly climatology) (12);
    - Landsat (40), per band (R, G, B, NIR, SWIR1, SWIR2): per quarter the mean over years (24),
      the linear trend of annual means per decade (6), the inter-annual sd (6); NDVI of each
      quarter's mean (4);
    - Sentinel-2 (25), reflectance 0..1, at three scales (whole patch, central 25 x 25 px = 250 m,
      central 5 x 5 px = the 50 m cell): per band patch mean and sd (8), cell mean (4),
      neighbourhood mean (4); NDVI patch mean and sd, cell mean, neighbourhood mean and sd, patch
      shares below 0.2 (bare, built, water) and above 0.6 (dense vegetation), and edge density
      (mean absolute NDVI step between neighbouring pixels) over the patch and the neighbourhood (9).

    The S2 patch statistics describe the patch given: compare models on the same ``s2_size``.
    Processed in chunks of ``chunk`` samples to bound memory (S2 patches dominate).
    """
    n = len(inputs["climate"])
    if not (len(inputs["s2"]) == len(inputs["landsat"]) == n):
        raise ValueError("inputs hold different numbers of samples")
    out = np.empty((n, len(FEATURE_NAMES)), np.float32)
    for i in range(0, n, chunk):
        sl = slice(i, min(i + chunk, n))
        out[sl] = np.concatenate([_climate_features(inputs["climate"][sl]),
                                  _landsat_features(inputs["landsat"][sl]),
                                  _s2_features(inputs["s2"][sl])], 1)
    return out, list(FEATURE_NAMES)


def _present_index(classes: np.ndarray) -> int | None:
    """Column of the 'present' class in a predict_proba block, None if training never saw it."""
    hits = np.flatnonzero(np.asarray(classes).astype(bool))
    return int(hits[0]) if hits.size else None


# ---------------------------------------------------------------------------------------------------
# Random forest
# ---------------------------------------------------------------------------------------------------

RF_GRID = {"min_samples_leaf": [10, 30, 100], "max_features": ["sqrt"]}
RF_N_ESTIMATORS = 60
RF_MAX_SAMPLES = 0.5


def fit_random_forest(X_train, Y_train, X_val, Y_val, *, seed: int = 0, n_jobs: int = 2, grid: dict | None = None,
                      n_estimators: int = RF_N_ESTIMATORS, max_samples: float | None = RF_MAX_SAMPLES):
    """One multi-output random forest for all species, tuned on validation macro AUC.

    A multi-output forest shares its splits between species (like the CNN's shared encoder) and
    costs one fit instead of S. Its split criterion sums the Gini impurity over species, so each
    candidate split is scored on all S outputs: the cost grows with S, which is why the number of
    trees is capped and each tree sees a bootstrap of ``max_samples`` of the training rows. Leaves
    are kept large (``min_samples_leaf`` >= 10): with a few percent prevalence, small leaves give
    0/1 probabilities and lose the ranking that AUC measures. The grid is the product of ``grid``'s
    lists (default ``RF_GRID``; max_features 0.3 was tried and dropped: 3 to 10 times slower at
    300 species for no gain within the time budget); the model with the best validation macro AUC is kept as fitted on
    the training split (no refit on train + validation: validation also serves for thresholds).
    """

    grid = RF_GRID if grid is None else grid
    keys = list(grid)
    Y_train = np.asarray(Y_train).astype(np.uint8)
    scores, best, t_all = [], None, time.perf_counter()
    for values in product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        t0 = time.perf_counter()
        rf = RandomForestClassifier(n_estimators=n_estimators, max_samples=max_samples, n_jobs=n_jobs,
                                    random_state=seed, **params)
        rf.fit(X_train, Y_train)
        auc = macro_auc(Y_val, predict_random_forest(rf, X_val))
        scores.append({**params, "val_macro_auc": auc, "fit_s": time.perf_counter() - t0})
        if best is None or auc > best[0]:
            best = (auc, rf, params)
    info = {"grid": scores, "chosen": best[2], "val_macro_auc": best[0], "n_estimators": n_estimators,
            "max_samples": max_samples, "refit": "none: the chosen model is the one fitted on the training split",
            "fit_seconds": time.perf_counter() - t_all}
    return best[1], info


def predict_random_forest(model, X) -> np.ndarray:
    """P(present) float32 [N, S]; species never present in training get 0 (their training prevalence)."""
    probs = model.predict_proba(X)
    if not isinstance(probs, list):  # a single species
        probs, classes = [probs], [model.classes_]
    else:
        classes = model.classes_
    out = np.zeros((len(X), len(probs)), np.float32)
    for j, (p, c) in enumerate(zip(probs, classes)):
        k = _present_index(c)
        if k is not None:
            out[:, j] = p[:, k]
    return out


# ---------------------------------------------------------------------------------------------------
# MaxEnt (elapid)
# ---------------------------------------------------------------------------------------------------

MAXENT_GRID = {"feature_types": ["lq", "lqh"], "beta_multiplier": [0.5, 1.0, 2.0, 4.0]}
MAXENT_MIN_PRESENCES = 3
MAXENT_MAX_CORR = 0.95
MAXENT_CLIP_SD = 5.0
_FT = {"l": "linear", "q": "quadratic", "h": "hinge", "p": "product"}


def _maxent_priority(names: list[str]) -> list[int]:
    """Order in which the correlation filter considers covariates: summaries before details."""
    def rank(n: str) -> int:
        if n.startswith("clim_") and n.rsplit("_", 1)[1] in ("annual", "seas", "iasd"):
            return 0
        if n.startswith("s2_"):
            return 1
        if n.startswith("ls_"):
            return 2
        return 3  # monthly climatology last: nearly collinear with the annual means
    return sorted(range(len(names)), key=lambda i: (rank(names[i]), i))


class MaxentBaseline:
    """Per-species elapid MaxentModels behind a shared covariate preparation.

    ``prepare`` standardises with the training mean and sd, clips to +-``MAXENT_CLIP_SD`` (so that
    elapid's evenly spaced hinge knots are not spent on a few outliers) and keeps the covariate
    subset chosen by the correlation filter.
    """

    def __init__(self, mean, sd, keep, models, constant, settings):
        self.mean, self.sd, self.keep = mean, sd, keep
        self.models = models        # list: MaxentModel or None per species
        self.constant = constant    # float32 [S]: prediction of species without a model
        self.settings = settings

    def prepare(self, X) -> np.ndarray:
        Z = (np.asarray(X, np.float64)[:, self.keep] - self.mean) / self.sd
        return np.clip(Z, -MAXENT_CLIP_SD, MAXENT_CLIP_SD)


def _select_uncorrelated(X: np.ndarray, names: list[str], max_corr: float) -> np.ndarray:
    """Greedy filter: keep a covariate unless |r| >= max_corr with one already kept (training data)."""
    sd = X.std(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.abs(np.corrcoef(X, rowvar=False))
    keep: list[int] = []
    for i in _maxent_priority(names):
        if sd[i] <= 0:
            continue  # constant: no information
        if not keep or np.nanmax(R[i, keep]) < max_corr:
            keep.append(i)
    return np.array(sorted(keep), np.int64)


def _fit_one_maxent(Z: np.ndarray, present: np.ndarray, bg: np.ndarray, feature_types: str, beta: float,
                    n_hinge: int, tol: float):
    """One species: presences = its training presences, background = the (target-group) sample.

    elapid without glmnet (not installed: it needs a Fortran build) fits an L1 logistic regression
    with liblinear at C = 2 / (1 - exp(-beta)), on raw (unnormalised) sample weights. With thousands
    of background points weighted 100 each that is practically unregularised and beta has almost no
    effect. The sample weights below restore maxnet's scaling: its objective is the weighted loss
    per presence plus beta x the per-feature penalties of ``compute_regularization``; liblinear
    takes one penalty, so the mean of those penalties is used.
    """
    types = [_FT[c] for c in feature_types]
    xp = Z[present]
    x = np.concatenate([xp, Z[bg]])
    y = np.r_[np.ones(len(xp), np.uint8), np.zeros(len(bg), np.uint8)]
    tf = MaxentFeatureTransformer(feature_types=types, n_hinge_features=n_hinge).fit(x)
    reg = compute_regularization(np.ones(len(xp)), tf.transform(xp), tf.feature_names_, beta_multiplier=beta)
    weight = 1.0 / (estimate_C_from_betas(beta) * len(xp) * max(float(reg.mean()), 1e-12))
    model = MaxentModel(feature_types=types, beta_multiplier=beta, n_hinge_features=n_hinge, transform="cloglog",
                        convergence_tolerance=tol, n_cpus=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear convergence chatter
        model.fit(x, y, sample_weight=np.full(len(y), weight))
    return model


def _fit_species_set(Z, Y, species, bg, feature_types, beta, n_hinge, tol, n_jobs):
    return Parallel(n_jobs=n_jobs)(
        delayed(_fit_one_maxent)(Z, Y[:, j], bg, feature_types, beta, n_hinge, tol) for j in species)


def _predict_species(models, Z) -> np.ndarray:
    out = np.empty((len(Z), len(models)), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exp overflow far outside the training range (clamped to 1)
        for k, m in enumerate(models):
            out[:, k] = np.nan_to_num(m.predict(Z), nan=1.0)
    return out


def fit_maxent(X_train, Y_train, X_val, Y_val, *, is_po=None, n_jobs: int = 2, grid: dict | None = None,
               seed: int = 0, names: list[str] | None = None, max_background: int | None = 5000,
               n_tune_species: int | None = 60, n_hinge: int = 10, tol: float = 1e-3):
    """elapid MaxEnt per species, target-group background, one setting tuned on validation macro AUC.

    - Presences: training samples where the species is present; background: the training samples
      (PA surveys and PO cells alike: they share the sampling effort, the target-group background),
      a random ``max_background`` of them (``seed``) to bound time, as MaxEnt's 10,000-point
      background does. ``is_po`` only enters ``info`` (counts): MaxEnt ignores known absences.
    - Covariates: standardised, clipped, and filtered for |r| >= ``MAXENT_MAX_CORR`` on training data
      (MaxEnt's hinge and quadratic expansions of 125 near-collinear covariates cost time and add
      nothing; the monthly climate means are > 0.95 correlated with the annual ones).
    - Tuning: ``grid`` (default ``MAXENT_GRID``: feature types 'lq' / 'lqh' x beta_multiplier) is
      scored on ``n_tune_species`` species (a fixed spread over training prevalence among those with
      presences and absences in validation), one setting for all species: per-species tuning would
      overfit the few validation presences of rare species and cost S times more. All species are
      then fitted with the chosen setting (tuning-subset models are reused).
    - Species with fewer than ``MAXENT_MIN_PRESENCES`` training presences predict their training
      prevalence everywhere.
    """
    t_all = time.perf_counter()
    X_train = np.asarray(X_train, np.float64)
    Y_train, Y_val = np.asarray(Y_train).astype(bool), np.asarray(Y_val).astype(bool)
    n, s = Y_train.shape
    names = list(FEATURE_NAMES) if names is None and X_train.shape[1] == len(FEATURE_NAMES) else \
        (names or [f"x{i}" for i in range(X_train.shape[1])])
    keep = _select_uncorrelated(X_train, names, MAXENT_MAX_CORR)
    mean, sd = X_train[:, keep].mean(0), X_train[:, keep].std(0)
    base = MaxentBaseline(mean, sd, keep, [None] * s, Y_train.mean(0).astype(np.float32), {})
    Z, Zv = base.prepare(X_train), base.prepare(X_val)

    rng = np.random.default_rng(seed)
    bg = np.arange(n) if max_background is None or n <= max_background else \
        np.sort(rng.choice(n, max_background, replace=False))
    n_pres = Y_train.sum(0)
    fit_ok = np.flatnonzero(n_pres >= MAXENT_MIN_PRESENCES)
    val_pos = Y_val.sum(0)
    tunable = fit_ok[(val_pos[fit_ok] > 0) & (val_pos[fit_ok] < len(Y_val))]
    if n_tune_species is not None and len(tunable) > n_tune_species:
        by_prev = tunable[np.argsort(-n_pres[tunable], kind="stable")]
        tune = np.sort(by_prev[np.linspace(0, len(by_prev) - 1, n_tune_species).round().astype(int)])
    else:
        tune = tunable

    grid = MAXENT_GRID if grid is None else grid
    keys = list(grid)
    scores, best = [], None
    for values in product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        t0 = time.perf_counter()
        models = _fit_species_set(Z, Y_train, tune, bg, params["feature_types"], params["beta_multiplier"],
                                  n_hinge, tol, n_jobs)
        auc = macro_auc(Y_val[:, tune], _predict_species(models, Zv)) if len(tune) else float("nan")
        scores.append({**params, "val_macro_auc_tune_species": auc, "fit_s": time.perf_counter() - t0})
        if best is None or auc > best[0]:
            best = (auc, params, dict(zip(tune.tolist(), models)))
    _, chosen, reuse = best

    t0 = time.perf_counter()
    rest = np.array([j for j in fit_ok if j not in reuse], np.int64)
    fitted = _fit_species_set(Z, Y_train, rest, bg, chosen["feature_types"], chosen["beta_multiplier"],
                              n_hinge, tol, n_jobs)
    reuse.update(zip(rest.tolist(), fitted))
    for j, m in reuse.items():
        base.models[j] = m
    base.settings = {**chosen, "n_hinge": n_hinge, "tol": tol}
    info = {
        "grid": scores, "chosen": chosen, "n_tune_species": int(len(tune)),
        "n_covariates": int(len(keep)), "covariates": [names[i] for i in keep],
        "n_background": int(len(bg)), "n_species_fitted": int(len(fit_ok)),
        "n_species_constant": int(s - len(fit_ok)),
        "n_po_train": None if is_po is None else int(np.asarray(is_po).sum()),
        "final_fit_s": time.perf_counter() - t0, "fit_seconds": time.perf_counter() - t_all,
    }
    return base, info


def predict_maxent(model: MaxentBaseline, X) -> np.ndarray:
    """cloglog output float32 [N, S]; constant training prevalence for species without a model."""
    Z = model.prepare(X)
    out = np.repeat(model.constant[None, :], len(Z), 0).astype(np.float32)
    idx = [j for j, m in enumerate(model.models) if m is not None]
    if idx:
        out[:, idx] = _predict_species([model.models[j] for j in idx], Z)
    return np.clip(out, 0.0, 1.0)
