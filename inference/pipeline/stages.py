"""What is computed for one meta-tile. Today: the named placeholder richness layer."""

from __future__ import annotations

import numpy as np

from inference.grid import MetaTile
from inference.pipeline.outputs import RICHNESS_PLACEHOLDER


def compute_metatile(region, tile: MetaTile) -> dict[str, np.ndarray]:
    """Every output array of ``tile``, keyed by layer id ([rows, cols] float32, nodata outside land).

    PLACEHOLDER: richness is the expected number of species under the generator's true
    probabilities (sum over species). The SDM issue replaces this with model predictions.
    """
    prob = region.true_probability(tile)  # [S, rows, cols]
    richness = prob.sum(axis=0, dtype=np.float64).astype(np.float32)
    mask = region.land_mask(tile) if hasattr(region, "land_mask") else None
    if mask is not None:
        richness = np.where(mask, richness, np.float32(RICHNESS_PLACEHOLDER.nodata))
    return {RICHNESS_PLACEHOLDER.layer_id: richness}
