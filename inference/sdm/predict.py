"""SDM inference: per point (patches) and per meta-tile (shared feature maps).

A meta-tile has 250,000 cells whose 128 x 128 Sentinel-2 patches overlap almost entirely. The S2
encoder is convolutional up to its global pooling, so GeoFlora runs its convolutions once over the
meta-tile image and averages each cell's window of the final feature map (box sums over an
integral image). The two max-pools make the feature map depend on where a patch starts modulo 4;
cells start every 5 pixels, so all four phases occur. The first stage is shift-equivariant at full
resolution, so it is computed once; each pooling phase (2 x 2, then 2 x 2 again) is run through the
rest, which gives every cell exactly its own patch's pooling grid at about 3x the cost of one pass
(instead of ~40x for 250,000 separate patches). What remains different from cutting patches is the
border: a lone patch is zero-padded at its edges, the meta-tile image has real neighbours there.
``deviation`` measures that on sample cells.

Climate and Landsat cubes are constant over each of their raster's pixels (250 m / 100 m here,
1 km / 30 m for CHELSA / Landsat), so their encoders run once per distinct pixel. The head is
linear in the concatenated features, so each modality contributes its own partial logits, and a
cell's logits are the sum of its three parts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import torch
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from inference.grid import CELL_M, CELLS_PER_METATILE, MetaTile
from inference.sdm.model import MultimodalSDM
from inference.sdm.preprocess import Normalizer

S2_RES = 10


def _fuse(stage: torch.nn.Sequential) -> torch.nn.Sequential:
    """Conv + BatchNorm (eval) folded into one conv: the same function, one pass less over the image."""
    mods = list(stage)
    out = []
    i = 0
    while i < len(mods):
        if isinstance(mods[i], torch.nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(mods[i].eval(), mods[i + 1].eval()))
            i += 2
        else:
            out.append(mods[i])
            i += 1
    return torch.nn.Sequential(*out).eval()


def _box_mean(q: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of q [C, H, W] over k x k windows with top-left (rows[i], cols[j]) -> [C, len(rows), len(cols)].

    Summed-area tables, and only at the wanted rows: O(C H W) whatever ``k`` (an average pool at
    every window position costs k^2 times that; 12x slower at k = 16)."""
    C, H, W = q.shape
    s = torch.cat([q.new_zeros((C, 1, W)), q.cumsum(1)], 1)  # [C, H + 1, W]
    r = s[:, rows + k] - s[:, rows]  # [C, R, W]: sums over k rows
    s = torch.cat([r.new_zeros((C, len(rows), 1)), r.cumsum(2)], 2)  # [C, R, W + 1]
    return (s[:, :, cols + k] - s[:, :, cols]) / (k * k)


class MetaTileSDM:
    """Runs a trained SDM over whole meta-tiles of a region (generated or real rasters)."""

    def __init__(self, model: MultimodalSDM, norm: Normalizer, device: str | torch.device = "cpu",
                 amp: bool | None = None, strip_rows: int = 100, unique_batch: int = 4096) -> None:
        self.model = model.to(device).eval()
        self.norm = norm
        self.device = torch.device(device)
        self.amp = (self.device.type == "cuda") if amp is None else amp
        self.strip_rows = strip_rows
        self.unique_batch = unique_batch
        cfg = model.config
        self.patch = cfg.patch_size
        if self.patch % 4:
            raise ValueError("the meta-tile S2 path needs a patch size divisible by 4")
        if "s2" in model.encoders:
            enc = model.encoders["s2"]
            # channels-last convolutions: oneDNN on CPUs (about 25 % faster here) and tensor cores on GPUs
            cl = torch.channels_last
            self._fused = (_fuse(enc.stage1).to(device, memory_format=cl),
                           _fuse(enc.stage2).to(device, memory_format=cl))
        widths = [e.out_features for e in model.encoders.values()]
        w = model.head.weight.detach()
        self.head_parts = dict(zip(model.encoders, torch.split(w, widths, dim=1)))
        self.bias = model.head.bias.detach()

    def _autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # ---- Sentinel-2: shared feature maps
    def s2_features(self, region, tile: MetaTile, n: int = CELLS_PER_METATILE, n_rows: int | None = None) -> torch.Tensor:
        """Pooled S2 features of every cell [rows, n, C] (row 0 = north), strip by strip, from the
        region's 10 m pixels (:meth:`inference.data.interface.MapRegion.s2_window`).

        ``n_rows`` limits the computation to the first rows (benchmarks)."""
        enc = self.model.encoders["s2"]
        P = self.patch
        step = CELL_M // S2_RES  # 5 S2 pixels per cell
        halo = 8  # > receptive field of the convolutions, and a multiple of 4 to keep pooling phases
        out = []
        # The pixel containing the centre of cell (0, 0) has its top-left corner at (x0 + 20, top - 30);
        # its patch's top-left pixel is P // 2 pixels up and left (as extract_s2 does).
        left = tile.x0 + CELL_M / 2 - S2_RES / 2 - (P // 2) * S2_RES
        top = tile.bounds[3] - CELL_M / 2 + S2_RES / 2 + (P // 2) * S2_RES
        width = step * (n - 1) + P
        last = n if n_rows is None else min(n, n_rows)
        strips = [(a, min(last, a + self.strip_rows)) for a in range(0, last, self.strip_rows)]

        def read(a: int, b: int) -> np.ndarray:
            height = step * (b - 1 - a) + P + 2 * halo
            return region.s2_window(left - halo * S2_RES, top - (step * a - halo) * S2_RES, width + 2 * halo, height)

        # The next strip is read (GDAL releases the GIL) while this one is computed; one read at a
        # time, so a dataset handle is never used by two threads at once.
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(read, *strips[0])
            for i, (a, b) in enumerate(strips):
                img = pending.result()
                if i + 1 < len(strips):
                    pending = reader.submit(read, *strips[i + 1])
                x = self.norm.apply("s2", img[None]).to(self.device)
                out.append(self._strip_features(enc, x, b - a, n, step, halo))
        return torch.cat(out, dim=0)

    @torch.no_grad()
    def _strip_features(self, enc, x, n_rows, n_cols, step, halo) -> torch.Tensor:
        P = self.patch
        k = P // 4
        stage1, stage2 = self._fused
        feats = torch.empty((enc.out_features, n_rows, n_cols), device=self.device)
        rows = torch.arange(n_rows, device=self.device) * step + halo  # patch top-left, full res
        cols = torch.arange(n_cols, device=self.device) * step + halo
        with self._autocast():
            # A 2 x 2 max-pool of every phase at once: stride-1 pooling, then one phase per stride-2 view.
            a = F.max_pool2d(stage1(x.contiguous(memory_format=torch.channels_last)), 2, stride=1)
            for py in (0, 1):
                for px in (0, 1):
                    h = F.max_pool2d(stage2(a[..., py::2, px::2].contiguous(memory_format=torch.channels_last)), 2,
                                     stride=1)
                    for qy in (0, 1):
                        for qx in (0, 1):
                            q = h[0, :, qy::2, qx::2].float()
                            oy, ox = py + 2 * qy, px + 2 * qx  # full-res offset of q's grid
                            rsel = ((rows - oy) % 4) == 0
                            csel = ((cols - ox) % 4) == 0
                            if not (rsel.any() and csel.any()):
                                continue
                            ri = (rows[rsel] - oy) // 4
                            ci = (cols[csel] - ox) // 4
                            box = _box_mean(q, ri, ci, k)
                            feats[:, rsel.nonzero()[:, 0][:, None], csel.nonzero()[:, 0][None, :]] = box
        return feats.permute(1, 2, 0)

    # ---- cubes: once per distinct raster pixel
    @torch.no_grad()
    def _unique_logits(self, name: str, cubes: np.ndarray) -> torch.Tensor:
        enc = self.model.encoders[name]
        parts = []
        for i in range(0, len(cubes), self.unique_batch):
            x = self.norm.apply(name, cubes[i:i + self.unique_batch]).to(self.device)
            with self._autocast():
                f = enc(x).float()
            parts.append(f @ self.head_parts[name].T)
        return torch.cat(parts)

    def _cube_logits(self, name: str, region, extract, xs: np.ndarray, ys: np.ndarray) -> torch.Tensor:
        """Partial logits [cells, S] of one cube modality, computed once per distinct cube
        (:meth:`inference.data.interface.MapRegion.cube_keys`)."""
        key = region.cube_keys(name, xs, ys)
        uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        cubes = extract(xs[first], ys[first])
        logits = self._unique_logits(name, cubes)
        return logits[torch.from_numpy(inverse.ravel()).to(self.device)]

    @torch.no_grad()
    def logits(self, region, tile: MetaTile, n_rows: int | None = None) -> torch.Tensor:
        """Logits of every cell and species [500 * 500, S], cells in row-major order (row 0 north).

        ``n_rows`` limits the computation to the first rows of the meta-tile (benchmarks)."""
        n = CELLS_PER_METATILE
        rows = n if n_rows is None else max(1, min(n, int(n_rows)))
        x, y = region.cell_centres(tile)
        xs, ys = x[:rows].ravel(), y[:rows].ravel()
        total = self.bias.to(self.device).expand(rows * n, -1).clone()
        if "s2" in self.model.encoders:
            f = self.s2_features(region, tile, n_rows=rows).reshape(rows * n, -1)
            total += f @ self.head_parts["s2"].T
        if "climate" in self.model.encoders:
            total += self._cube_logits("climate", region, region.extract_climate, xs, ys)
        if "landsat" in self.model.encoders:
            total += self._cube_logits("landsat", region, region.extract_landsat, xs, ys)
        return total

    def probabilities(self, region, tile: MetaTile, n_rows: int | None = None) -> torch.Tensor:
        """float32 [S, 500, 500] probabilities (species in checkpoint order); ``n_rows``: the first
        rows only ([S, n_rows, 500], benchmarks)."""
        logits = self.logits(region, tile, n_rows)
        n = CELLS_PER_METATILE
        return torch.sigmoid(logits).T.reshape(-1, len(logits) // n, n)


@torch.no_grad()
def per_patch_probabilities(model: MultimodalSDM, norm: Normalizer, region, xs: np.ndarray, ys: np.ndarray,
                            batch: int = 256) -> np.ndarray:
    """The reference: cut each cell's own patches and cubes and run the whole model [N, S]."""
    out = []
    for i in range(0, len(xs), batch):
        x, y = xs[i:i + batch], ys[i:i + batch]
        inputs = {"s2": region.extract_s2(x, y, size=model.config.patch_size),
                  "climate": region.extract_climate(x, y), "landsat": region.extract_landsat(x, y)}
        b = {k: norm.apply(k, v) for k, v in inputs.items() if k in model.encoders}
        out.append(torch.sigmoid(model(b)).numpy())
    return np.concatenate(out)


def deviation(runner: MetaTileSDM, region, tile: MetaTile, n_cells: int = 512, seed: int = 0) -> dict:
    """Meta-tile path vs per-patch path on random cells: absolute probability differences."""
    rng = np.random.default_rng(seed)
    n = CELLS_PER_METATILE
    idx = rng.choice(n * n, n_cells, replace=False)
    x, y = region.cell_centres(tile)
    ref = per_patch_probabilities(runner.model.cpu(), runner.norm, region, x.ravel()[idx], y.ravel()[idx])
    runner.model.to(runner.device)
    fast = torch.sigmoid(runner.logits(region, tile)[torch.from_numpy(idx).to(runner.device)]).float().cpu().numpy()
    diff = np.abs(fast - ref)
    return {"cells": n_cells, "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "p99_abs": float(np.percentile(diff, 99)),
            "rank_corr": float(np.corrcoef(fast.ravel(), ref.ravel())[0, 1])}
