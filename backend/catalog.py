"""Read access to the catalog for the hot paths (tiles, WMS): the live run and its layers, cached.

Tile and WMS requests must not query the database each time; this keeps a snapshot of the live
run's layers and refreshes it when it is older than ``ttl`` seconds or when told to.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Layer, Run
from backend.errors import NoLiveRun, NotFound


@dataclass(frozen=True)
class LayerInfo:
    """What the map services need to know of a layer (a detached copy of the catalog row)."""

    id: str
    kind: str
    title: str
    description: str
    units: str | None
    path: Path  # absolute, resolved inside the data dir
    band: int
    colormap: str | None
    rescale: tuple[float, float] | None
    legend: dict
    species_id: int | None = None

    def render_query(self) -> str:
        """TiTiler query string that renders this layer as its legend says (for TiTiler's own
        ``/tiles/{id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png``)."""
        # an RGB layer (the BotaCLIP embedding) renders its three bands as red, green and blue
        parts = ["bidx=1&bidx=2&bidx=3"] if self.kind == "embedding" else [f"bidx={self.band}"]
        if self.colormap:
            parts.append(f"colormap_name={self.colormap}")
        if self.rescale is not None:
            parts.append(f"rescale={self.rescale[0]:g},{self.rescale[1]:g}")
        return "&".join(parts)

    def tiles_path(self) -> str:
        """XYZ URL template (Leaflet / QGIS style) relative to the server root."""
        return f"/tiles/{self.id}/{{z}}/{{x}}/{{y}}.png"


@dataclass(frozen=True)
class LiveSnapshot:
    run_id: str
    region: str
    created_at: str
    layers: dict[str, LayerInfo] = field(default_factory=dict)


def _resolve_inside(data_dir: Path, relative: str) -> Path:
    root = data_dir.resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise NotFound(f"layer file {relative!r} lies outside the data directory")
    return path


def layer_info(layer: Layer, data_dir: Path) -> LayerInfo:
    rescale = None
    if layer.rescale_min is not None and layer.rescale_max is not None:
        rescale = (layer.rescale_min, layer.rescale_max)
    return LayerInfo(
        id=layer.id,
        kind=layer.kind,
        title=layer.title,
        description=layer.description,
        units=layer.units,
        path=_resolve_inside(data_dir, layer.path),
        band=layer.band,
        colormap=layer.colormap,
        rescale=rescale,
        legend=dict(layer.legend or {}),
        species_id=layer.species_id,
    )


class LiveCatalog:
    """Thread-safe cached view of the live run, shared by TiTiler and MapProxy."""

    def __init__(self, sessions: sessionmaker[Session], data_dir: Path, ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._data_dir = data_dir
        self._ttl = ttl
        self._lock = threading.Lock()
        self._snapshot: LiveSnapshot | None = None
        self._loaded_at = float("-inf")

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def snapshot(self) -> LiveSnapshot | None:
        now = time.monotonic()
        with self._lock:
            if now - self._loaded_at > self._ttl:
                self._snapshot = self._load()
                self._loaded_at = now
            return self._snapshot

    def _load(self) -> LiveSnapshot | None:
        with self._sessions() as session:
            run = session.scalars(select(Run).where(Run.is_live.is_(True))).first()
            if run is None:
                return None
            layers = {lyr.id: layer_info(lyr, self._data_dir) for lyr in run.layers}
            return LiveSnapshot(run.id, run.region, run.created_at.isoformat(), layers)

    def require(self) -> LiveSnapshot:
        snap = self.snapshot()
        if snap is None:
            raise NoLiveRun("no run is live yet: compute a region first (geoflora compute)")
        return snap

    def layer(self, layer_id: str) -> LayerInfo:
        snap = self.require()
        try:
            return snap.layers[layer_id]
        except KeyError:
            raise NotFound(f"unknown layer {layer_id!r}; see GET /api/layers") from None
