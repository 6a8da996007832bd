"""Trait maps: community-weighted means at 50 m, and photo predictions aggregated on a grid.

Community-weighted mean (:func:`cwm`, :class:`CWMAccumulator`). For a cell with species
probabilities p_s and species log-trait means mu_s (the log medians of TRY-like summaries):

* the **assemblage** is the set of species with ``p_s >= threshold`` (all species when threshold
  is None, e.g. for the truth); every species in it weighs its probability, w_s = p_s;
* **mean** = sum w_s mu_s / sum w_s (log scale);
* **sd** = sqrt(sum w_s (mu_s - mean)^2 / sum w_s): the weighted sd of the species means inside
  the community (its functional dispersion), the uncertainty of a trait drawn from the community.
  With ``log_trait_sds`` the intraspecific variance is added: sqrt(sum w_s (sd_s^2 + (mu_s -
  mean)^2) / sum w_s), the sd of the community's mixture distribution;
* a cell whose assemblage is empty (sum w_s = 0) is NaN in both.

Gaps: real trait tables lack some species' values (NaN in ``log_trait_means``; infinite values
are an error). Each trait is masked on its own: for trait t the sums run over the assemblage
species that have a value for t (the weights renormalised over them), and the **coverage** of t,
sum over those species of w_s / sum over the whole assemblage of w_s, says what share of the
assemblage's probability weight the mean rests on (``cwm(..., return_coverage=True)``,
``CWMAccumulator.result(return_coverage=True)``; NaN where the assemblage is empty). Where no
species of the assemblage has a value for t the mean and sd of t are NaN (the cascade writes
nodata). A NaN in ``log_trait_sds`` where the mean is known adds no intraspecific variance for
that species. Traits without gaps cost nothing extra.

The sums are taken chunk by chunk over species with one matrix product per chunk ([s, 1+G+2T]^T x
[s, cells], G the traits with gaps) into float64 accumulators, centred on the mean of the species means so that the
variance does not cancel; nothing larger than one chunk of probabilities is ever materialised, so a
meta-tile (250,000 cells) with 10,000 species streams through :class:`CWMAccumulator` from
``GeneratedRegion.iter_true_probability`` or an SDM.

Grid aggregation of photo predictions (:func:`grid_aggregate`): photos are binned into square
cells of ``res`` metres aligned on the region's lower-left corner (EPSG:3035); a cell with at
least ``min_count`` (20, as in PlantTraitNet) predictions gets the mean of the predicted log
traits, its standard error (sd of the predictions / sqrt(n)) and the mean predicted variance (the
model's own per-photo uncertainty); other cells are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from affine import Affine

from inference.traits.model import TRAITS


class CWMAccumulator:
    """Streams species chunks of probabilities into community-weighted means and sds.

    ``add(species, prob)`` with ``species`` a slice / index array into the rows of
    ``log_trait_means`` and ``prob`` [s, *shape]; ``result()`` -> (mean [T, *shape], sd [T, *shape])
    as float32 numpy (NaN where the assemblage, or its part with a value for the trait, is empty);
    ``result(return_coverage=True)`` adds the coverage [T, *shape] (see the module docstring).
    """

    TILE_SPECIES = 64
    TILE_CELLS = 16_384

    def __init__(self, log_trait_means, shape: tuple[int, ...], threshold: float | None = None,
                 log_trait_sds=None, device: str | torch.device = "cpu") -> None:
        mu = torch.as_tensor(np.asarray(log_trait_means, np.float64) if not torch.is_tensor(log_trait_means)
                             else log_trait_means.double(), device=device)
        if mu.ndim != 2:
            raise ValueError(f"log_trait_means must be [species, traits], got shape {tuple(mu.shape)}")
        if torch.isinf(mu).any():
            raise ValueError("log_trait_means has infinite values (a median of 0?); NaN marks a missing value")
        has = ~torch.isnan(mu)                                   # [S, T] species with a value
        n_has = has.sum(0)
        self.centre = torch.where(n_has > 0, torch.where(has, mu, 0.0).sum(0) / n_has.clamp_min(1), 0.0)
        d = torch.where(has, mu - self.centre, 0.0)
        second = d ** 2
        if log_trait_sds is not None:
            sd = torch.as_tensor(np.asarray(log_trait_sds, np.float64), device=device)
            if sd.shape != mu.shape:
                raise ValueError(f"log_trait_sds shape {tuple(sd.shape)} != log_trait_means shape {tuple(mu.shape)}")
            if torch.isinf(sd).any():
                raise ValueError("log_trait_sds has infinite values")
            second = second + torch.where(has & ~torch.isnan(sd), sd, 0.0) ** 2
        ones = torch.ones(mu.shape[0], 1, dtype=mu.dtype, device=device)
        # traits with gaps get a column of their own: the weight of the species that have a value
        self.gappy = torch.nonzero(~has.all(0)).flatten().cpu()
        self.design = torch.cat([ones, has[:, self.gappy].to(mu.dtype), d, second], 1).float()  # [S, 1 + G + 2T]
        self.n_species, self.n_traits = mu.shape
        self.shape = tuple(shape)
        self.threshold = threshold
        if threshold is not None:
            self._t_below = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
        self.device = torch.device(device)
        n = int(np.prod(self.shape))
        self.sums = torch.zeros(self.design.shape[1], n, dtype=torch.float64, device=device)
        self.seen = 0

    def add(self, species, prob) -> None:
        p = torch.as_tensor(prob, device=self.device) if not torch.is_tensor(prob) else prob.to(self.device)
        rows = self.design[species]
        if rows.ndim == 1:
            rows = rows[None]
        p = p.reshape(rows.shape[0], -1)
        if p.shape[1] != self.sums.shape[1]:
            raise ValueError(f"probabilities cover {p.shape[1]} cells, expected {self.sums.shape[1]} {self.shape}")
        p = p.float()
        # Tiles of 64 species x 16,384 cells keep the thresholded copy in cache (4x faster than one
        # pass over the chunk). The threshold is one fused op: p where p > t', i.e. p >= threshold
        # (t' = the float32 just below it), else 0.
        n_cells = p.shape[1]
        for s0 in range(0, rows.shape[0], self.TILE_SPECIES):
            r = rows[s0:s0 + self.TILE_SPECIES].T
            for c0 in range(0, n_cells, self.TILE_CELLS):
                pc = p[s0:s0 + self.TILE_SPECIES, c0:c0 + self.TILE_CELLS]
                if self.threshold is not None:
                    pc = torch.nn.functional.threshold(pc, self._t_below, 0.0)
                self.sums[:, c0:c0 + self.TILE_CELLS] += (r @ pc).double()
        self.seen += rows.shape[0]

    def result(self, return_coverage: bool = False):
        """(mean, sd) [T, *shape] float32 numpy, or (mean, sd, coverage) with ``return_coverage``."""
        T, G = self.n_traits, len(self.gappy)
        w = self.sums[0]
        wt = w[None].repeat(T, 1)                                # per trait: weight of species with a value
        if G:
            wt[self.gappy.to(w.device)] = self.sums[1:1 + G]
        empty = wt <= 0
        wsafe = torch.where(empty, torch.ones_like(wt), wt)
        m1 = self.sums[1 + G:1 + G + T] / wsafe
        m2 = self.sums[1 + G + T:] / wsafe
        var = (m2 - m1 ** 2).clamp_min(0.0)
        mean = m1 + self.centre[:, None]
        nan = torch.tensor(float("nan"), dtype=mean.dtype, device=mean.device)
        mean = torch.where(empty, nan, mean)
        sd = torch.where(empty, nan, var.sqrt())
        out = (mean.float().cpu().numpy().reshape(T, *self.shape),
               sd.float().cpu().numpy().reshape(T, *self.shape))
        if not return_coverage:
            return out
        coverage = torch.where(w[None] > 0, (wt / torch.where(w > 0, w, 1.0)[None]).clamp(0.0, 1.0), nan)
        return (*out, coverage.float().cpu().numpy().reshape(T, *self.shape))


def species_log_medians(region, species_ids=None) -> np.ndarray:
    """[S, 4] log medians of the region's species table (TRY-like summaries), in ``species_ids`` order.

    NaN where a species has no median for a trait (a real trait table has gaps; :func:`cwm` masks
    them trait by trait). An id the table lacks is a KeyError naming the ids; a median <= 0 a
    ValueError.
    """
    table = {sp.id: sp for sp in region.species}
    ids = [sp.id for sp in region.species] if species_ids is None else [int(s) for s in species_ids]
    missing = [s for s in ids if s not in table]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise KeyError(f"species ids not in the region's species table: {shown}")
    nan = float("nan")
    med = np.array([[getattr(table[s].traits.get(t), "median", nan) for t in TRAITS] for s in ids], np.float64)
    bad = med <= 0
    if bad.any():
        s, t = np.argwhere(bad)[0]
        raise ValueError(f"species {ids[s]}: {TRAITS[t]} median {med[s, t]} is not > 0")
    return np.log(med.reshape(len(ids), len(TRAITS)))


def cwm(prob, log_trait_means, threshold: float | None = None, log_trait_sds=None, chunk: int = 256,
        return_coverage: bool = False):
    """Community-weighted mean and sd of log traits (see the module docstring).

    ``prob``: species probabilities [S, H, W] (or [S, N]), numpy or torch; ``log_trait_means``:
    [S, T], NaN for a missing value. Returns ``(mean [T, H, W], sd [T, H, W])``, NaN where the
    assemblage (its species with a value for the trait) is empty, and with ``return_coverage`` a
    third array [T, H, W]: the share of the assemblage's probability weight carried by species
    with a value for the trait. Torch tensors when ``prob`` is a tensor, numpy arrays otherwise.
    Works in chunks of ``chunk`` species (one matrix product each), on ``prob``'s device.
    """
    is_torch = torch.is_tensor(prob)
    S = prob.shape[0]
    mu_shape = tuple(np.shape(log_trait_means))
    if len(mu_shape) != 2 or mu_shape[0] != S:
        raise ValueError(f"log_trait_means must be [{S}, traits] for {S} species, got shape {mu_shape}")
    device = prob.device if is_torch else "cpu"
    acc = CWMAccumulator(log_trait_means, tuple(prob.shape[1:]), threshold, log_trait_sds, device=device)
    for s0 in range(0, S, chunk):
        sl = slice(s0, min(S, s0 + chunk))
        acc.add(sl, prob[sl])
    out = acc.result(return_coverage)
    if is_torch:
        return tuple(torch.from_numpy(a) for a in out)
    return out


@dataclass
class TraitGrid:
    """Photo predictions aggregated on a square grid (log traits; row 0 = north)."""

    mean: np.ndarray       # float32 [T, H, W], NaN where count < min_count
    se: np.ndarray         # standard error of the mean
    pred_var: np.ndarray   # mean predicted (model) variance of the photos
    count: np.ndarray      # int [H, W], photos in the cell (all of them, also below min_count)
    transform: Affine
    res: float
    min_count: int
    traits: tuple[str, ...]

    @property
    def valid(self) -> np.ndarray:
        return self.count >= self.min_count


def grid_aggregate(x, y, mean, var, bounds, res: float, min_count: int = 20,
                   traits: tuple[str, ...] = ("Height", "LeafArea", "SLA", "Leaf_N")) -> TraitGrid:
    """Aggregate per-photo predictions ``mean`` / ``var`` [N, T] (log traits) at EPSG:3035 points
    ``x, y`` on a grid of ``res`` metres covering ``bounds`` (left, bottom, right, top).

    Photos outside the bounds are ignored. Cells with fewer than ``min_count`` photos are NaN.
    """
    if min_count < 1:
        raise ValueError("min_count must be at least 1")
    if res <= 0:
        raise ValueError("res must be positive")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    if mean.ndim != 2 or mean.shape != var.shape or len(mean) != len(x) or len(x) != len(y):
        raise ValueError(f"expected x, y [N] and mean, var [N, T] of the same N; got {x.shape}, {y.shape}, "
                         f"{mean.shape}, {var.shape}")
    left, bottom, right, top = bounds
    W = int(np.ceil((right - left) / res - 1e-9))
    H = int(np.ceil((top - bottom) / res - 1e-9))
    col = np.floor((x - left) / res).astype(np.int64)
    row = np.floor((top - y) / res).astype(np.int64)
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H) & np.all(np.isfinite(mean), 1)
    cell = row[inside] * W + col[inside]
    T = mean.shape[1]
    n = np.bincount(cell, minlength=H * W).astype(np.float64)
    s1 = np.stack([np.bincount(cell, mean[inside, t], H * W) for t in range(T)])
    s2 = np.stack([np.bincount(cell, mean[inside, t] ** 2, H * W) for t in range(T)])
    sv = np.stack([np.bincount(cell, var[inside, t], H * W) for t in range(T)])
    ok = n >= min_count
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s1 / n
        sample_var = np.clip((s2 - n * m ** 2) / np.maximum(n - 1, 1), 0, None)
        se = np.sqrt(sample_var / n)
        pv = sv / n
    nan = np.float32(np.nan)
    shape = (T, H, W)
    return TraitGrid(mean=np.where(ok, m, nan).astype(np.float32).reshape(shape),
                     se=np.where(ok, se, nan).astype(np.float32).reshape(shape),
                     pred_var=np.where(ok, pv, nan).astype(np.float32).reshape(shape),
                     count=n.astype(np.int64).reshape(H, W), transform=Affine(res, 0, left, 0, -res, top),
                     res=float(res), min_count=int(min_count), traits=tuple(traits))


def block_mean(arr: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware mean of [..., H, W] over ``factor`` x ``factor`` blocks from the top-left corner ->
    (mean [..., ceil(H/f), ceil(W/f)], number of valid cells per block, from the first leading slice).
    Blocks cut by the right or bottom edge average the cells they have (the count says how many),
    as :func:`grid_aggregate` cells do."""
    arr = np.asarray(arr, np.float32)
    *lead, H, W = arr.shape
    Hp, Wp = -(-H // factor) * factor, -(-W // factor) * factor
    if (Hp, Wp) != (H, W):
        pad = np.full((*lead, Hp, Wp), np.nan, np.float32)
        pad[..., :H, :W] = arr
        arr, H, W = pad, Hp, Wp
    a = arr.reshape(*lead, H // factor, factor, W // factor, factor)
    valid = np.isfinite(a)
    s = np.where(valid, a, 0).sum(axis=(-3, -1))
    n = valid.sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    count = n.reshape(-1, H // factor, W // factor)[0] if lead else n
    return m.astype(np.float32), count


def photo_map(model, photos, bounds, res: float, min_count: int = 20, cache_dir=None, screen: bool = True) -> TraitGrid:
    """Predict every photo with a trained :class:`inference.traits.predictor.TraitModel` and aggregate
    the predictions on the grid (photos failing the model's cleaning screen are left out)."""
    mean, var = model.predict_photos(photos, cache_dir, screen=screen)
    return grid_aggregate(photos.x, photos.y, mean, var, bounds, res, min_count, tuple(model.traits))
