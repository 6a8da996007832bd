"""Per-cell BotaCLIP embeddings of whole meta-tiles, and their PCA false-colour rendering.

Shared-feature path (the demo ``CellCNN``, ``step=1``): the encoder's stem is a 5 x 5 stride-5
convolution, one token per 50 m cell, followed by unpadded 3 x 3 convolutions and a mean over a
``window`` x ``window`` block. Every cell's S2 patch starts on the same 5-pixel lattice (cells are 5 S2
pixels apart), so the convolutions run once over the meta-tile image (in strips of rows) and each
cell's frozen features are the box mean of the shared feature map at its position -- the same
numbers as cutting its own patch (only summation order differs). The adapter (a small MLP) then
runs on the 250,000 feature vectors.

Strided path (any encoder, e.g. a ViT from ``eo_encoder_path``, or ``step > 1``): the model runs on
the patches of every ``step``-th cell (plus the last row / column) and the embeddings are linearly
interpolated in between, then renormalised to unit length.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from inference.grid import CELL_M, CELLS_PER_METATILE, MetaTile

from .model import CELL_PX, BandError, BotaCLIP, encode, model_device

S2_RES = 10


def _rows(rows: slice | None, n: int) -> tuple[int, int]:
    if rows is None:
        return 0, n
    a, b, s = rows.indices(n)
    if s != 1 or b <= a:
        raise ValueError("rows must be a non-empty slice with step 1")
    return a, b


@torch.no_grad()
def _adapt_chunks(model: BotaCLIP, h: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    return torch.cat([model.embed_features(h[i:i + chunk]) for i in range(0, len(h), chunk)])


@torch.no_grad()
def _shared(region, tile: MetaTile, model: BotaCLIP, r0: int, r1: int, strip_rows: int) -> np.ndarray:
    enc = model.encoder
    dev = model_device(model)
    P, k, n = enc.patch_size, enc.config.window, CELLS_PER_METATILE
    step = CELL_M // S2_RES
    if step != CELL_PX:
        raise ValueError("the shared path needs 50 m cells of 5 S2 pixels")
    out = np.empty((model.dim, r1 - r0, n), np.float32)
    if enc.in_bands != 4:
        raise BandError(f"the encoder takes {enc.in_bands} bands; a region gives 4 (R, G, B, NIR)")
    # the top-left corner of the patch of cell (0, 0): its centre's pixel, P // 2 pixels up and left
    left = tile.x0 + CELL_M / 2 - S2_RES / 2 - (P // 2) * S2_RES
    top = tile.bounds[3] - CELL_M / 2 + S2_RES / 2 + (P // 2) * S2_RES
    width = step * (n - 1) + P
    for a in range(r0, r1, strip_rows):
        b = min(r1, a + strip_rows)
        height = step * (b - 1 - a) + P
        img = region.s2_window(left, top - step * a * S2_RES, width, height)
        fm = enc.feature_map(model.norm.apply("s2", img[None]).to(dev))  # [1, F, (b-a)+k-1, n+k-1]
        h = F.avg_pool2d(fm, k, stride=1)[0]  # [F, b-a, n]: each cell's own patch mean
        e = _adapt_chunks(model, h.permute(1, 2, 0).reshape(-1, h.shape[0]))
        out[:, a - r0:b - r0] = e.T.reshape(-1, b - a, n).cpu().numpy()
    return out


def _interp_matrix(n_out: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Linear interpolation weights [len(n_out), len(knots)] from values at ``knots`` (sorted)."""
    A = np.zeros((len(n_out), len(knots)), np.float32)
    if len(knots) == 1:
        A[:, 0] = 1
        return A
    j = np.clip(np.searchsorted(knots, n_out, side="right") - 1, 0, len(knots) - 2)
    w = (n_out - knots[j]) / (knots[j + 1] - knots[j])
    A[np.arange(len(n_out)), j] = 1 - w
    A[np.arange(len(n_out)), j + 1] = w
    return A


@torch.no_grad()
def embed_points(region, model: BotaCLIP, x: np.ndarray, y: np.ndarray, batch: int = 512) -> np.ndarray:
    """Unit embeddings [N, D] of the cells at EPSG:3035 points, each from its own S2 patch."""
    out = []
    for i in range(0, len(x), batch):
        s2 = region.extract_s2(x[i:i + batch], y[i:i + batch], size=model.patch_size)
        out.append(model.embed_features(encode(model.encoder, model.norm, s2)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.dim), np.float32)


def _strided(region, tile: MetaTile, model: BotaCLIP, r0: int, r1: int, step: int) -> np.ndarray:
    n = CELLS_PER_METATILE
    kr = np.unique(np.r_[np.arange(r0, r1, step), r1 - 1])
    kc = np.unique(np.r_[np.arange(0, n, step), n - 1])
    x, y = region.cell_centres(tile)
    xs, ys = x[np.ix_(kr, kc)].ravel(), y[np.ix_(kr, kc)].ravel()
    E = embed_points(region, model, xs, ys).reshape(len(kr), len(kc), -1)
    Ar = _interp_matrix(np.arange(r0, r1, dtype=np.float64), kr.astype(np.float64))
    Ac = _interp_matrix(np.arange(n, dtype=np.float64), kc.astype(np.float64))
    out = np.einsum("ri,ijd,cj->drc", Ar, E, Ac, optimize=True).astype(np.float32)
    out /= np.maximum(np.linalg.norm(out, axis=0, keepdims=True), 1e-12)
    return out


def metatile_embeddings(region, tile: MetaTile, model: BotaCLIP, step: int = 1, rows: slice | None = None,
                        strip_rows: int = 125) -> np.ndarray:
    """float32 [D, 500, 500] unit embeddings of every cell of ``tile`` (row 0 = north).

    ``step=1`` with a shared-feature encoder (the demo CellCNN) is exact per cell; otherwise the model
    runs every ``step`` cells and the rest is interpolated. ``rows`` restricts the computation to a
    band of cell rows (then the result is [D, len(rows), 500])."""
    if step < 1:
        raise ValueError("step must be >= 1")
    r0, r1 = _rows(rows, CELLS_PER_METATILE)
    if getattr(model.encoder, "shared", False) and step == 1:
        return _shared(region, tile, model, r0, r1, strip_rows)
    return _strided(region, tile, model, r0, r1, step)


# ---------------------------------------------------------------------------------------------
# PCA false colours

def _colours(components) -> dict:
    if isinstance(components, dict):
        return components
    pc = getattr(components, "pca_colours", None)
    if pc is None:
        raise TypeError("components must be a PCA colour dict (from the checkpoint) or a loaded BotaCLIP")
    return pc


def pca_rgb(emb: np.ndarray, components=None) -> np.ndarray:
    """uint8 [3, H, W] false colours of embeddings [D, H, W]: first three principal components,
    stretched linearly between fixed percentiles (2 / 98 %) to 0..255.

    ``components``: the region-wide PCA stored in the BotaCLIP checkpoint (``model.pca_colours``, or the
    model itself), so that every meta-tile gets the same colours. ``None`` fits the PCA on ``emb`` itself
    (colours then depend on the tile: for a one-off picture only)."""
    emb = np.asarray(emb, np.float32)
    if emb.ndim != 3:
        raise ValueError(f"expected embeddings [D, H, W], got shape {emb.shape}")
    D, H, W = emb.shape
    if components is None:
        flat = emb.reshape(D, -1).T
        if len(flat) > 50_000:
            flat = flat[np.random.default_rng(0).choice(len(flat), 50_000, replace=False)]
        components = fit_pca_colours(flat)
    pc = _colours(components)
    mean = np.asarray(pc["mean"], np.float32)
    comps = np.asarray(pc["components"], np.float32)
    lo, hi = np.asarray(pc["lo"], np.float32), np.asarray(pc["hi"], np.float32)
    if comps.shape != (3, D):
        raise ValueError(f"PCA components are for {comps.shape[1]}-d embeddings, got {D}-d")
    v = np.einsum("kd,dp->kp", comps, emb.reshape(D, -1) - mean[:, None])
    scaled = (v - lo[:, None]) / (hi - lo)[:, None]
    return np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8).reshape(3, H, W)


PCA_PERCENTILES = (2.0, 98.0)


@torch.no_grad()
def fit_pca_colours(emb: np.ndarray, percentiles=PCA_PERCENTILES) -> dict:
    """First three principal components of embeddings [N, D] and fixed stretch limits (percentiles)."""
    emb = np.asarray(emb, np.float64)
    mean = emb.mean(0)
    _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
    comps = vt[:3]
    # a deterministic sign: the largest loading of each component is positive
    sign = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])
    comps = comps * sign[:, None]
    if len(comps) < 3:
        comps = np.vstack([comps, np.zeros((3 - len(comps), emb.shape[1]))])
    v = (emb - mean) @ comps.T
    lo, hi = np.percentile(v, percentiles[0], axis=0), np.percentile(v, percentiles[1], axis=0)
    return {"mean": mean.astype(np.float32).tolist(), "components": comps.astype(np.float32).tolist(),
            "lo": lo.astype(np.float32).tolist(), "hi": np.maximum(hi, lo + 1e-6).astype(np.float32).tolist(),
            "percentiles": list(percentiles), "n": int(len(emb))}
