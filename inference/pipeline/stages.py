"""What is computed for one meta-tile: the cascade's stages, from the SDM onwards."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from inference.botaclip.embed import metatile_embeddings, pca_rgb
from inference.data.interface import has_truth, species_for
from inference.grid import CELL_M, CELLS_PER_METATILE, MetaTile
from inference.habitat.infer import classify_metatile
from inference.indicators import SpeciesAttributes, compute_indicators, specialist_mask
from inference.models import check_cascade_checkpoints
from inference.models import kind as model_kind
from inference.pipeline.assemblage import chunk_assemblages
from inference.pipeline.outputs import (
    ASSEMBLAGES,
    EMBEDDING_RGB,
    HABITAT_TOP_K,
    OUTPUTS,
    SPECIES_CODES,
    SPECIES_PRESENT,
    TRAIT_COVERAGE,
    TRAIT_TITLES,
    TRUE_RICHNESS,
    habitat_outputs,
    mask_outputs,
    suitability_layer_id,
)
from inference.sdm import conformal
from inference.sdm.predict import MetaTileSDM, per_patch_probabilities
from inference.training import resolve_device
from inference.traits.maps import cwm, species_log_medians
from tiles.colormaps import PROBABILITY_CODE_SCALE


@dataclass
class CascadeModels:
    """The trained models a run uses, loaded once per process (Pl@ntBERT and BotaCLIP optional)."""

    sdm: MetaTileSDM
    species_ids: np.ndarray
    thresholds: dict
    checkpoint: Path
    plantbert: object | None = None
    botaclip: object | None = None
    batches: Batches = None

    @property
    def threshold(self) -> float:
        """The conformal threshold that turns probabilities into assemblages."""
        return conformal.assemblage_threshold(self.thresholds)


@dataclass(frozen=True)
class RunProfile:
    """Region-wide facts every meta-tile of a run shares (computed once, stored in the run config)."""

    threshold: float
    specialists: tuple[int, ...]  # species indices (SDM order)
    sample_cells: int
    habitat_step: int = 1  # Pl@ntBERT lattice step (1: every cell), the same on every worker

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "specialists": list(self.specialists), "sample_cells": self.sample_cells,
                "habitat_step": self.habitat_step}

    @classmethod
    def from_dict(cls, d: dict) -> RunProfile:
        return cls(float(d["threshold"]), tuple(int(i) for i in d["specialists"]), int(d["sample_cells"]),
                   int(d.get("habitat_step", 1)))


@dataclass(frozen=True)
class Batches:
    """Batch sizes of the cascade (settings ``batch_*``)."""

    s2_rows: int = 100
    cubes: int = 4096
    lists: int = 512

    @classmethod
    def from_settings(cls, settings) -> Batches:
        return cls(settings.batch_s2_rows, settings.batch_cubes, settings.batch_lists)


@lru_cache(maxsize=2)
def _load_models(files: tuple[tuple[str, str, float], ...], device: str, batches: Batches) -> CascadeModels:
    loaded = {name: model_kind(name).load(path) for name, path, _mtime in files}
    model, norm, ck = loaded.pop("sdm")
    others = {name: m.to(device) for name, m in loaded.items()}
    return CascadeModels(
        sdm=MetaTileSDM(model, norm, device=device, strip_rows=batches.s2_rows, unique_batch=batches.cubes),
        species_ids=np.asarray(ck["species_ids"]),
        thresholds=ck["thresholds"],
        checkpoint=Path(next(path for name, path, _ in files if name == "sdm")),
        plantbert=others.get("plantbert"),
        botaclip=others.get("botaclip"),
        batches=batches,
    )


def models_for(checkpoints: Mapping[str, Path | None], device: str = "auto",
               batches: Batches = Batches()) -> CascadeModels:
    """The cascade's models from ``{kind: checkpoint}`` (:mod:`inference.models`; the SDM is
    required, a kind given as None is left out), each loaded by its kind's loader, once per process
    (a checkpoint written again is loaded again)."""
    checked = check_cascade_checkpoints(checkpoints)
    files = tuple((name, str(path), path.stat().st_mtime) for name, path in sorted(checked.items()))
    return _load_models(files, resolve_device(device), batches)


def _check_species(region, models: CascadeModels) -> list:
    """The region's species in the SDM's order (the table must cover the SDM's species list)."""
    return species_for(region, models.species_ids)


def run_profile(region, models: CascadeModels, n_cells: int = 2000, seed: int = 0, habitat_step: int = 1) -> RunProfile:
    """Specialist species from SDM predictions at ``n_cells`` random cells spread over the region."""
    _check_species(region, models)
    rng = np.random.default_rng(seed)
    left, bottom, right, top = region.grid.bounds
    cols = rng.integers(0, int((right - left) // CELL_M), n_cells)
    rows = rng.integers(0, int((top - bottom) // CELL_M), n_cells)
    xs = left + (cols + 0.5) * CELL_M
    ys = top - (rows + 0.5) * CELL_M
    model = models.sdm.model
    device = next(model.parameters()).device
    prob = per_patch_probabilities(model.cpu(), models.sdm.norm, region, xs, ys)
    model.to(device)
    flags = specialist_mask(prob, models.threshold)
    return RunProfile(models.threshold, tuple(int(i) for i in np.flatnonzero(flags)), n_cells, int(habitat_step))


def species_attributes(species: list, profile: RunProfile) -> SpeciesAttributes:
    """The indicators' species attributes, ``species`` in the SDM's order (:func:`_check_species`)."""
    specialist = np.zeros(len(species), bool)
    specialist[list(profile.specialists)] = True
    return SpeciesAttributes.from_species(species, specialist)


class _Timer:
    """Per-stage wall times (synchronising CUDA so a stage is charged its own kernels)."""

    def __init__(self, sink: dict | None, device: torch.device) -> None:
        self.sink, self.device = sink, device

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        yield
        if self.sink is not None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.sink[stage] = self.sink.get(stage, 0.0) + time.perf_counter() - t0


def _mean_finite(a: np.ndarray) -> float | None:
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def _indicator_layer(key: str) -> str:
    name, _, part = key.rpartition(".")
    if key == "status.most":
        return "indicator.status.most"
    if name == "status":
        return f"indicator.status.{part}"
    return f"indicator.{name}" + (".ci" if part == "halfwidth" else "")


def compute_metatile(region, tile: MetaTile, models: CascadeModels, profile: RunProfile,
                     timings: dict | None = None, info: dict | None = None,
                     n_rows: int | None = None, ready=None) -> dict[str, np.ndarray]:
    """Every output array of ``tile``, keyed by layer id ([rows, cols]); ``timings`` (if given)
    receives the seconds of each stage: sdm, indicators, species, habitat, embedding, traits, truth;
    ``info`` (if given) the habitat stage's statistics (cells evaluated by Pl@ntBERT, filled).
    ``n_rows`` computes the first rows of the meta-tile only (benchmarks of large models on a CPU).
    ``ready(outputs)``, if given, is called with the outputs computed so far once everything the
    SDM alone gives is there (indicators, species layers, assemblages, traits), before Pl@ntBERT and
    BotaCLIP: their files can be written meanwhile (:class:`inference.pipeline.run.OutputWriter`).

    Cells outside the region's ``land_mask`` (water, when the region masks it, or cells without
    inputs) have no assemblage and the nodata of every layer; species layers read 0 there.
    """
    species = _check_species(region, models)
    timer = _Timer(timings, models.sdm.device)
    with timer("sdm"):
        prob = models.sdm.probabilities(region, tile, n_rows)  # [S, 500, 500], calibrated
    rows = prob.shape[1]
    index = region.input_index(tile) if rows == CELLS_PER_METATILE else None
    if index is not None:  # cells that take another cell's inputs (water -> nearest land) take its prediction
        prob = prob.flatten(1)[:, torch.from_numpy(index).to(prob.device)].reshape(prob.shape)
    keep = np.asarray(region.land_mask(tile), bool)[:rows]
    # a nodata value inside an input's time series makes the cell's probabilities NaN (one sum, not
    # a boolean copy of every probability)
    finite = torch.isfinite(prob.sum(0)).cpu().numpy()
    if not finite.all():
        keep = keep & finite
        if info is not None:
            info["cells_without_inputs"] = int((~finite).sum())
    if not keep.all():
        prob[:, torch.from_numpy(~keep).to(prob.device)] = 0
    with timer("indicators"):
        out = {_indicator_layer(k): v.cpu().numpy()
               for k, v in compute_indicators(prob, species_attributes(species, profile), profile.threshold).items()}
    with timer("species"):
        # Servable species layers: probability codes p x 250 (uint8) of the species that are in the
        # assemblage of at least one cell of the tile; the others are not written at all.
        out[SPECIES_CODES] = (prob * PROBABILITY_CODE_SCALE).round_().to(torch.uint8).cpu().numpy()
        out[SPECIES_PRESENT] = (prob >= profile.threshold).flatten(1).any(1).cpu().numpy()
        # the per-cell assemblage store (reports read it): species at or above the threshold
        out[ASSEMBLAGES] = chunk_assemblages(prob, profile.threshold, PROBABILITY_CODE_SCALE)
    with timer("traits"):
        mean, sd, coverage = cwm(prob, species_log_medians(region, models.species_ids), profile.threshold,
                                 return_coverage=True)
        # the share of the assemblage's weight whose species have a value (a real trait table has gaps)
        out[TRAIT_COVERAGE] = {name: _mean_finite(np.asarray(coverage[i])) for i, name in enumerate(TRAIT_TITLES)}
        for i, name in enumerate(TRAIT_TITLES):
            m, d = np.asarray(mean[i]), np.asarray(sd[i])
            empty = ~np.isfinite(m)
            out[f"trait.{name.lower()}"] = np.where(empty, -1.0, np.exp(np.where(empty, 0.0, m))).astype(np.float32)
            out[f"trait.{name.lower()}.sd"] = np.where(empty, -1.0, d).astype(np.float32)
    if ready is not None:
        ready(out)
    if models.plantbert is not None:
        with timer("habitat"):
            hm = classify_metatile(models.plantbert, prob, threshold=profile.threshold,
                                   species_ids=models.species_ids, amp=prob.device.type == "cuda",
                                   batch_size=(models.batches or Batches()).lists, step=profile.habitat_step,
                                   top_k=HABITAT_TOP_K)
            if info is not None:
                info["habitat"] = hm.stats
            for level in (3, 2, 1):
                idx, _codes = hm.level_index(level)
                out[f"habitat.l{level}"] = (idx.astype(np.int16) + 1).astype(np.uint8)  # 0: no assemblage
            out["habitat.l3.probability"] = np.where(hm.index >= 0, hm.probability, -1.0).astype(np.float32)
            has_list = hm.index >= 0
            for code, band in zip(hm.labels, hm.suitability()):
                out[suitability_layer_id(code)] = np.where(has_list, band, -1.0)
    if models.botaclip is not None:
        with timer("embedding"):
            emb = metatile_embeddings(region, tile, models.botaclip, rows=slice(0, rows))
            if index is not None:
                emb = emb.reshape(emb.shape[0], -1)[:, index].reshape(emb.shape)
            rgb = pca_rgb(emb, models.botaclip)
            out["embedding.pca"] = np.maximum(rgb, 1)  # 0 is nodata
    if has_truth(region):
        with timer("truth"):
            truth = np.zeros((rows, CELLS_PER_METATILE), np.float64)
            for _species, p in region.iter_true_probability(tile):
                truth += p[:, :rows].sum(axis=0, dtype=np.float64)
            out[TRUE_RICHNESS.layer_id] = truth.astype(np.float32)
    if not keep.all():
        mask_outputs(out, keep, [*OUTPUTS, EMBEDDING_RGB, *(habitat_outputs(list(models.plantbert.labels))
                                                        if models.plantbert is not None else [])])
    return out
