"""The report index of a run: per-block aggregates so that an area report sums blocks, not cells.

A report over a whole meta-tile would otherwise decompress 250,000 cells x ~80 species. The index
cuts every meta-tile into blocks of ``BLOCK`` x ``BLOCK`` cells (10 x 10 = 0.25 km2) and keeps, per
block:

- species: for every species present in some cell of the block, the number of cells where it is in
  the assemblage and the sum of its probability codes (CSR over blocks: ``sp_off``, ``sp_idx``,
  ``sp_cells``, ``sp_codes``), and the number of cells with a non-empty assemblage;
- continuous bands (indicators, their 2-sigma bands, status probabilities, trait CWMs and spreads,
  habitat class probability): valid-cell count, sum, min, max and a ``BINS``-bin histogram over the
  band's run-wide range (for quantiles of large areas);
- categorical bands (habitat levels 1-3, most threatened status): the count of each class value.

Besides the blocks it keeps every band's cell values uncompressed (``cont.npy`` float32 with NaN
for nodata, ``cat.npy`` uint8), memory-mapped, so the cells of blocks that an area's boundary cuts
are read directly; their species come from the meta-tile's assemblage store, one 50 x 50 chunk at
a time. The index is built once per run (lazily, by the first report; or by the pipeline), into a
temporary folder that is renamed to ``runs/<run>/report-index`` when complete.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import from_bounds

from backend.core.errors import NotReady
from backend.core.paths import REPORT_INDEX_DIR, DataLayout
from inference.grid import CELLS_PER_METATILE, MetaTile
from inference.pipeline.assemblage import FILE_NAME as ASSEMBLAGE_FILE
from inference.pipeline.assemblage import StoreReader

VERSION = 2
BLOCK = 10
BINS = 64
INDEX_DIR = REPORT_INDEX_DIR
NB = CELLS_PER_METATILE // BLOCK  # blocks per meta-tile edge

# Layer kinds a report summarises (species layers are summarised from the assemblage stores).
CONTINUOUS_KINDS = ("indicator", "indicator-uncertainty", "trait", "trait-uncertainty", "habitat-probability",
                    "truth")
CATEGORICAL_KINDS = ("indicator", "habitat")


class ReportIndexError(NotReady):
    """A run whose outputs cannot be indexed (e.g. computed before assemblage stores existed): 409."""


@dataclass(frozen=True)
class BandSpec:
    """One band of a run's layer that the report summarises."""

    layer_id: str
    kind: str
    title: str
    units: str | None
    path: str  # relative to the data dir (the catalog's mosaic)
    band: int
    categorical: bool
    legend: dict = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict:
        return {"layer_id": self.layer_id, "kind": self.kind, "title": self.title, "units": self.units,
                "path": self.path, "band": self.band, "categorical": self.categorical, "legend": self.legend}


def band_specs(layers) -> list[BandSpec]:
    """The bands of catalog ``layers`` (rows of one run) that a report summarises, in id order."""
    out = []
    for lyr in sorted(layers, key=lambda l: l.id):
        categorical = (lyr.legend or {}).get("type") == "categorical"
        kinds = CATEGORICAL_KINDS if categorical else CONTINUOUS_KINDS
        if lyr.kind in kinds and lyr.species_id is None:
            out.append(BandSpec(lyr.id, lyr.kind, lyr.title, lyr.units, lyr.path, lyr.band, categorical,
                                dict(lyr.legend or {})))
    return out


def _read_band_window(data_dir: Path, spec: BandSpec, tile: MetaTile) -> tuple[np.ndarray, float | None]:
    with rasterio.open(data_dir / spec.path) as src:
        win = from_bounds(*tile.bounds, transform=src.transform).round_offsets().round_lengths()
        data = src.read(spec.band, window=win, boundless=True, fill_value=src.nodata if src.nodata is not None else 0)
        return data, src.nodata


def _species_blocks(reader: StoreReader, n_species: int):
    """Per-block species aggregates of one store (CSR over the NB x NB blocks) and per-block counts of
    cells with a non-empty assemblage."""
    ch = reader.chunk
    if ch % BLOCK:
        raise ReportIndexError(f"{reader.path}: chunks of {ch} cells are not whole {BLOCK}-cell blocks")
    keys_all, cells_all, codes_all = [], [], []
    blobs: list[bytes | None] = [None] * (NB * NB)
    nonempty = np.zeros((NB, NB), np.int64)
    for cr in range(-(-reader.rows // ch)):
        for cc in range(reader.per_row):
            counts, species, codes = reader.read(cr, cc)
            h, w = counts.shape
            rows = (cr * ch + np.arange(h)) // BLOCK
            cols = (cc * ch + np.arange(w)) // BLOCK
            br0, bc0 = rows[0], cols[0]
            nbr, nbc = rows[-1] - br0 + 1, cols[-1] - bc0 + 1
            local = ((rows[:, None] - br0) * nbc + (cols[None, :] - bc0)).ravel()
            np.add.at(nonempty, (rows[:, None].repeat(w, 1).ravel(), cols[None, :].repeat(h, 0).ravel()),
                      (counts.ravel() > 0).astype(np.int64))
            _block_cells(blobs, counts, species, codes, cr * ch // BLOCK, cc * ch // BLOCK)
            if not len(species):
                continue
            entry_block = np.repeat(local, counts.ravel())
            key = entry_block.astype(np.int64) * n_species + species
            size = nbr * nbc * n_species
            n = np.bincount(key, minlength=size)
            s = np.bincount(key, weights=codes, minlength=size)
            hit = np.flatnonzero(n)
            lb, sp = np.divmod(hit, n_species)
            gblock = (br0 + lb // nbc) * NB + (bc0 + lb % nbc)
            keys_all.append(gblock * n_species + sp)
            cells_all.append(n[hit])
            codes_all.append(s[hit])
    if keys_all:
        key = np.concatenate(keys_all)
        order = np.argsort(key, kind="stable")
        key, cells, codes = key[order], np.concatenate(cells_all)[order], np.concatenate(codes_all)[order]
        block, sp = np.divmod(key, n_species)
    else:
        block = sp = cells = codes = np.zeros(0, np.int64)
    off = np.zeros(NB * NB + 1, np.int64)
    off[1:] = np.cumsum(np.bincount(block, minlength=NB * NB))
    sizes = np.array([len(b) for b in blobs], np.int64)
    return {"cells_off": np.r_[0, np.cumsum(sizes)], "cells_bin": np.frombuffer(b"".join(blobs), np.uint8),
            "sp_off": off, "sp_idx": sp.astype(np.uint16), "sp_cells": cells.astype(np.uint8),
            "sp_codes": codes.astype(np.uint16), "nonempty": nonempty.astype(np.uint8),
            # per species over the whole meta-tile (species detail: where it is predicted)
            "sp_total": np.bincount(sp, weights=cells, minlength=n_species).astype(np.int64),
            "sp_total_codes": np.bincount(sp, weights=codes, minlength=n_species).astype(np.int64)}


def _block_cells(blobs: list, counts: np.ndarray, species: np.ndarray, codes: np.ndarray, br0: int, bc0: int) -> None:
    """The cells of each block of a chunk as one zlib stream per block (the store's cell encoding, over
    the block's 10 x 10 cells), so that the cells of boundary blocks decompress 100 cells, not 2,500."""
    h, w = counts.shape
    off = np.r_[0, np.cumsum(counts.ravel())]
    for i in range(h // BLOCK):
        for j in range(w // BLOCK):
            rows = range(i * BLOCK, (i + 1) * BLOCK)
            spans = [(off[r * w + j * BLOCK], off[r * w + (j + 1) * BLOCK]) for r in rows]
            sp = np.concatenate([species[a:b] for a, b in spans])
            co = np.concatenate([codes[a:b] for a, b in spans])
            cnt = counts[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK].ravel()
            delta = sp.astype(np.int64)
            if len(delta):  # within a cell, each species as the difference to the previous one
                delta[1:] -= sp[:-1]
                starts = np.r_[0, np.cumsum(cnt)[:-1]]
                starts = starts[starts < len(delta)]
                delta[starts] = sp[starts]
            raw = cnt.astype("<u2").tobytes() + delta.astype("<u2").tobytes() + co.astype(np.uint8).tobytes()
            blobs[(br0 + i) * NB + bc0 + j] = zlib.compress(raw, 6)


def decode_block_cells(raws: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts [blocks x 100], species and codes of the decompressed block streams ``raws`` together."""
    n_cells = BLOCK * BLOCK
    counts, deltas, codes = [], [], []
    for raw in raws:
        cnt = np.frombuffer(raw, "<u2", n_cells)
        n = (len(raw) - 2 * n_cells) // 3
        counts.append(cnt)
        deltas.append(np.frombuffer(raw, "<u2", n, offset=2 * n_cells))
        codes.append(np.frombuffer(raw, np.uint8, n, offset=2 * n_cells + 2 * n))
    counts = np.concatenate(counts).astype(np.int64)
    delta = np.concatenate(deltas).astype(np.int64)
    total = np.cumsum(delta)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    base = np.where(starts > 0, total[np.maximum(starts - 1, 0)] if len(total) else 0, 0)
    return counts, total - np.repeat(base, counts), np.concatenate(codes)


def by_block(a: np.ndarray) -> np.ndarray:
    """[..., 500, 500] -> [..., NB, NB, BLOCK * BLOCK]."""
    lead = a.shape[:-2]
    return a.reshape(*lead, NB, BLOCK, NB, BLOCK).swapaxes(-3, -2).reshape(*lead, NB, NB, BLOCK * BLOCK)


def bin_of(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Histogram bin (0..BINS-1) of ``values`` [C, ...] over per-band ranges ``lo``, ``hi`` [C]."""
    shape = (-1,) + (1,) * (values.ndim - 1)
    width = np.where(hi > lo, hi - lo, 1.0).reshape(shape)
    b = np.floor((values - lo.reshape(shape)) / width * BINS)
    return np.clip(np.nan_to_num(b, nan=0), 0, BINS - 1).astype(np.int64)


def run_index_dir(data_dir: Path, run_id: str) -> Path:
    return DataLayout(data_dir).report_index_dir(run_id)


_build_lock = threading.Lock()


def build_index(data_dir: Path, run_id: str, tile_ids: list[str], bands: list[BandSpec]) -> Path:
    """Build the report index of a run (a no-op when it exists); returns its folder."""
    out = run_index_dir(data_dir, run_id)
    if index_version(out) == VERSION:
        return out
    with _build_lock:
        if index_version(out) == VERSION:
            return out
        tmp = out.with_name(f".{INDEX_DIR}.{secrets.token_hex(4)}.tmp")
        old = out.with_name(f".{INDEX_DIR}.{secrets.token_hex(4)}.old")
        try:
            _build(data_dir, run_id, tile_ids, bands, tmp)
            if out.exists():  # an index of an older layout: set it aside, then swap
                os.replace(out, old)
            try:
                os.replace(tmp, out)
            except OSError:  # another process finished first: its index is as good
                if index_version(out) != VERSION:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    return out


def index_version(folder: Path) -> int | None:
    """Layout version of the index in ``folder`` (None when there is none)."""
    try:
        return json.loads((folder / "meta.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def _build(data_dir: Path, run_id: str, tile_ids: list[str], bands: list[BandSpec], tmp: Path) -> None:
    cont = [b for b in bands if not b.categorical]
    cat = [b for b in bands if b.categorical]
    lo = np.full(len(cont), np.inf)
    hi = np.full(len(cont), -np.inf)
    cat_nodata: list[int | None] = [None] * len(cat)
    species_ids = code_scale = threshold = None
    tiles = []
    for tile_id in tile_ids:
        tile = MetaTile.from_id(tile_id)
        store = DataLayout(data_dir).metatile_dir(run_id, tile_id) / ASSEMBLAGE_FILE
        if not store.is_file():
            raise ReportIndexError(f"meta-tile {tile_id} of run {run_id} has no assemblage store ({ASSEMBLAGE_FILE}): "
                                   f"the run predates area reports; compute the region again (geoflora compute)")
        reader = StoreReader(store)
        if species_ids is None:
            species_ids, code_scale, threshold = reader.species_ids, reader.code_scale, reader.threshold
        elif not np.array_equal(species_ids, reader.species_ids):
            raise ReportIndexError(f"meta-tile {tile_id}: species order differs from the run's other meta-tiles")
        folder = tmp / tile_id
        folder.mkdir(parents=True)
        values = np.empty((len(cont), CELLS_PER_METATILE, CELLS_PER_METATILE), np.float32)
        for i, spec in enumerate(cont):
            data, nodata = _read_band_window(data_dir, spec, tile)
            data = data.astype(np.float32)
            if nodata is not None:
                data[data == np.float32(nodata)] = np.nan
            values[i] = data
            if np.isfinite(data).any():
                lo[i] = min(lo[i], float(np.nanmin(data)))
                hi[i] = max(hi[i], float(np.nanmax(data)))
        classes = np.zeros((len(cat), CELLS_PER_METATILE, CELLS_PER_METATILE), np.uint8)
        for i, spec in enumerate(cat):
            data, nodata = _read_band_window(data_dir, spec, tile)
            classes[i] = data
            cat_nodata[i] = None if nodata is None else int(nodata)
        np.save(folder / "cont.npy", values)
        np.save(folder / "cat.npy", classes)
        arrays = _species_blocks(reader, len(species_ids))
        cb = by_block(classes)  # [K, NB, NB, 100]
        cat_counts = np.zeros((len(cat), NB, NB, 256), np.uint8)
        for i in range(len(cat)):
            flat = cb[i].reshape(NB * NB, -1)
            idx = (np.arange(NB * NB)[:, None] * 256 + flat).ravel()
            cat_counts[i] = np.bincount(idx, minlength=NB * NB * 256).reshape(NB, NB, 256)
        vb = by_block(values)  # [C, NB, NB, 100]
        valid = np.isfinite(vb)
        arrays.update(
            cat_counts=cat_counts,
            cont_count=valid.sum(-1).astype(np.uint8),
            cont_sum=np.where(valid, vb, 0).sum(-1, dtype=np.float64),
            cont_min=np.where(valid, vb, np.inf).min(-1).astype(np.float32),
            cont_max=np.where(valid, vb, -np.inf).max(-1).astype(np.float32),
        )
        for name, arr in arrays.items():
            np.save(folder / f"{name}.npy", arr)
        tiles.append(tile_id)
    if species_ids is None:
        raise ReportIndexError(f"run {run_id} has no meta-tiles to index")
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, 0.0)
    for tile_id in tiles:  # histograms need the run-wide range of each band
        values = np.load(tmp / tile_id / "cont.npy", mmap_mode="r")
        vb = by_block(np.asarray(values))
        b = bin_of(vb, lo, hi)  # [C, NB, NB, 100]
        b = np.where(np.isfinite(vb), b, BINS)  # NaN into an overflow bin, dropped below
        hist = np.zeros((len(cont), NB * NB, BINS + 1), np.int64)
        for i in range(len(cont)):
            idx = (np.arange(NB * NB)[:, None] * (BINS + 1) + b[i].reshape(NB * NB, -1)).ravel()
            hist[i] = np.bincount(idx, minlength=NB * NB * (BINS + 1)).reshape(NB * NB, BINS + 1)
        np.save(tmp / tile_id / "cont_hist.npy", hist[:, :, :BINS].reshape(len(cont), NB, NB, BINS).astype(np.uint8))
    meta = {"version": VERSION, "run": run_id, "block": BLOCK, "bins": BINS, "tiles": tiles,
            "species_ids": [int(s) for s in species_ids], "code_scale": code_scale, "threshold": threshold,
            "continuous": [{**b.to_dict(), "lo": float(lo[i]), "hi": float(hi[i])} for i, b in enumerate(cont)],
            "categorical": [{**b.to_dict(), "nodata": cat_nodata[i]} for i, b in enumerate(cat)]}
    (tmp / "meta.json").write_text(json.dumps(meta))


class TileIndex:
    """One meta-tile's part of the index, memory-mapped (as plain arrays over the maps: slicing a
    ``np.memmap`` costs tens of microseconds, slicing an array over the same pages does not)."""

    NAMES = ("cells_off", "cells_bin", "sp_off", "sp_idx", "sp_cells", "sp_codes", "sp_total", "sp_total_codes",
             "nonempty", "cat_counts", "cont_count", "cont_sum", "cont_min", "cont_max", "cont_hist", "cont", "cat")

    def __init__(self, folder: Path, store: Path) -> None:
        for name in self.NAMES:
            setattr(self, name, np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r")))
        # block of every species entry, for selecting the entries of whole blocks at once
        self.sp_block = np.repeat(np.arange(NB * NB), np.diff(self.sp_off))
        self.store = StoreReader(store)
        # whole-tile totals: an area covering most of the tile subtracts its few other blocks from these
        C, K = self.cont_count.shape[0], self.cat_counts.shape[0]
        self.total_count = self.cont_count.reshape(C, -1).sum(1, dtype=np.int64)
        self.total_sum = self.cont_sum.reshape(C, -1).sum(1)
        self.total_hist = self.cont_hist.reshape(C, NB * NB, -1).sum(1, dtype=np.int64)
        self.total_cat = self.cat_counts.reshape(K, NB * NB, -1).sum(1, dtype=np.int64)
        self.total_nonempty = int(self.nonempty.sum(dtype=np.int64))


class RunIndex:
    """The report index of a run: its meta (bands, ranges, species order) and its tiles, opened lazily."""

    def __init__(self, data_dir: Path, run_id: str) -> None:
        self.folder = run_index_dir(data_dir, run_id)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.layout, self.run_id = DataLayout(data_dir), run_id
        self.species_ids = np.asarray(self.meta["species_ids"], np.int64)
        self.code_scale = float(self.meta["code_scale"])
        self.continuous = self.meta["continuous"]
        self.categorical = self.meta["categorical"]
        self.lo = np.array([b["lo"] for b in self.continuous], np.float64)
        self.hi = np.array([b["hi"] for b in self.continuous], np.float64)
        self.tile_ids = list(self.meta["tiles"])
        self._tiles: dict[str, TileIndex] = {}
        self._lock = threading.Lock()

    def tile(self, tile_id: str) -> TileIndex:
        with self._lock:
            t = self._tiles.get(tile_id)
            if t is None:
                t = TileIndex(self.folder / tile_id, self.layout.metatile_dir(self.run_id, tile_id) / ASSEMBLAGE_FILE)
                self._tiles[tile_id] = t
            return t
