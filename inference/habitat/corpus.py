"""Training and test corpora for Pl@ntBERT on a generated region: plots, and predicted lists.

The paper trains on vegetation plots (species ordered by cover) labelled with their EUNIS
habitat. On a generated region the truth is known, so GeoFlora builds such plots itself:

* **Cells.** Every cell with a habitat (inland waters and built-up cells included, since the
  per-cell map covers them too). Cells are split by 10 km blocks exactly as the deep-SDM splits its
  samples: :func:`inference.sdm.dataset.spatial_blocks` and
  :func:`inference.sdm.dataset.assign_splits` with the same seed over the region's blocks, so the
  TEST blocks here are the SDM's TEST blocks when its samples cover every block
  (:func:`sdm_split_matches` checks it). Training plots come from TRAIN blocks, model selection
  from CAL blocks, evaluation from TEST blocks.
* **Plots** (:func:`sample_plots`). At a random cell, a plot of area ``A`` (log-uniform in
  ``area_m2``, default 50-500 m2) records species ``s`` with probability ``1 - (1 - p_s)^(A/100)``,
  ``p_s`` the true probability (the chance of recording it in a 100 m2 plot, the generator's
  definition); i.e. Bernoulli draws from the truth. The recorded species are ordered by a cover
  proxy, ``p_s`` times lognormal noise (``cover_sigma``), as plots list species by decreasing cover.
  The label is the true level-3 habitat of the cell. Plots that record no species are dropped.
* **Probability lists** (:func:`probability_tokens`). The real use case: a cell's species ordered
  by decreasing *predicted* probability (the deep-SDM's), optionally only those above a threshold
  (the conformal assemblage), then the first ``top_n``. :func:`sdm_lists` builds them at cells
  from an SDM checkpoint; the same with the true probabilities is the "perfect SDM" reference.
* **Real plots** (:mod:`inference.habitat.eva`: an EVA export read into the same :class:`Lists`).
  :func:`plot_splits` gives each plot the split of its 10 km block (the region's, see
  :func:`block_splits`); the trainer then takes SDM lists at TRAIN / CAL plots, labelled with the
  plot's habitat, instead of at random cells labelled by the habitat raster.

Everything is deterministic for a seed and a stream name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch

from inference.grid import CELL_M
from inference.sdm.dataset import concat as sdm_concat
from inference.sdm.dataset import pa_samples, po_samples
from inference.sdm.model import load_sdm
from inference.sdm.predict import per_patch_probabilities
from inference.splits import BLOCK_M, CAL, TEST, TRAIN, assign_splits, spatial_blocks

from .plantbert import N_SPECIAL, PAD, Vocab, truncate

NODATA = 255


@dataclass
class Lists:
    """Labelled species lists at cells: token matrix plus where they come from."""

    x: np.ndarray  # float64 [n], EPSG:3035 cell centres
    y: np.ndarray
    label: np.ndarray  # int64 [n]: index into the region's habitat codes (level 3)
    tokens: np.ndarray  # int32 [n, L]: species tokens, left-aligned, PAD-padded
    source: str = "plots"
    origin: np.ndarray | None = None  # per row: the source of each list (after concat)
    values: np.ndarray | None = None  # float32 [n, L]: each listed species' probability (NaN: none, plots)

    def __post_init__(self) -> None:
        if self.origin is None:
            self.origin = np.full(len(self.x), self.source, dtype=object)

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx) -> Lists:
        return Lists(self.x[idx], self.y[idx], self.label[idx], self.tokens[idx], self.source, self.origin[idx],
                     None if self.values is None else self.values[idx])

    def truncated(self, top_n: int) -> Lists:
        """The first ``top_n`` species of each list (their probabilities with them)."""
        tokens = truncate(self.tokens, top_n)
        values = None if self.values is None else np.ascontiguousarray(self.values[:, :tokens.shape[1]])
        return Lists(self.x, self.y, self.label, tokens, self.source, self.origin, values)

    @property
    def lengths(self) -> np.ndarray:
        return (self.tokens != PAD).sum(1)


def concat(parts: list[Lists], source: str = "mix") -> Lists:
    L = max(p.tokens.shape[1] for p in parts)
    toks = [np.pad(p.tokens, ((0, 0), (0, L - p.tokens.shape[1])), constant_values=PAD) for p in parts]
    values = None
    if any(p.values is not None for p in parts):
        values = np.concatenate([np.pad(p.values, ((0, 0), (0, L - p.values.shape[1])), constant_values=np.nan)
                                 if p.values is not None else np.full(p.tokens.shape[:1] + (L,), np.nan, np.float32)
                                 for p in parts]).astype(np.float32)
    return Lists(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                 np.concatenate([p.label for p in parts]), np.concatenate(toks), source,
                 np.concatenate([p.origin for p in parts]), values)


def _rng(seed: int, split: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(split), zlib.crc32(stream.encode())])


# ---------------------------------------------------------------------------------------------
# cells and splits

def block_splits(region, seed: int = 0) -> dict[int, int]:
    """Split (TRAIN / CAL / TEST) of every 10 km block holding a cell of the region."""
    left, bottom, right, top = region.grid.bounds
    bx = np.unique(np.floor((np.arange(left + CELL_M / 2, right, CELL_M)) / BLOCK_M)).astype(np.int64)
    by = np.unique(np.floor((np.arange(bottom + CELL_M / 2, top, CELL_M)) / BLOCK_M)).astype(np.int64)
    blocks = (bx[:, None] * 1_000_000 + by[None, :]).ravel()
    splits = assign_splits(blocks, seed)
    return dict(zip(blocks.tolist(), splits.tolist()))


def sdm_split_matches(region, seed: int = 0) -> bool:
    """Whether the deep-SDM's split of its samples (PA surveys and presence-only cells) gives every
    block the same split as :func:`block_splits` (true when its samples touch every block)."""
    ids = np.asarray(region.species_ids, np.int64)
    data = sdm_concat([pa_samples(region.pa_csv, ids), po_samples(region.po_csv, ids)])
    block = spatial_blocks(data.x, data.y)
    theirs = assign_splits(block, seed)
    ours = block_splits(region, seed)
    return all(ours.get(int(b)) == int(s) for b, s in zip(block, theirs))


def in_region(region, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each point lies inside the region's grid (where its rasters and the SDM reach)."""
    left, bottom, right, top = region.grid.bounds
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return (x >= left) & (x < right) & (y >= bottom) & (y < top)


def plot_splits(region, x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Split (TRAIN / CAL / TEST, int8) of plots at EPSG:3035 ``(x, y)`` by their 10 km block.

    A block of the region keeps the region's split (:func:`block_splits`, the deep-SDM's when its
    samples touch every block), so plots in TEST blocks are held out from the SDM too; the blocks
    outside the region are split among themselves with the same seed (all TRAIN when fewer than
    three). ``region`` None: every block split among the plots' blocks (``assign_splits``)."""
    block = spatial_blocks(x, y)
    if region is None:
        return assign_splits(block, seed).astype(np.int8)
    ours = block_splits(region, seed)
    out = np.array([ours.get(int(b), -1) for b in block], np.int8)
    outside = out < 0
    if outside.any():
        n = len(np.unique(block[outside]))
        out[outside] = assign_splits(block[outside], seed) if n >= 3 else TRAIN
    return out


class RegionCells:
    """The habitat raster of a region with the split of each cell (read once)."""

    def __init__(self, region, seed: int = 0) -> None:
        self.region = region
        with rasterio.open(region.habitat_path) as ds:
            self.habitat = ds.read(1)
            self.transform = ds.transform
        H, W = self.habitat.shape
        xs = self.transform.c + (np.arange(W) + 0.5) * self.transform.a
        ys = self.transform.f + (np.arange(H) + 0.5) * self.transform.e
        self.xs, self.ys = xs, ys
        splits = block_splits(region, seed)
        bx = np.floor(xs / BLOCK_M).astype(np.int64)
        by = np.floor(ys / BLOCK_M).astype(np.int64)
        key = bx[None, :] * 1_000_000 + by[:, None]
        uniq, inv = np.unique(key, return_inverse=True)
        self.split = np.array([splits[int(b)] for b in uniq], np.int8)[inv.reshape(key.shape)]
        self.codes = list(region.meta["habitat_codes"])

    def eligible(self, split: int) -> np.ndarray:
        """Flat indices of the cells of ``split`` that have a habitat."""
        return np.flatnonzero((self.habitat != NODATA) & (self.split == split))

    def sample(self, n: int, split: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` random cells of ``split`` (without replacement while possible): x, y, habitat index."""
        cand = self.eligible(split)
        if len(cand) == 0:
            raise ValueError(f"no cell with a habitat in the {split} split")
        flat = rng.choice(cand, size=n, replace=n > len(cand))
        r, c = np.divmod(flat, self.habitat.shape[1])
        return self.xs[c], self.ys[r], self.habitat.ravel()[flat].astype(np.int64)


# ---------------------------------------------------------------------------------------------
# plots from the truth

def _true_p(region, x: np.ndarray, y: np.ndarray, chunk: int = 4096):
    for i in range(0, len(x), chunk):
        yield i, region.true_probability_at(x[i:i + chunk], y[i:i + chunk]).astype(np.float32)


def plots_at(region, x: np.ndarray, y: np.ndarray, label: np.ndarray, rng: np.random.Generator,
             area_m2: tuple[float, float] = (50.0, 500.0), cover_sigma: float = 0.5,
             max_len: int = 100) -> Lists:
    """One plot per cell (see the module docstring); empty plots are kept as empty rows."""
    rows = []
    for _i, p in _true_p(region, x, y):
        n, S = p.shape
        area = np.exp(rng.uniform(np.log(area_m2[0]), np.log(area_m2[1]), n)).astype(np.float32)
        q = 1.0 - np.power(1.0 - np.clip(p, 0, 1 - 1e-7), area[:, None] / 100.0)
        present = rng.random((n, S), dtype=np.float32) < q
        cover = p * np.exp(cover_sigma * rng.standard_normal((n, S), dtype=np.float32))
        key = np.where(present, cover, -1.0)
        k = min(max_len, S)
        order = np.argsort(-key, axis=1, kind="stable")[:, :k]
        keep = np.take_along_axis(present, order, 1)
        rows.append(np.where(keep, order + N_SPECIAL, PAD).astype(np.int32))
    tokens = np.concatenate(rows) if rows else np.zeros((0, 0), np.int32)
    L = int((tokens != PAD).sum(1).max(initial=0))
    return Lists(np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(label, np.int64),
                 np.ascontiguousarray(tokens[:, :L]), "plots")


def sample_plots(region, n: int, split: int = TRAIN, seed: int = 0, cells: RegionCells | None = None,
                 stream: str = "plots", **kw) -> Lists:
    """``n`` non-empty plots at random cells of ``split`` blocks."""
    cells = cells or RegionCells(region, seed)
    rng = _rng(seed, split, stream)
    parts, got = [], 0
    while got < n:
        want = int((n - got) * 1.1) + 16
        x, y, lab = cells.sample(want, split, rng)
        pl = plots_at(region, x, y, lab, rng, **kw)
        pl = pl.subset(pl.lengths > 0)
        parts.append(pl)
        got += len(pl)
    return concat(parts, "plots").subset(slice(0, n))


def sample_cells(region, n: int, split: int = TEST, seed: int = 0, cells: RegionCells | None = None,
                 stream: str = "cells") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cells = cells or RegionCells(region, seed)
    return cells.sample(n, split, _rng(seed, split, stream))


# ---------------------------------------------------------------------------------------------
# lists from probabilities

LIST_LENGTHS = ("top_n", "expected")


def probability_tokens(p, top_n: int, threshold: float | None = None,
                       species_tokens: np.ndarray | None = None, length: str = "top_n",
                       return_values: bool = False):
    """Token matrix int32 [n, top_n] of the species of each row of ``p`` [n, S] (numpy or torch)
    in decreasing probability: those at or above ``threshold`` (all if None), the first ``top_n``.
    ``species_tokens`` [S] maps column s to its token (default ``s + N_SPECIAL``); columns mapped
    to PAD are ignored. ``length="expected"`` cuts each row to the first round(sum of p)
    species (at least 1, at most ``top_n``): as many as a 100 m2 plot there is expected to list.
    ``return_values``: also the listed species' probabilities, float32 [n, top_n] (NaN at PAD)."""
    if length not in LIST_LENGTHS:
        raise ValueError(f"unknown list length rule {length!r}: use one of {', '.join(LIST_LENGTHS)}")
    t = torch.as_tensor(p)
    if t.ndim != 2:
        raise ValueError(f"expected probabilities [n, S], got shape {tuple(t.shape)}")
    t = t.float()
    if species_tokens is not None:
        st = torch.as_tensor(np.asarray(species_tokens, np.int64), device=t.device)
        if st.shape != (t.shape[1],):
            raise ValueError(f"species_tokens must have one token per column ({t.shape[1]}), got {tuple(st.shape)}")
        if (st == PAD).any():
            t = t.masked_fill((st == PAD)[None, :], float("-inf"))
    k = min(int(top_n), t.shape[1])
    val, idx = torch.topk(t, k, dim=1, sorted=True)
    tok = (idx + N_SPECIAL) if species_tokens is None else st[idx]
    drop = torch.isneginf(val) | torch.isnan(val)
    if threshold is not None:
        drop |= val < threshold
    if length == "expected":
        expected = torch.nan_to_num(t.clamp_min(0), posinf=0.0).sum(1).round().clamp(1, k)
        drop |= torch.arange(k, device=t.device)[None, :] >= expected[:, None]
    tok = tok.masked_fill(drop, PAD).cpu().numpy().astype(np.int32)
    if return_values:
        return tok, val.masked_fill(drop, float("nan")).cpu().numpy().astype(np.float32)
    return tok


def load_sdm_runner(sdm_checkpoint: Path):
    model, norm, ck = load_sdm(Path(sdm_checkpoint))
    return model, norm, ck


def sdm_probabilities(region, sdm, x: np.ndarray, y: np.ndarray, log=None) -> tuple[np.ndarray, list[int]]:
    """The deep-SDM's per-cell probabilities [n, S_sdm] (per-patch path) and its species ids."""
    model, norm, ck = sdm
    out = []
    step = 2048
    for i in range(0, len(x), step):
        out.append(per_patch_probabilities(model, norm, region, x[i:i + step], y[i:i + step]))
        if log:
            log(f"  SDM probabilities {min(len(x), i + step)}/{len(x)} cells")
    return (np.concatenate(out) if out else np.zeros((0, len(ck["species_ids"])), np.float32)), ck["species_ids"]


def sdm_lists(region, sdm, vocab: Vocab, x, y, label, top_n: int, threshold: float | None = None,
              log=None, length: str = "top_n") -> Lists:
    """The deep-SDM's top-``top_n`` species lists at cells (the real use case), with their
    probabilities (``Lists.values``); ``length``: see :func:`probability_tokens`."""
    p, ids = sdm_probabilities(region, sdm, x, y, log)
    tok, val = probability_tokens(p, top_n, threshold, vocab.tokens_for_ids(ids), length, return_values=True)
    return Lists(np.asarray(x), np.asarray(y), np.asarray(label, np.int64), tok, "sdm", values=val)


def true_lists(region, x, y, label, top_n: int, threshold: float | None = None, length: str = "top_n") -> Lists:
    """Top-``top_n`` lists by *true* probability (a perfect SDM), with their probabilities."""
    parts = [probability_tokens(p, top_n, threshold, length=length, return_values=True) for _, p in _true_p(region, x, y)]
    tok = np.concatenate([t for t, _ in parts]) if parts else np.zeros((0, top_n), np.int32)
    val = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, top_n), np.float32)
    return Lists(np.asarray(x), np.asarray(y), np.asarray(label, np.int64), tok, "true-p", values=val)


__all__ = ["Lists", "RegionCells", "block_splits", "in_region", "plot_splits", "sdm_split_matches", "sample_plots",
           "sample_cells", "plots_at", "probability_tokens", "sdm_lists", "true_lists", "load_sdm_runner", "TRAIN",
           "CAL", "TEST"]
