"""Runs: create one over a region, compute its meta-tiles (idempotently), finalise and go live."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import secrets
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Habitat, Layer, MetaTileRecord, Run, Species, utcnow
from backend.settings import Settings
from inference.grid import CELLS_PER_METATILE, MetaTile
from inference.pipeline.assemblage import FILE_NAME as ASSEMBLAGE_FILE
from inference.pipeline.assemblage import write_assemblage
from inference.pipeline.outputs import (ASSEMBLAGES, EMBEDDING_RGB, OUTPUTS, SPECIES_CODES, SPECIES_PRESENT,
                                        TRUE_RICHNESS, OutputSpec, files_of, habitat_outputs)
from inference.pipeline.stages import Batches, RunProfile, compute_metatile, models_for, run_profile
from tiles.cog import GDAL_ENV, write_cog, write_cog_band
from tiles.colormaps import PROBABILITY_CODE_SCALE, continuous_legend
from tiles.layout import metatile_cog, metatile_dir, mosaic_path, relative
from tiles.mosaic import build_vrt

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A run that cannot proceed (unknown, incomplete, or its region is missing)."""


def new_run_id(region: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{region}-{stamp}-{secrets.token_hex(3)}"


@lru_cache(maxsize=4)
def _load_region(path: str):
    from inference.data.region import load_region

    return load_region(Path(path))


def expected_outputs(region, config: dict) -> list[OutputSpec]:
    """The outputs a run over ``region`` writes (the truth layers only where a truth exists)."""
    has_truth = hasattr(region, "iter_true_probability")
    return [o for o in _all_outputs(config) if o.kind != TRUE_RICHNESS.kind or has_truth]


def _all_outputs(config: dict) -> list[OutputSpec]:
    specs = list(OUTPUTS)
    if config.get("plantbert_checkpoint"):
        specs += habitat_outputs(config["habitat_labels"])
    if config.get("botaclip_checkpoint"):
        specs.append(EMBEDDING_RGB)
    return specs


def _run_outputs(config: dict) -> list[OutputSpec]:
    wanted = set(config["outputs"])
    return [o for o in _all_outputs(config) if o.layer_id in wanted]


def create_run(sessions: sessionmaker[Session], region_name: str, region_path: Path, sdm_checkpoint: Path,
               device: str = "auto", plantbert_checkpoint: Path | None = None,
               botaclip_checkpoint: Path | None = None, habitat_step: int = 1) -> str:
    """Register a pending run over every meta-tile of the region at ``region_path``.

    The run's region-wide profile (conformal threshold, specialist species) is computed here once,
    so every meta-tile, on any worker, uses the same species lists. Pl@ntBERT (habitat layers) and
    BotaCLIP (embedding layer) take part when their checkpoints are given; ``habitat_step`` is
    Pl@ntBERT's lattice step (settings ``habitat_step``).
    """
    region = _load_region(str(region_path.resolve()))
    for what, path in (("SDM", sdm_checkpoint), ("Pl@ntBERT", plantbert_checkpoint), ("BotaCLIP", botaclip_checkpoint)):
        if path is not None and not Path(path).is_file():
            raise RunError(f"no {what} checkpoint at {path}: train one with `geoflora train`")
    models = models_for(sdm_checkpoint, device, plantbert_checkpoint, botaclip_checkpoint)
    profile = run_profile(region, models, habitat_step=habitat_step)
    config = {
        "region_path": str(region_path.resolve()),
        "sdm_checkpoint": str(sdm_checkpoint.resolve()),
        "plantbert_checkpoint": str(Path(plantbert_checkpoint).resolve()) if plantbert_checkpoint else None,
        "botaclip_checkpoint": str(Path(botaclip_checkpoint).resolve()) if botaclip_checkpoint else None,
        "habitat_labels": list(models.plantbert.labels) if models.plantbert is not None else None,
        "profile": profile.to_dict(),
    }
    config["outputs"] = [o.layer_id for o in expected_outputs(region, config)]
    run_id = new_run_id(region_name)
    with sessions.begin() as session:
        run = Run(id=run_id, region=region_name, status="running", is_live=False, config=config)
        session.add(run)
        for tile in region.grid.metatiles():
            session.add(
                MetaTileRecord(
                    run_id=run_id,
                    tile_id=tile.id,
                    footprint=f"SRID=3035;{tile.polygon_wkt()}",
                    status="pending",
                )
            )
    return run_id


def _set_tile_status(sessions, run_id: str, tile_id: str, status: str, error: str | None = None) -> None:
    values = {"status": status, "error": error, "updated_at": utcnow()}
    if status == "running":  # one more attempt, by this process
        values.update(attempts=MetaTileRecord.attempts + 1, worker=f"{socket.gethostname()}:{os.getpid()}")
    with sessions.begin() as session:
        session.execute(
            update(MetaTileRecord)
            .where(MetaTileRecord.run_id == run_id, MetaTileRecord.tile_id == tile_id)
            .values(**values)
        )


MANIFEST = "manifest.json"


def read_manifest(settings: Settings, run_id: str, tile_id: str) -> dict | None:
    """What a finished meta-tile wrote (file -> bytes, species ids), or None if it is not finished."""
    path = metatile_dir(settings.data_dir, run_id, tile_id) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _outputs_exist(settings: Settings, run_id: str, tile_id: str, outputs: list[OutputSpec]) -> bool:
    manifest = read_manifest(settings, run_id, tile_id)
    if manifest is None:
        return False
    folder = metatile_dir(settings.data_dir, run_id, tile_id)
    listed = set(manifest["files"])
    return ({f"{n}.tif" for n in files_of(outputs)} | {ASSEMBLAGE_FILE} <= listed
            and all((folder / name).is_file() for name in listed))


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed process left behind (never visible as outputs: hidden, .tmp)."""
    if folder.is_dir():
        for tmp in [*folder.glob(".*.tmp"), *folder.glob("species/.*.tmp")]:
            tmp.unlink(missing_ok=True)


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

    def __init__(self, settings: Settings, run_id: str, tile: MetaTile, outputs: list[OutputSpec],
                 species_ids: np.ndarray | None = None, threads: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.settings, self.run_id, self.tile, self.species_ids = settings, run_id, tile, species_ids
        self.folder = metatile_dir(settings.data_dir, run_id, tile.id)
        self.files = files_of(outputs)
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads))
        self.futures: dict = {}
        self.written_species: list[int] = []

    def __enter__(self) -> "OutputWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop: files not started are dropped, running ones complete (atomically); no manifest."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _start(self, name: str, job) -> None:
        self.futures[name] = self.pool.submit(job)

    def submit(self, arrays: dict) -> None:
        settings, run_id, tile = self.settings, self.run_id, self.tile
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
                metatile_cog(settings.data_dir, run_id, tile.id, name), data, transform=tile.transform(),
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
                    "species": self.written_species, "cells": CELLS_PER_METATILE * CELLS_PER_METATILE}
        tmp = self.folder / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, self.folder / MANIFEST)
        return manifest


def write_outputs(settings: Settings, run_id: str, tile: MetaTile, arrays: dict[str, np.ndarray],
                  outputs: list[OutputSpec], species_ids: np.ndarray | None = None, threads: int = 2) -> dict:
    """One COG per output file (its layers as bands), one per species present in the tile, the
    assemblage store, then the manifest, last (:class:`OutputWriter` with every array at once)."""
    return OutputWriter(settings, run_id, tile, outputs, species_ids, threads).finish(arrays)


def process_metatile(settings: Settings, sessions: sessionmaker[Session], run_id: str, tile_id: str,
                     writer=None):
    """Compute and write every output of one meta-tile. Returns 'done' or 'skipped' (already done).

    Idempotent: a meta-tile whose outputs are all in place is not recomputed. Each file is written
    atomically, so a crash leaves either the old state or the complete file. With ``writer`` (an
    executor), the files are written there and a future is returned at once, so the caller can
    compute the next meta-tile while this one is written.
    """
    with sessions() as session:
        record = session.scalars(
            select(MetaTileRecord).where(MetaTileRecord.run_id == run_id, MetaTileRecord.tile_id == tile_id)
        ).first()
        run = session.get(Run, run_id)
        if record is None or run is None:
            raise RunError(f"meta-tile {tile_id} is not part of run {run_id}")
        config = dict(run.config)
        status = record.status
    outputs = _run_outputs(config)
    if status == "done" and _outputs_exist(settings, run_id, tile_id, outputs):
        return "skipped"
    _set_tile_status(sessions, run_id, tile_id, "running")
    _remove_stale_temporaries(metatile_dir(settings.data_dir, run_id, tile_id))

    def fail(exc: BaseException) -> None:
        _set_tile_status(sessions, run_id, tile_id, "failed", error=f"{type(exc).__name__}: {exc}")

    out = None
    try:
        region = _load_region(config["region_path"])
        tile = MetaTile.from_id(tile_id)
        models = models_for(Path(config["sdm_checkpoint"]), settings.device,
                            *(Path(p) if p else None for p in (config.get("plantbert_checkpoint"),
                                                                config.get("botaclip_checkpoint"))),
                            batches=Batches.from_settings(settings))
        # an old manifest goes first: files are replaced from now on, the meta-tile is not finished
        (metatile_dir(settings.data_dir, run_id, tile_id) / MANIFEST).unlink(missing_ok=True)
        out = OutputWriter(settings, run_id, tile, outputs, models.species_ids)
        # the SDM-derived files are written while Pl@ntBERT and BotaCLIP compute
        arrays = compute_metatile(region, tile, models, RunProfile.from_dict(config["profile"]), ready=out.submit)
    except Exception as exc:
        if out is not None:
            out.close()
        fail(exc)
        raise

    def write() -> str:
        try:
            out.finish(arrays)
        except Exception as exc:
            fail(exc)
            raise
        _set_tile_status(sessions, run_id, tile_id, "done")
        return "done"

    return write() if writer is None else writer.submit(write)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return math.ceil(value / magnitude * 2) / 2 * magnitude


def _register_layers(session: Session, settings: Settings, run_id: str, name: str, specs: list[OutputSpec],
                     cogs: list[Path]) -> None:
    """One VRT mosaic per output file; one catalog layer per band."""
    vrt = mosaic_path(settings.data_dir, run_id, name)
    build_vrt(vrt, cogs)
    with rasterio.Env(**GDAL_ENV):
        tags = []
        for cog in cogs:
            with rasterio.open(cog) as src:
                tags.append(src.tags())
    for spec in specs:
        if spec.rescale is not None:
            vmin, vmax = spec.rescale
        else:
            vmin, vmax = 0.0, _nice_max(max(float(t.get(f"GEOFLORA_P99_B{spec.band}", 0.0)) for t in tags))
        categorical = spec.legend is not None
        session.merge(
            Layer(
                run_id=run_id,
                id=spec.layer_id,
                kind=spec.kind,
                title=spec.title,
                description=spec.description,
                units=spec.units,
                path=relative(settings.data_dir, vrt),
                band=spec.band,
                colormap=spec.colormap,
                rescale_min=None if categorical else vmin,
                rescale_max=None if categorical else vmax,
                legend=spec.legend if categorical else continuous_legend(spec.colormap or "viridis", vmin, vmax,
                                                                         spec.units),
            )
        )


def _register_species_layers(session: Session, settings: Settings, run_id: str, tile_ids: list[str], region,
                             threshold: float) -> None:
    """Probability and presence layers of every species in the assemblage of some cell of the run."""
    from tiles.colormaps import PRESENCE_COLOR, hex_color

    tiles_of: dict[int, list[Path]] = {}
    for tile_id in tile_ids:
        manifest = read_manifest(settings, run_id, tile_id) or {"species": []}
        for sid in manifest["species"]:
            tiles_of.setdefault(int(sid), []).append(metatile_dir(settings.data_dir, run_id, tile_id) / "species"
                                                     / f"{sid}.tif")
    names = {int(sp.id): sp.name for sp in region.species}
    t_code = min(PROBABILITY_CODE_SCALE, max(1, math.ceil(threshold * PROBABILITY_CODE_SCALE - 1e-9)))
    presence_legend = {"type": "categorical", "items": [
        {"value": 1, "label": f"present (probability >= {threshold:.3g}, the conformal threshold)",
         "color": hex_color(PRESENCE_COLOR)}]}
    prob_legend = continuous_legend("ylgn", 0.0, 1.0, "probability")
    rows = []
    for sid, cogs in sorted(tiles_of.items()):
        vrt = build_vrt(mosaic_path(settings.data_dir, run_id, f"species/{sid}"), cogs)
        path = relative(settings.data_dir, vrt)
        name = names.get(sid, f"species {sid}")
        rows.append(dict(run_id=run_id, id=f"species.{sid}", kind="species", title=name, species_id=sid,
                         description=(f"Calibrated probability that {name} is present in a 100 m2 plot of the "
                                      f"50 m cell (deep-SDM)."),
                         units="probability", path=path, band=1, colormap="ylgn", rescale_min=0.0,
                         rescale_max=float(PROBABILITY_CODE_SCALE), legend=prob_legend))
        rows.append(dict(run_id=run_id, id=f"species.{sid}.presence", kind="species-presence",
                         title=f"{name} (predicted presence)", species_id=sid,
                         description=(f"Cells whose assemblage contains {name}: probability at or above the "
                                      f"conformal threshold {threshold:.3g}."),
                         units=None, path=path, band=1, colormap=f"presence-{t_code:03d}", rescale_min=None,
                         rescale_max=None, legend=presence_legend))
    if rows:
        session.execute(Layer.__table__.insert(), rows)  # one bulk insert (a run registers thousands)


def species_row(sp) -> Species:
    """Catalog row of a species of a generated (or real) flora."""
    from dataclasses import asdict

    return Species(
        id=int(sp.id),
        name=sp.name,
        family=sp.family,
        genus=sp.genus,
        iucn=sp.iucn or None,
        eu_directive=bool(sp.eu_directive),
        invasive=bool(sp.invasive),
        woody=bool(sp.woody),
        tree=bool(sp.tree),
        endemic=bool(sp.endemic),
        attributes={
            "growth_form": sp.growth_form,
            "pft": sp.pft,
            "guild": sp.guild,
            "conifer": bool(sp.conifer),
            "traits": {name: asdict(dist) for name, dist in sp.traits.items()},
        },
    )


def _register_flora(session: Session, region) -> None:
    from inference.data import eunis

    for sp in region.species:
        session.merge(species_row(sp))
    # Parents first, so the self-referencing foreign key holds on both databases.
    for hab in sorted(eunis.all_types(), key=lambda h: h.level):
        session.merge(Habitat(code=hab.code, name=hab.name, level=hab.level, parent=hab.parent))


def finalize_run(settings: Settings, sessions: sessionmaker[Session], run_id: str, make_live: bool = True) -> None:
    """Mosaic and register every output, build the run's report index, then mark the run complete
    and make it live in one transaction. Safe to call again after a crash at any point."""
    with sessions() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise RunError(f"unknown run {run_id}")
        pending = [t.tile_id for t in run.metatiles if t.status != "done"]
        tile_ids = [t.tile_id for t in run.metatiles]
        config = dict(run.config)
    if pending:
        raise RunError(f"run {run_id} is not complete: meta-tiles {', '.join(pending)} are not done")
    region = _load_region(config["region_path"])
    with sessions.begin() as session:  # the run is not complete yet: no client sees these rows
        session.execute(delete(Layer).where(Layer.run_id == run_id))  # a finaliser that died half-way
        for name, specs in files_of(_run_outputs(config)).items():
            cogs = [metatile_cog(settings.data_dir, run_id, t, name) for t in tile_ids]
            _register_layers(session, settings, run_id, name, specs, cogs)
        _register_species_layers(session, settings, run_id, tile_ids, region, float(config["profile"]["threshold"]))
        _register_flora(session, region)
    # Area reports read per-block aggregates; built here so that no user's first report pays for it.
    from backend.reports.index import band_specs, build_index

    with sessions() as session:
        build_index(settings.data_dir, run_id, tile_ids, band_specs(session.get(Run, run_id).layers))
    with sessions.begin() as session:
        run = session.get(Run, run_id)
        run.status = "complete"
        run.finished_at = utcnow()
        if make_live:
            session.execute(update(Run).where(Run.id != run_id).values(is_live=False))
            run.is_live = True
    if make_live:
        from tiles.mapproxy_app import drop_stale_caches

        drop_stale_caches(settings, run_id)


def live_run_for(sessions: sessionmaker[Session], region_name: str) -> str | None:
    with sessions() as session:
        return session.scalars(
            select(Run.id).where(Run.region == region_name, Run.is_live.is_(True), Run.status == "complete")
        ).first()


def run_local(settings: Settings, sessions: sessionmaker[Session], region_name: str, region_path: Path,
              sdm_checkpoint: Path, progress: bool = True, plantbert_checkpoint: Path | None = None,
              botaclip_checkpoint: Path | None = None) -> str:
    """Create a run and compute it in this process, meta-tile after meta-tile, then go live."""
    from tqdm import tqdm

    run_id = create_run(sessions, region_name, region_path, sdm_checkpoint, settings.device,
                        plantbert_checkpoint, botaclip_checkpoint, settings.habitat_step)
    with sessions() as session:
        tiles = [t.tile_id for t in session.get(Run, run_id).metatiles]
    from concurrent.futures import Future, ThreadPoolExecutor

    # Meta-tile i's COGs are written while meta-tile i + 1 is computed (one in flight bounds memory).
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1) as writer:
        for tile_id in tqdm(tiles, desc=f"run {run_id}", unit="meta-tile", disable=not progress):
            result = process_metatile(settings, sessions, run_id, tile_id, writer=writer)
            if pending is not None:
                pending.result()
            pending = result if isinstance(result, Future) else None
        if pending is not None:
            pending.result()
    finalize_run(settings, sessions, run_id)
    return run_id


__all__ = [
    "RunError",
    "create_run",
    "process_metatile",
    "OutputWriter",
    "write_outputs",
    "finalize_run",
    "run_local",
    "live_run_for",
]
