"""Response schemas of the REST API (request schemas arrive with the endpoints that take bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    database: Literal["sqlite", "postgresql"]
    live_run: str | None = Field(None, description="Id of the run whose layers are served.")


class RunSummary(BaseModel):
    id: str
    region: str
    status: str
    is_live: bool
    created_at: datetime
    finished_at: datetime | None = None


class MetaTileState(BaseModel):
    tile_id: str = Field(description="Meta-tile id from its lower-left corner in km (EPSG:3035).")
    status: str = Field(description="pending, running, done or failed.")
    bounds_3035: list[float] = Field(description="[left, bottom, right, top] in EPSG:3035 metres.")
    error: str | None = None
    attempts: int = Field(0, description="How many times processing of this meta-tile started.")
    worker: str | None = Field(None, description="host:pid of the process of the last attempt.")
    updated_at: datetime | None = None


class RunDetail(RunSummary):
    metatiles: list[MetaTileState]
    progress: float = Field(description="Share of meta-tiles done, 0 to 1.")


class LayerOut(BaseModel):
    id: str = Field(description="Stable layer id, e.g. `indicator.richness`.")
    kind: str
    title: str
    description: str
    units: str | None = None
    tiles_url: str = Field(description="XYZ URL template (EPSG:3857), relative to the server root.")
    wms_layer: str = Field(description="Layer name in the WMS/WMTS capabilities.")
    bounds: list[float] = Field(description="[west, south, east, north] in WGS84 degrees.")
    minzoom: int
    maxzoom: int
    legend: dict
    species_id: int | None = None


class RunRef(BaseModel):
    id: str
    region: str
    created_at: str


class LayerList(BaseModel):
    run: RunRef | None
    layers: list[LayerOut]
