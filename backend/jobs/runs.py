"""The run lifecycle: create a run over a region, compute its meta-tiles (idempotently), finalise
it (catalog layers, flora, report index) and make it live. The cascade itself computes and writes
files (inference/pipeline); this module is the part that knows the catalog database."""

from __future__ import annotations

import math
import os
import secrets
import socket
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from backend.core.errors import RunError
from backend.core.layers import species_presence_text, species_probability_text
from backend.core.settings import Settings
from backend.db.models import Habitat, Layer, MetaTileRecord, Run, Species, utcnow
from backend.reports.index import band_specs, build_index
from inference.data import eunis
from inference.pipeline import run as cascade
from tiles.colormaps import PRESENCE_COLOR, PROBABILITY_CODE_SCALE, continuous_legend, hex_color
from tiles.mapproxy_app import drop_stale_caches


def new_run_id(region: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{region}-{stamp}-{secrets.token_hex(3)}"


def create_run(settings: Settings, sessions: sessionmaker[Session], region_name: str, region_path: Path,
               checkpoints: Mapping[str, Path | None]) -> str:
    """Register a pending run over every meta-tile of the region at ``region_path``.

    ``checkpoints``: ``{kind: path}`` of the cascade's models (the SDM required; Pl@ntBERT and
    BotaCLIP take part when given). The run's region-wide profile (conformal threshold, specialist
    species) is computed here once (:func:`inference.pipeline.run.plan_run`), so every meta-tile,
    on any worker, uses the same species lists.
    """
    config, tiles = cascade.plan_run(region_path, checkpoints, settings.device, settings.habitat_step)
    run_id = new_run_id(region_name)
    with sessions.begin() as session:
        session.add(Run(id=run_id, region=region_name, status="running", is_live=False, config=config))
        for tile in tiles:
            session.add(MetaTileRecord(run_id=run_id, tile_id=tile.id, footprint=f"SRID=3035;{tile.polygon_wkt()}",
                                       status="pending"))
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
    if status == "done" and cascade.outputs_exist(settings.layout, run_id, tile_id, cascade.run_outputs(config)):
        return "skipped"
    _set_tile_status(sessions, run_id, tile_id, "running")

    def fail(exc: BaseException) -> None:
        _set_tile_status(sessions, run_id, tile_id, "failed", error=f"{type(exc).__name__}: {exc}")

    try:
        finish = cascade.compute_metatile_files(settings, run_id, tile_id, config)
    except Exception as exc:
        fail(exc)
        raise

    def write() -> str:
        try:
            finish()
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


def trait_coverage(settings: Settings, run_id: str, tile_ids: list[str]) -> dict[str, float]:
    """Per trait, the mean over the run's meta-tiles of the share of the assemblage's weight whose
    species have a value of the trait (1.0 with a complete trait table)."""
    per_trait: dict[str, list[float]] = {}
    for tile in tile_ids:
        manifest = cascade.read_manifest(settings.layout, run_id, tile) or {}
        for trait, value in (manifest.get("trait_coverage") or {}).items():
            if value is not None:
                per_trait.setdefault(trait, []).append(float(value))
    return {trait: sum(v) / len(v) for trait, v in per_trait.items()}


def _description(spec, coverage: dict[str, float]) -> str:
    by_lower = {k.lower(): v for k, v in coverage.items()}
    share = by_lower.get(spec.layer_id.removeprefix("trait.").split(".")[0]) if spec.kind.startswith("trait") else None
    if share is None or share >= 0.9995:
        return spec.description
    return (f"{spec.description} Species with a known value carry {share:.1%} of the assemblage's weight (mean "
            f"over the run's cells): the others are left out of the mean.")


def _layer_rows(settings: Settings, run_id: str, mosaics: list[cascade.Mosaic],
                coverage: dict[str, float] | None = None) -> list[Layer]:
    """One catalog layer per band of each output mosaic, with its legend (trait layers say how much
    of the assemblage their species' known values cover)."""
    coverage = coverage or {}
    rows = []
    for mosaic in mosaics:
        for spec in mosaic.specs:
            if spec.rescale is not None:
                vmin, vmax = spec.rescale
            else:
                vmin, vmax = 0.0, _nice_max(mosaic.p99[spec.band])
            categorical = spec.legend is not None
            rows.append(Layer(
                run_id=run_id, id=spec.layer_id, kind=spec.kind, title=spec.title,
                description=_description(spec, coverage),
                units=spec.units, path=settings.layout.relative(mosaic.path), band=spec.band, colormap=spec.colormap,
                rescale_min=None if categorical else vmin, rescale_max=None if categorical else vmax,
                legend=spec.legend if categorical else continuous_legend(spec.colormap or "viridis", vmin, vmax,
                                                                         spec.units)))
    return rows


def _species_layer_rows(settings: Settings, run_id: str, mosaics: dict[int, Path], region,
                        threshold: float) -> list[dict]:
    """Probability and presence layers of every species in the assemblage of some cell of the run;
    ``threshold`` draws the presence maps (the run's F1-optimal species-map threshold)."""
    names = {int(sp.id): sp.name for sp in region.species}
    t_code = min(PROBABILITY_CODE_SCALE, max(1, math.ceil(threshold * PROBABILITY_CODE_SCALE - 1e-9)))
    presence_legend = {"type": "categorical", "items": [
        {"value": 1, "label": f"present (probability >= {threshold:.3g}, the F1-optimal threshold)",
         "color": hex_color(PRESENCE_COLOR)}]}
    prob_legend = continuous_legend("ylgn", 0.0, 1.0, "probability")
    rows = []
    for sid, vrt in sorted(mosaics.items()):
        path = settings.layout.relative(vrt)
        name = names.get(sid, f"species {sid}")
        title, description = species_probability_text(name)
        rows.append(dict(run_id=run_id, id=f"species.{sid}", kind="species", title=title, species_id=sid,
                         description=description, units="probability", path=path, band=1, colormap="ylgn",
                         rescale_min=0.0, rescale_max=float(PROBABILITY_CODE_SCALE), legend=prob_legend))
        title, description = species_presence_text(name, threshold)
        rows.append(dict(run_id=run_id, id=f"species.{sid}.presence", kind="species-presence", title=title,
                         species_id=sid, description=description, units=None, path=path, band=1,
                         colormap=f"presence-{t_code:03d}", rescale_min=None, rescale_max=None,
                         legend=presence_legend))
    return rows


def species_row(sp) -> Species:
    """Catalog row of a species of a generated (or real) flora."""
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
    region = cascade.load_region_cached(config["region_path"])
    mosaics = cascade.build_mosaics(settings.layout, run_id, config, tile_ids)
    species = cascade.build_species_mosaics(settings.layout, run_id, tile_ids)
    with sessions.begin() as session:  # the run is not complete yet: no client sees these rows
        session.execute(delete(Layer).where(Layer.run_id == run_id))  # a finaliser that died half-way
        session.add_all(_layer_rows(settings, run_id, mosaics, trait_coverage(settings, run_id, tile_ids)))
        rows = _species_layer_rows(settings, run_id, species, region,
                                   float(config.get("species_map_threshold", config["profile"]["threshold"])))
        if rows:
            session.execute(Layer.__table__.insert(), rows)  # one bulk insert (a run registers thousands)
        _register_flora(session, region)
    # Area reports read per-block aggregates; built here so that no user's first report pays for it.
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
        drop_stale_caches(settings, run_id)


def run_local(settings: Settings, sessions: sessionmaker[Session], region_name: str, region_path: Path,
              checkpoints: Mapping[str, Path | None], progress: bool = True) -> str:
    """Create a run and compute it in this process, meta-tile after meta-tile, then go live."""
    run_id = create_run(settings, sessions, region_name, region_path, checkpoints)
    with sessions() as session:
        tiles = [t.tile_id for t in session.get(Run, run_id).metatiles]
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
