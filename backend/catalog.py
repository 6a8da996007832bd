"""Read access to the catalog for the hot paths (tiles, WMS): the live run and its layers, cached.

Tile and WMS requests must not query the database each time; this keeps a snapshot of the live
run's layers and refreshes it when it is older than ``ttl`` seconds or when told to.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from backend.core.errors import NoLiveRun
from backend.core.layers import LayerInfo, LiveSnapshot
from backend.core.paths import DataLayout
from backend.db.models import Layer
from backend.db.queries import live_run


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
        path=DataLayout(data_dir).resolve(layer.path),
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
            run = live_run(session)
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
        return self.require().layer(layer_id)
