"""What is computed for one meta-tile. Today: the named placeholder richness layer."""

from __future__ import annotations

import numpy as np

from inference.grid import CELLS_PER_METATILE, MetaTile
from inference.pipeline.outputs import RICHNESS_PLACEHOLDER


def compute_metatile(region, tile: MetaTile) -> dict[str, np.ndarray]:
    """Every output array of ``tile``, keyed by layer id ([rows, cols] float32).

    PLACEHOLDER: richness is the expected number of species under the generator's true
    probabilities (sum over species). The SDM issue replaces this with model predictions.
    Cells in water are computed from their own inputs (the flora has aquatic habitats), not masked.
    """
    richness = np.zeros((CELLS_PER_METATILE, CELLS_PER_METATILE), np.float64)
    for _species, prob in region.iter_true_probability(tile):  # chunks of species: scales to 11,255
        richness += prob.sum(axis=0, dtype=np.float64)
    return {RICHNESS_PLACEHOLDER.layer_id: richness.astype(np.float32)}
