"""What a region must offer to be mapped: the :class:`MapRegion` protocol, the optional
:class:`TruthLayers` extension, and the species table's records.

Two kinds of region satisfy it: the generated Virtual Europe (``inference/data/region.py``, which
also has truth layers) and a region built from real rasters and tables
(``inference/data/raster_region.py``). The cascade, the trainers and the run lifecycle use only
what is written here.

Conventions every region follows (those the models were trained with):

* the grid: EPSG:3035, 50 m cells, 25 km meta-tiles (``inference.grid``); cell centres row 0 north;
* Sentinel-2: uint16 reflectance x 10,000, bands R, G, B, NIR, on the 10 m EPSG:3035 pixel grid
  aligned with the cells (five pixels per cell); patches are centred on the cell centre's pixel;
* climate: float32 cubes [4, 19, 12] (pr, tas, tasmax, tasmin x 2000-2018 x month) in CHELSA's
  storage units (temperatures in K x 10, precipitation in kg m-2 month-1 x 100);
* Landsat: float32 cubes [6, 4, 21] (R, G, B, NIR, SWIR1, SWIR2 x quarter x 2000-2020) in the GLC24
  0-255 convention.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from backend.core.errors import RegionError
from inference.grid import MetaTile, Region


@dataclass(frozen=True)
class TraitDistribution:
    """A species' trait summary (PlantTraitNet CSV columns) and its log-normal parameters."""

    median: float
    sd: float
    lowerbound: float
    upperbound: float
    logmean: float
    logsd: float


@dataclass(frozen=True)
class Species:
    """One row of a region's species table (``index``: its row; ``id``: the SDM's species id)."""

    index: int
    id: int
    name: str
    genus: str
    family: str
    guild: str
    growth_form: str
    pft: str
    iucn: str
    eu_directive: bool
    invasive: bool
    woody: bool
    tree: bool
    endemic: bool
    conifer: bool
    target_prevalence: float
    traits: dict = field(default_factory=dict)   # trait name -> TraitDistribution


@runtime_checkable
class MapRegion(Protocol):
    """A region the cascade can map (see the module docstring for the units of every input)."""

    path: Path
    meta: dict
    grid: Region

    @property
    def name(self) -> str: ...

    @property
    def species(self) -> list[Species]: ...

    @property
    def species_ids(self) -> np.ndarray: ...

    @property
    def habitat_codes(self) -> list[str]:
        """The EUNIS codes a habitat model of this region classifies into."""

    def cell_centres(self, tile: MetaTile) -> tuple[np.ndarray, np.ndarray]:
        """EPSG:3035 x, y [500, 500] of the cell centres of ``tile`` (row 0 = north)."""

    def land_mask(self, tile: MetaTile) -> np.ndarray:
        """bool [500, 500]: True where the cell is mapped (land with inputs)."""

    def input_index(self, tile: MetaTile) -> np.ndarray | None:
        """int [250,000] or None: the cell (row-major) whose inputs and prediction each cell takes
        (a water cell: the nearest land cell, the paper's rule); None: every cell its own."""

    def extract_s2(self, x, y, size: int = 128) -> np.ndarray:
        """uint16 [N, 4, size, size] patches centred on the points' pixels."""

    def extract_climate(self, x, y) -> np.ndarray:
        """float32 [N, 4, 19, 12] climate cubes at the points."""

    def extract_landsat(self, x, y) -> np.ndarray:
        """float32 [N, 6, 4, 21] Landsat cubes at the points."""

    def s2_window(self, left: float, top: float, width: int, height: int) -> np.ndarray:
        """uint16 [4, height, width] of the 10 m pixels whose window has its top-left corner at the
        EPSG:3035 point (``left``, ``top``), multiples of 10 m (0 where there is no data: the
        cascade masks such cells with :meth:`land_mask`)."""

    def cube_keys(self, name: str, x, y) -> np.ndarray:
        """int64 [N]: points with the same key have the same ``name`` cube (climate, landsat), so
        a meta-tile computes each distinct cube once."""


class TruthLayers(abc.ABC):
    """The known truth of a generated region: present only where a region derives from this class;
    the cascade asks ``isinstance(region, TruthLayers)``."""

    @abc.abstractmethod
    def iter_true_probability(self, tile: MetaTile, chunk: int = 1024) -> Iterator[tuple[slice, np.ndarray]]:
        """(species slice, [chunk, 500, 500]) true presence probabilities, species in table order."""

    @abc.abstractmethod
    def true_probability_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True probabilities [N, S] at EPSG:3035 points."""

    @abc.abstractmethod
    def true_habitat_codes(self, tile: MetaTile) -> np.ndarray:
        """The true EUNIS level-3 code of every cell [500, 500] ("" where none)."""


def has_truth(region) -> bool:
    return isinstance(region, TruthLayers)


def species_for(region: MapRegion, species_ids: Sequence[int]) -> list[Species]:
    """The region's species table rows in ``species_ids`` order (a model's species list).

    The table must cover every id: a :class:`RegionError` lists the missing ones otherwise."""
    table = {int(sp.id): sp for sp in region.species}
    missing = [int(s) for s in species_ids if int(s) not in table]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise RegionError(f"the species table of region {region.name!r} lacks {len(missing)} of the model's "
                          f"{len(species_ids)} species (ids {shown}): add them to the table, or use a model "
                          f"trained on this region's species")
    return [table[int(s)] for s in species_ids]
