"""Sum a run's report index over the cells of an area: whole blocks from their aggregates, the blocks
that the boundary cuts cell by cell (layer values from the index, species from the assemblage store).

A cell belongs to the area when its centre lies inside the polygon (GDAL's rasterisation rule).
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rasterio.features import rasterize
from shapely.geometry.base import BaseGeometry

from backend.reports.index import BINS, BLOCK, NB, RunIndex, TileIndex, bin_of, by_block, decode_block_cells
from inference.grid import CELLS_PER_METATILE, MetaTile


@dataclass
class AreaSums:
    """Everything a report needs, summed over the cells of an area."""

    n_cells: int
    n_assemblage: int  # cells with a non-empty assemblage
    sp_cells: np.ndarray  # int64 [S]: cells where each species is in the assemblage
    sp_codes: np.ndarray  # int64 [S]: sum of its probability codes over those cells
    cont_count: np.ndarray  # int64 [C] valid cells per continuous band
    cont_sum: np.ndarray  # float64 [C]
    cont_min: np.ndarray  # float64 [C] (inf when no valid cell)
    cont_max: np.ndarray
    cont_hist: np.ndarray  # int64 [C, BINS]
    cat_counts: np.ndarray  # int64 [K, 256]
    cont_values: list[np.ndarray] | None  # the cell values per band when the area is small (exact quantiles)
    tiles: list[str]

    @classmethod
    def empty(cls, n_species: int, n_cont: int, n_cat: int, keep_values: bool) -> AreaSums:
        return cls(0, 0, np.zeros(n_species, np.int64), np.zeros(n_species, np.int64), np.zeros(n_cont, np.int64),
                   np.zeros(n_cont), np.full(n_cont, np.inf), np.full(n_cont, -np.inf),
                   np.zeros((n_cont, BINS), np.int64), np.zeros((n_cat, 256), np.int64),
                   [np.zeros(0, np.float32)] * n_cont if keep_values else None, [])


def tile_mask(geom: BaseGeometry, tile: MetaTile) -> np.ndarray:
    """Cells of ``tile`` whose centre is inside ``geom`` (EPSG:3035), bool [500, 500]."""
    n = CELLS_PER_METATILE
    return rasterize([(geom, 1)], out_shape=(n, n), transform=tile.transform(), fill=0, dtype="uint8",
                     all_touched=False).astype(bool)


def _add_cells(acc: AreaSums, index: RunIndex, t: TileIndex, cells: np.ndarray) -> None:
    """Add the layer values of the cells ``cells`` (bool [500, 500]) of one tile."""
    rows, cols = np.nonzero(cells)
    if not len(rows):
        return
    if len(index.continuous):
        v = np.asarray(t.cont[:, rows, cols], np.float64)  # [C, n]
        ok = np.isfinite(v)
        acc.cont_count += ok.sum(1)
        acc.cont_sum += np.where(ok, v, 0).sum(1)
        acc.cont_min = np.minimum(acc.cont_min, np.where(ok, v, np.inf).min(1))
        acc.cont_max = np.maximum(acc.cont_max, np.where(ok, v, -np.inf).max(1))
        b = np.where(ok, bin_of(v, index.lo, index.hi), BINS)
        for i in range(len(v)):
            acc.cont_hist[i] += np.bincount(b[i], minlength=BINS + 1)[:BINS]
    if len(index.categorical):
        c = np.asarray(t.cat[:, rows, cols])
        for i in range(len(c)):
            acc.cat_counts[i] += np.bincount(c[i], minlength=256)


def _add_species_cells(acc: AreaSums, t: TileIndex, cells: np.ndarray) -> None:
    """Species of the cells ``cells`` of one tile, read from the store chunk by chunk."""
    store = t.store
    ch = store.chunk
    n_sp = len(acc.sp_cells)
    for cr in range(-(-store.rows // ch)):
        for cc in range(store.per_row):
            sub = cells[cr * ch:(cr + 1) * ch, cc * ch:(cc + 1) * ch]
            if not sub.any():
                continue
            counts, species, codes = store.read(cr, cc)
            acc.n_assemblage += int((counts[sub] > 0).sum())
            take = np.repeat(sub.ravel(), counts.ravel())
            acc.sp_cells += np.bincount(species[take], minlength=n_sp)
            acc.sp_codes += np.bincount(species[take], weights=codes[take], minlength=n_sp).astype(np.int64)


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="report-zlib")


def _add_species_blocks(acc: AreaSums, t: TileIndex, mask: np.ndarray, blocks: np.ndarray) -> None:
    """Species of the cells of ``mask`` in ``blocks`` (flat block indices) of one tile, from the index's
    per-block cell streams."""
    off = t.cells_off
    blobs = [t.cells_bin[off[b]:off[b + 1]] for b in blocks]
    # zlib releases the GIL: two threads decompress twice as fast on two cores
    raws = list(_pool().map(zlib.decompress, blobs)) if len(blobs) > 32 else [zlib.decompress(b) for b in blobs]
    counts, species, codes = decode_block_cells(raws)
    br, bc = np.divmod(blocks, NB)
    inside = by_block(mask)[br, bc].ravel()  # [blocks x 100], cells in the block's row-major order
    acc.n_assemblage += int((counts[inside] > 0).sum())
    take = np.repeat(inside, counts)
    n_sp = len(acc.sp_cells)
    acc.sp_cells += np.bincount(species[take], minlength=n_sp)
    acc.sp_codes += np.bincount(species[take], weights=codes[take], minlength=n_sp).astype(np.int64)


def _add_full_blocks(acc: AreaSums, index: RunIndex, t: TileIndex, full: np.ndarray) -> None:
    """Add the aggregates of the blocks ``full`` (bool [NB, NB]): summed directly when they are few, as
    the tile's totals minus the other blocks when they are most of the tile."""
    n_sp = len(acc.sp_cells)
    most = full.sum() > full.size // 2
    blocks = ~full if most else full
    sel = blocks.ravel()[t.sp_block]
    cells = np.bincount(t.sp_idx[sel], weights=t.sp_cells[sel], minlength=n_sp).astype(np.int64)
    codes = np.bincount(t.sp_idx[sel], weights=t.sp_codes[sel], minlength=n_sp).astype(np.int64)
    nonempty = int(t.nonempty[blocks].sum(dtype=np.int64))
    if most:
        cells, codes, nonempty = t.sp_total - cells, t.sp_total_codes - codes, t.total_nonempty - nonempty
    acc.sp_cells += cells
    acc.sp_codes += codes
    acc.n_assemblage += nonempty
    if len(index.continuous):
        count = t.cont_count[:, blocks].sum(1, dtype=np.int64)
        total = t.cont_sum[:, blocks].sum(1)
        hist = t.cont_hist[:, blocks].sum(1, dtype=np.int64)
        acc.cont_count += t.total_count - count if most else count
        acc.cont_sum += t.total_sum - total if most else total
        acc.cont_hist += t.total_hist - hist if most else hist
        acc.cont_min = np.minimum(acc.cont_min, t.cont_min[:, full].min(1))
        acc.cont_max = np.maximum(acc.cont_max, t.cont_max[:, full].max(1))
    if len(index.categorical):
        cat = t.cat_counts[:, blocks].sum(1, dtype=np.int64)
        acc.cat_counts += t.total_cat - cat if most else cat


def area_sums(index: RunIndex, geom: BaseGeometry, keep_values: bool = False) -> AreaSums:
    """Sum the index over the cells of ``geom`` (EPSG:3035). ``keep_values``: also gather every cell's
    continuous values (for exact quantiles; meant for small areas)."""
    acc = AreaSums.empty(len(index.species_ids), len(index.continuous), len(index.categorical), keep_values)
    minx, miny, maxx, maxy = geom.bounds
    for tile_id in index.tile_ids:
        tile = MetaTile.from_id(tile_id)
        left, bottom, right, top = tile.bounds
        if maxx <= left or minx >= right or maxy <= bottom or miny >= top:
            continue
        mask = tile_mask(geom, tile)
        n = int(mask.sum())
        if not n:
            continue
        t = index.tile(tile_id)
        acc.tiles.append(tile_id)
        acc.n_cells += n
        per_block = mask.reshape(NB, BLOCK, NB, BLOCK).sum((1, 3))
        full = per_block == BLOCK * BLOCK
        partial = (per_block > 0) & ~full
        if full.any():
            _add_full_blocks(acc, index, t, full)
        if partial.any():
            edge = mask & np.repeat(np.repeat(partial, BLOCK, 0), BLOCK, 1)
            _add_cells(acc, index, t, edge)
            _add_species_blocks(acc, t, mask, np.flatnonzero(partial))
        if keep_values and len(index.continuous):
            rows, cols = np.nonzero(mask)
            v = np.asarray(t.cont[:, rows, cols])
            acc.cont_values = [np.concatenate([old, row[np.isfinite(row)]]) for old, row in zip(acc.cont_values, v)]
    return acc


def direct_sums(index: RunIndex, geom: BaseGeometry) -> AreaSums:
    """The same sums cell by cell, without the block aggregates (the bench's anchor, and a check)."""
    acc = AreaSums.empty(len(index.species_ids), len(index.continuous), len(index.categorical), False)
    for tile_id in index.tile_ids:
        mask = tile_mask(geom, MetaTile.from_id(tile_id))
        if not mask.any():
            continue
        t = index.tile(tile_id)
        acc.tiles.append(tile_id)
        acc.n_cells += int(mask.sum())
        _add_cells(acc, index, t, mask)
        _add_species_cells(acc, t, mask)
    return acc


def hist_quantiles(hist: np.ndarray, lo: float, hi: float, qs, vmin: float, vmax: float) -> list[float]:
    """Quantiles from a histogram of BINS bins over [lo, hi], linear within a bin, clamped to the
    exact min and max; error at most one bin width."""
    total = hist.sum()
    if not total:
        return [float("nan")] * len(qs)
    width = (hi - lo) / BINS if hi > lo else 0.0
    cum = np.cumsum(hist)
    out = []
    for q in qs:
        target = q * total
        k = int(np.searchsorted(cum, target, side="left"))
        k = min(k, BINS - 1)
        before = cum[k - 1] if k else 0
        frac = (target - before) / hist[k] if hist[k] else 0.0
        out.append(float(np.clip(lo + (k + frac) * width, vmin, vmax)))
    return out
