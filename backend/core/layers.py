"""What a layer is to the map services and the catalog: plain records, no database, no web.

:class:`LayerInfo` is a detached copy of a catalog row (the tile renderer, TiTiler, MapProxy and
the legends read it); :class:`LiveSnapshot` is the live run with its layers, as one consistent
value. The user-facing texts of the per-species layers live here too, beside the records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from backend.core.errors import NotFound


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
    """The live run and its layers, read at one instant (one request uses one snapshot)."""

    run_id: str
    region: str
    created_at: str
    layers: dict[str, LayerInfo] = field(default_factory=dict)

    def layer(self, layer_id: str) -> LayerInfo:
        try:
            return self.layers[layer_id]
        except KeyError:
            raise NotFound(f"unknown layer {layer_id!r}; see GET /api/layers") from None


def species_probability_text(name: str) -> tuple[str, str]:
    """(title, description) of a species' probability layer."""
    return name, f"Calibrated probability that {name} is present in a 100 m2 plot of the 50 m cell (deep-SDM)."


def species_presence_text(name: str, threshold: float) -> tuple[str, str]:
    """(title, description) of a species' predicted-presence layer."""
    return (f"{name} (predicted presence)",
            f"Cells where {name} is predicted present: probability at or above {threshold:.3g}, the threshold that "
            f"maximises the F1 score on the calibration blocks (the paper's rule for species maps; assemblages, "
            f"indicators and reports use the lower conformal threshold).")


class SnapshotSource(Protocol):
    """Anything that gives the live snapshot (the backend's cached catalog; a fixed one in tests)."""

    def snapshot(self) -> LiveSnapshot | None: ...

    def require(self) -> LiveSnapshot:
        """The snapshot, or NoLiveRun."""


def request_snapshot(request) -> LiveSnapshot:
    """The live snapshot of one request, taken once (``request.app.state.catalog``) and kept on
    the request, so every step of the request (the cache key, the file read) sees the same run."""
    snap = getattr(request.state, "live_snapshot", None)
    if snap is None:
        snap = request.state.live_snapshot = request.app.state.catalog.require()
    return snap
