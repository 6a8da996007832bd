"""The cascade of a run, as files: plan a run over a region, compute and write one meta-tile's
outputs (idempotently, every file atomically, the manifest last), and mosaic a finished run's
outputs. It knows no database: the run lifecycle (backend/jobs/runs.py) keeps the catalog."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio

from backend.core.atomic import sweep_temporaries, write_json
from backend.core.errors import RegionError, RunError
from backend.core.paths import MANIFEST, DataLayout
from backend.core.settings import Settings
from inference.data import eunis
from inference.data.interface import has_truth, species_for
from inference.data.region import load_region
from inference.grid import CELLS_PER_METATILE, MetaTile
from inference.models import check_cascade_checkpoints
from inference.pipeline.assemblage import FILE_NAME as ASSEMBLAGE_FILE
from inference.pipeline.assemblage import write_assemblage
from inference.pipeline.outputs import (
    ASSEMBLAGES,
    EMBEDDING_RGB,
    OUTPUTS,
    SPECIES_CODES,
    SPECIES_PRESENT,
    TRAIT_COVERAGE,
    TRUE_RICHNESS,
    OutputSpec,
    files_of,
    habitat_outputs,
)
from inference.pipeline.stages import Batches, RunProfile, compute_metatile, models_for, run_profile
from inference.sdm import conformal
from tiles.cog import GDAL_ENV, write_cog, write_cog_band
from tiles.colormaps import PROBABILITY_CODE_SCALE
from tiles.mosaic import build_vrt


@lru_cache(maxsize=4)
def load_region_cached(path: str):
    """The region at ``path``, loaded once per process (every meta-tile of a run reads it)."""
    return load_region(Path(path))


def expected_outputs(region, config: dict) -> list[OutputSpec]:
    """The outputs a run over ``region`` writes (the truth layers only where a truth exists)."""
    truth = has_truth(region)
    return [o for o in _all_outputs(config) if o.kind != TRUE_RICHNESS.kind or truth]


def _all_outputs(config: dict) -> list[OutputSpec]:
    specs = list(OUTPUTS)
    models = run_checkpoints(config)
    if "plantbert" in models:
        specs += habitat_outputs(config["habitat_labels"])
    if "botaclip" in models:
        specs.append(EMBEDDING_RGB)
    return specs


def run_outputs(config: dict) -> list[OutputSpec]:
    """The outputs of a planned run (its ``config``)."""
    wanted = set(config["outputs"])
    return [o for o in _all_outputs(config) if o.layer_id in wanted]


def run_checkpoints(config: dict) -> dict[str, Path]:
    """The ``{kind: checkpoint}`` of a planned run (its ``config``)."""
    return {kind: Path(p) for kind, p in config["checkpoints"].items()}


def check_models(region, models) -> None:
    """A run's models fit its region: the species table covers the SDM's species, Pl@ntBERT knows
    some of them and its labels are EUNIS codes (a :class:`RunError` naming what does not fit)."""
    if not conformal.has_assemblage_threshold(models.thresholds):
        raise RunError(f"the SDM {models.checkpoint} has no conformal threshold: calibrate it "
                       f"(`geoflora models import-geoplant ... --calibrate-with DIR`, or train it with `geoflora train sdm`)")
    try:
        species_for(region, models.species_ids)
    except RegionError as exc:
        raise RunError(f"the SDM {models.checkpoint} does not fit region {region.name!r}: {exc.message}") from exc
    pb = models.plantbert
    if pb is not None:
        known = set(int(s) for s in pb.vocab.species_ids) & set(int(s) for s in models.species_ids)
        if not known:
            raise RunError(f"Pl@ntBERT knows none of the SDM's {len(models.species_ids)} species: it was trained "
                           f"for another species list")
        unknown = [c for c in pb.labels if c not in eunis.table()]
        if unknown:
            raise RunError(f"Pl@ntBERT's labels {unknown[:10]} are not in the EUNIS habitat table: load the region's "
                           f"EUNIS list (sources file 'habitats')")


def plan_run(region_path: Path, checkpoints: Mapping[str, Path | None], device: str = "auto",
             habitat_step: int = 1) -> tuple[dict, list[MetaTile]]:
    """A run's configuration over the region at ``region_path``, and its meta-tiles.

    ``checkpoints``: ``{kind: path}`` of the cascade's models (:mod:`inference.models`): the SDM
    is required; Pl@ntBERT (habitat layers) and BotaCLIP (embedding layer) take part when given.
    The region-wide profile (conformal threshold, specialist species) is computed here once, so
    every meta-tile, on any worker, uses the same species lists; ``habitat_step`` is Pl@ntBERT's
    lattice step (settings ``habitat_step``).
    """
    region = load_region_cached(str(region_path.resolve()))
    try:
        checked = check_cascade_checkpoints(checkpoints)
    except (ValueError, FileNotFoundError) as exc:
        raise RunError(str(exc)) from exc
    models = models_for(checked, device)
    check_models(region, models)
    profile = run_profile(region, models, habitat_step=habitat_step)
    config = {
        "region_path": str(region_path.resolve()),
        "checkpoints": {kind: str(path.resolve()) for kind, path in checked.items()},
        "habitat_labels": list(models.plantbert.labels) if models.plantbert is not None else None,
        # binary species maps: the F1-optimal threshold chosen on the calibration blocks (the paper's
        # rule); the assemblages keep the conformal one (profile.threshold)
        "species_map_threshold": float(models.thresholds.get("f1_optimal", profile.threshold)),
        "profile": profile.to_dict(),
    }
    config["outputs"] = [o.layer_id for o in expected_outputs(region, config)]
    return config, list(region.grid.metatiles())


def read_manifest(layout: DataLayout, run_id: str, tile_id: str) -> dict | None:
    """What a finished meta-tile wrote (file -> bytes, species ids), or None if it is not finished."""
    path = layout.manifest(run_id, tile_id)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def outputs_exist(layout: DataLayout, run_id: str, tile_id: str, outputs: list[OutputSpec]) -> bool:
    """Whether a meta-tile's manifest is there and lists every output, and every listed file is."""
    manifest = read_manifest(layout, run_id, tile_id)
    if manifest is None:
        return False
    folder = layout.metatile_dir(run_id, tile_id)
    listed = set(manifest["files"])
    return ({f"{n}.tif" for n in files_of(outputs)} | {ASSEMBLAGE_FILE} <= listed
            and all((folder / name).is_file() for name in listed))


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed process left behind (never visible as outputs: hidden, .tmp)."""
    sweep_temporaries(folder)
    sweep_temporaries(folder / "species")


def _band_stats(data: np.ndarray, nodata: float) -> tuple[float, float]:
    valid = data[(data != nodata) & np.isfinite(data)] if data.dtype.kind == "f" else data[data != nodata]
    if not valid.size:
        return 0.0, 0.0
    return float(valid.max()), float(np.percentile(valid, 99))


class OutputWriter:
    """Writes one meta-tile's files as the cascade produces their arrays, then the manifest, last.

    ``submit(arrays)`` starts writing (in a pool of ``threads`` threads: GDAL and zlib release the
    GIL) every file whose arrays are all there and that was not started yet, so the SDM-derived
    COGs (indicators, species layers, the assemblage store, traits) are written while Pl@ntBERT
    and BotaCLIP compute. ``finish(arrays)`` writes the rest, waits, and writes the manifest: a
    meta-tile is finished exactly when its manifest exists. Every file is written atomically.
    """

    def __init__(self, layout: DataLayout, run_id: str, tile: MetaTile, outputs: list[OutputSpec],
                 species_ids: np.ndarray | None = None, threads: int = 2) -> None:
        self.layout, self.run_id, self.tile, self.species_ids = layout, run_id, tile, species_ids
        self.folder = layout.metatile_dir(run_id, tile.id)
        self.files = files_of(outputs)
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads))
        self.futures: dict = {}
        self.written_species: list[int] = []

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop: files not started are dropped, running ones complete (atomically); no manifest."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _start(self, name: str, job) -> None:
        self.futures[name] = self.pool.submit(job)

    def submit(self, arrays: dict) -> None:
        layout, run_id, tile = self.layout, self.run_id, self.tile
        for name, specs in self.files.items():
            if f"{name}.tif" in self.futures or any(s.layer_id not in arrays for s in specs):
                continue
            # a layer's array is one band [rows, cols] or several (an RGB image [3, rows, cols])
            data = np.concatenate([np.asarray(arrays[s.layer_id], dtype=s.dtype).reshape(
                -1, CELLS_PER_METATILE, CELLS_PER_METATILE) for s in specs])
            tags = {"GEOFLORA_FILE": name, "GEOFLORA_RUN": run_id}
            for s, band in zip(specs, data):
                vmax, p99 = _band_stats(band, s.nodata)
                tags[f"GEOFLORA_MAX_B{s.band}"] = f"{vmax:.6g}"
                tags[f"GEOFLORA_P99_B{s.band}"] = f"{p99:.6g}"
            self._start(f"{name}.tif", lambda name=name, data=data, specs=specs, tags=tags: write_cog(
                layout.metatile_cog(run_id, tile.id, name), data, transform=tile.transform(),
                nodata=specs[0].nodata, band_names=[s.layer_id for s in specs], tags=tags,
                resampling=specs[0].resampling, colormap=specs[0].colortable))
        if SPECIES_CODES in arrays and self.species_ids is not None and not self.written_species:
            codes, present = arrays[SPECIES_CODES], arrays[SPECIES_PRESENT]
            for k in np.flatnonzero(present):
                sid = int(self.species_ids[k])
                self.written_species.append(sid)
                self._start(f"species/{sid}.tif", lambda k=k, sid=sid: write_cog_band(
                    self.folder / "species" / f"{sid}.tif", codes[k], transform=tile.transform(), nodata=255,
                    scale=1.0 / PROBABILITY_CODE_SCALE))
        if ASSEMBLAGES in arrays and ASSEMBLAGE_FILE not in self.futures:
            if self.species_ids is None:
                raise RunError("the assemblage store needs the run's species ids")
            chunks = arrays[ASSEMBLAGES]
            self._start(ASSEMBLAGE_FILE, lambda: write_assemblage(self.folder / ASSEMBLAGE_FILE, chunks,
                                                                  self.species_ids, tile.id))

    def finish(self, arrays: dict) -> dict:
        """Write what is left, wait for every file, then the manifest; returns the manifest."""
        missing = [s.layer_id for specs in self.files.values() for s in specs if s.layer_id not in arrays]
        if missing:
            self.close()
            raise RunError(f"the cascade produced no {', '.join(missing)} for meta-tile {self.tile.id}")
        try:
            self.submit(arrays)
            paths = {name: f.result() for name, f in self.futures.items()}
        finally:
            self.close()
        manifest = {"tile": self.tile.id, "run": self.run_id,
                    "files": {name: p.stat().st_size for name, p in paths.items()},
                    "species": self.written_species, "cells": CELLS_PER_METATILE * CELLS_PER_METATILE,
                    "trait_coverage": arrays.get(TRAIT_COVERAGE)}
        write_json(self.folder / MANIFEST, manifest)
        return manifest


def write_outputs(layout: DataLayout, run_id: str, tile: MetaTile, arrays: dict[str, np.ndarray],
                  outputs: list[OutputSpec], species_ids: np.ndarray | None = None, threads: int = 2) -> dict:
    """One COG per output file (its layers as bands), one per species present in the tile, the
    assemblage store, then the manifest, last (:class:`OutputWriter` with every array at once)."""
    return OutputWriter(layout, run_id, tile, outputs, species_ids, threads).finish(arrays)


def compute_metatile_files(settings: Settings, run_id: str, tile_id: str, config: dict) -> Callable[[], dict]:
    """Compute one meta-tile of a planned run (its ``config``); the SDM-derived files are written
    while Pl@ntBERT and BotaCLIP compute. Returns ``finish()``, which writes the rest and the
    manifest (returned), so the caller may compute the next meta-tile meanwhile."""
    layout = settings.layout
    folder = layout.metatile_dir(run_id, tile_id)
    _remove_stale_temporaries(folder)
    region = load_region_cached(config["region_path"])
    tile = MetaTile.from_id(tile_id)
    models = models_for(run_checkpoints(config), settings.device, Batches.from_settings(settings))
    # an old manifest goes first: files are replaced from now on, the meta-tile is not finished
    layout.manifest(run_id, tile_id).unlink(missing_ok=True)
    out = OutputWriter(layout, run_id, tile, run_outputs(config), models.species_ids)
    try:
        arrays = compute_metatile(region, tile, models, RunProfile.from_dict(config["profile"]), ready=out.submit)
    except BaseException:
        out.close()
        raise
    return lambda: out.finish(arrays)


@dataclass(frozen=True)
class Mosaic:
    """One output file mosaicked over a run: its VRT, the layers (bands) it holds, and each band's
    99th percentile over the run (the top of a continuous layer's colour scale)."""

    path: Path
    specs: list[OutputSpec]
    p99: dict[int, float]


def build_mosaics(layout: DataLayout, run_id: str, config: dict, tile_ids: list[str]) -> list[Mosaic]:
    """One VRT mosaic (with region overviews) per output file of a finished run."""
    mosaics = []
    for name, specs in files_of(run_outputs(config)).items():
        cogs = [layout.metatile_cog(run_id, t, name) for t in tile_ids]
        vrt = build_vrt(layout.mosaic_path(run_id, name), cogs)
        with rasterio.Env(**GDAL_ENV):
            tags = []
            for cog in cogs:
                with rasterio.open(cog) as src:
                    tags.append(src.tags())
        p99 = {s.band: max(float(t.get(f"GEOFLORA_P99_B{s.band}", 0.0)) for t in tags) for s in specs}
        mosaics.append(Mosaic(vrt, specs, p99))
    return mosaics


def build_species_mosaics(layout: DataLayout, run_id: str, tile_ids: list[str]) -> dict[int, Path]:
    """Species id -> VRT mosaic of its probability over the meta-tiles whose assemblages hold it."""
    tiles_of: dict[int, list[Path]] = {}
    for tile_id in tile_ids:
        manifest = read_manifest(layout, run_id, tile_id) or {"species": []}
        for sid in manifest["species"]:
            tiles_of.setdefault(int(sid), []).append(layout.metatile_dir(run_id, tile_id) / "species" / f"{sid}.tif")
    return {sid: build_vrt(layout.mosaic_path(run_id, f"species/{sid}"), cogs)
            for sid, cogs in sorted(tiles_of.items())}
