"""SDM training samples: presence-absence surveys, presence-only records, spatial block splits.

One ``SDMData`` holds every sample of a region: its position (EPSG:3035), its species labels
(species in the order of the region's species table), whether it is presence-only (absences
unknown: target-group background), its 10 km block and split, its model inputs and, on generated
data, the true probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyproj import Transformer

from inference.data.readers import read_geoplant_pa, read_geoplant_po
from inference.grid import CELL_M
from inference.splits import assign_splits, spatial_blocks

_TO_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)


@dataclass
class SDMData:
    x: np.ndarray  # float64 [N], EPSG:3035
    y: np.ndarray
    labels: np.ndarray  # bool [N, S]
    is_po: np.ndarray  # bool [N]: presence-only sample (absences are pseudo-absences)
    species_ids: np.ndarray  # int64 [S]
    block: np.ndarray = field(default=None)  # int64 [N]
    split: np.ndarray = field(default=None)  # int8 [N]: TRAIN, CAL or TEST
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    p_true: np.ndarray | None = None  # float32 [N, S] on generated data
    area: np.ndarray | None = None  # float64 [N]: survey area in m2 (NaN: unknown, presence-only)

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, mask: np.ndarray) -> SDMData:
        return SDMData(
            x=self.x[mask], y=self.y[mask], labels=self.labels[mask], is_po=self.is_po[mask],
            species_ids=self.species_ids,
            block=None if self.block is None else self.block[mask],
            split=None if self.split is None else self.split[mask],
            inputs={k: v[mask] for k, v in self.inputs.items()},
            p_true=None if self.p_true is None else self.p_true[mask],
            area=None if self.area is None else self.area[mask],
        )

    def part(self, split: int, pa_only: bool = False) -> SDMData:
        mask = self.split == split
        if pa_only:
            mask &= ~self.is_po
        return self.subset(mask)


def _index_labels(species_ids: np.ndarray, rows: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    lookup = {int(s): i for i, s in enumerate(species_ids)}
    labels = np.zeros((n, len(species_ids)), bool)
    keep = np.array([int(s) in lookup for s in ids], bool)
    cols = np.array([lookup[int(s)] for s in ids[keep]], np.int64)
    labels[rows[keep], cols] = True
    return labels


def pa_samples(pa_csv: Path, species_ids: np.ndarray) -> SDMData:
    """Presence-absence surveys (GeoPlant PA CSV): every species not listed is a true absence."""
    pa = read_geoplant_pa(pa_csv)
    x, y = _TO_3035.transform(pa.lon, pa.lat)
    rows = np.repeat(np.arange(len(pa)), pa.n_species_records)
    labels = _index_labels(species_ids, rows, pa.species_ids, len(pa))
    return SDMData(np.asarray(x), np.asarray(y), labels, np.zeros(len(pa), bool), species_ids,
                   area=np.asarray(pa.area_m2, np.float64))


def po_cells(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 50 m cells visited by presence-only records: the cells' centres x, y (EPSG:3035, in
    cell order) and each record's cell (index into them)."""
    x, y = _TO_3035.transform(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    cell = np.stack([np.floor(np.asarray(x) / CELL_M), np.floor(np.asarray(y) / CELL_M)], 1).astype(np.int64)
    uniq, inverse = np.unique(cell.reshape(-1, 2), axis=0, return_inverse=True)
    return (uniq[:, 0] + 0.5) * CELL_M, (uniq[:, 1] + 0.5) * CELL_M, inverse.ravel()


def po_cell_samples(cx: np.ndarray, cy: np.ndarray, cell: np.ndarray, record_species: np.ndarray,
                    species_ids: np.ndarray) -> SDMData:
    """One presence-only sample per cell (centre ``cx, cy``), labelled with every species recorded
    in it (record ``i`` of species ``record_species[i]`` lies in cell ``cell[i]``)."""
    labels = _index_labels(species_ids, np.asarray(cell), np.asarray(record_species), len(cx))
    return SDMData(np.asarray(cx, np.float64), np.asarray(cy, np.float64), labels, np.ones(len(cx), bool), species_ids)


def po_samples(po_csv: Path, species_ids: np.ndarray) -> SDMData:
    """Presence-only records grouped by 50 m cell: one sample per visited cell (target-group background).

    The cells where anyone recorded any species share the sampling bias of the records, so the
    species not recorded there serve as pseudo-absences drawn with that same bias.
    """
    po = read_geoplant_po(po_csv)
    if not len(po):
        return SDMData(np.zeros(0), np.zeros(0), np.zeros((0, len(species_ids)), bool), np.zeros(0, bool), species_ids)
    cx, cy, cell = po_cells(po.lon, po.lat)
    return po_cell_samples(cx, cy, cell, po.species_ids, species_ids)


def concat(parts: list[SDMData]) -> SDMData:
    return SDMData(
        x=np.concatenate([p.x for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        is_po=np.concatenate([p.is_po for p in parts]),
        species_ids=parts[0].species_ids,
        area=np.concatenate([np.full(len(p), np.nan) if p.area is None else p.area for p in parts]),
    )


def region_samples(region, seed: int = 0, use_po: bool = True, with_inputs: bool = True,
                   s2_size: int = 128) -> SDMData:
    """Every training sample of a generated region, split by 10 km blocks, with inputs and truth."""
    species_ids = np.asarray(region.species_ids, np.int64)
    parts = [pa_samples(region.pa_csv, species_ids)]
    if use_po:
        parts.append(po_samples(region.po_csv, species_ids))
    data = concat(parts) if len(parts) > 1 else parts[0]
    data.block = spatial_blocks(data.x, data.y)
    data.split = assign_splits(data.block, seed)
    if with_inputs:
        data.inputs = extract_inputs(region, data.x, data.y, s2_size)
    data.p_true = region.true_probability_at(data.x, data.y).astype(np.float32)
    return data


def extract_inputs(region, x: np.ndarray, y: np.ndarray, s2_size: int = 128, chunk: int = 2048) -> dict:
    """Model inputs at points, in chunks (S2 patches are the big part: 4 x size^2 per point)."""
    out: dict[str, list[np.ndarray]] = {"s2": [], "climate": [], "landsat": []}
    for i in range(0, len(x), chunk):
        xs, ys = x[i:i + chunk], y[i:i + chunk]
        out["s2"].append(region.extract_s2(xs, ys, size=s2_size))
        out["climate"].append(region.extract_climate(xs, ys))
        out["landsat"].append(region.extract_landsat(xs, ys))
    return {k: np.concatenate(v) for k, v in out.items()}
