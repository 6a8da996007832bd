"""What is computed for one meta-tile: the cascade's stages, from the SDM onwards."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from inference.grid import CELLS_PER_METATILE, MetaTile
from inference.pipeline.outputs import RICHNESS, TRUE_RICHNESS
from inference.sdm.predict import MetaTileSDM
from inference.sdm.train import load_sdm


@dataclass
class CascadeModels:
    """The trained models a run uses, loaded once per process."""

    sdm: MetaTileSDM
    species_ids: np.ndarray
    thresholds: dict
    checkpoint: Path


@lru_cache(maxsize=2)
def load_models(sdm_checkpoint: str, _mtime: float, device: str = "cpu") -> CascadeModels:
    model, norm, ck = load_sdm(Path(sdm_checkpoint))
    return CascadeModels(
        sdm=MetaTileSDM(model, norm, device=device),
        species_ids=np.asarray(ck["species_ids"]),
        thresholds=ck["thresholds"],
        checkpoint=Path(sdm_checkpoint),
    )


def resolve_device(setting: str = "auto") -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def models_for(sdm_checkpoint: Path, device: str = "auto") -> CascadeModels:
    return load_models(str(sdm_checkpoint), sdm_checkpoint.stat().st_mtime, resolve_device(device))


def compute_metatile(region, tile: MetaTile, models: CascadeModels) -> dict[str, np.ndarray]:
    """Every output array of ``tile``, keyed by layer id ([rows, cols] float32).

    Cells in water are computed from their own inputs (the flora has aquatic habitats), not masked.
    """
    if not np.array_equal(models.species_ids, np.asarray(region.species_ids)):
        raise ValueError(f"the SDM checkpoint {models.checkpoint} was trained on another species list")
    prob = models.sdm.probabilities(region, tile)  # [S, 500, 500]
    out = {RICHNESS.layer_id: prob.sum(0, dtype=torch.float64).float().cpu().numpy()}
    if hasattr(region, "iter_true_probability"):
        truth = np.zeros((CELLS_PER_METATILE, CELLS_PER_METATILE), np.float64)
        for _species, p in region.iter_true_probability(tile):
            truth += p.sum(axis=0, dtype=np.float64)
        out[TRUE_RICHNESS.layer_id] = truth.astype(np.float32)
    return out
