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


# --- area reports (issue 9) -------------------------------------------------------------------------

class ReportState(BaseModel):
    id: str = Field(description="Report id: a hash of the normalised geometry and the run.")
    status: Literal["pending", "running", "done", "failed"]
    run: str
    area_km2: float
    created_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = Field(None, description="Computation time of the report.")
    error: str | None = None
    report_url: str


class SpeciesFlags(BaseModel):
    id: int
    name: str
    family: str | None = None
    genus: str | None = None
    iucn: str | None = Field(None, description="IUCN Red List category (LC, NT, VU, EN, CR, DD) or none.")
    eu_directive: bool = Field(description="Listed in the EU Habitats Directive annexes.")
    threatened: bool = Field(description="IUCN VU, EN or CR.")
    invasive: bool = Field(description="Invasive alien species of Union concern.")
    endemic: bool
    tree: bool


class ReportSpecies(SpeciesFlags):
    cells: int = Field(description="Cells of the area where the species is in the assemblage.")
    coverage: float = Field(description="Share of the area's cells where the species is in the assemblage.")
    mean_probability: float = Field(description="Mean calibrated probability over those cells.")
    layers: list[str] = Field(description="Map layer ids (probability, presence).")


class ReportSpeciesPage(BaseModel):
    report: str
    total: int = Field(description="Species matching the filters.")
    offset: int
    limit: int
    items: list[ReportSpecies]


class ReportHabitat(BaseModel):
    level: int
    code: str | None
    name: str
    value: int
    color: str | None = None
    cells: int
    coverage: float


class ReportHabitats(BaseModel):
    report: str
    total: int
    items: list[ReportHabitat]
    unclassified_cells: dict[str, int] = Field(description="Cells without a habitat class, per level.")


class SpeciesHit(BaseModel):
    id: int
    name: str
    family: str | None = None
    genus: str | None = None
    iucn: str | None = None
    match: Literal["prefix", "word-prefix", "fuzzy"] = Field(description="How the name matched the query.")
    distance: int = Field(description="Edits between the query and the name (0 for prefix matches).")


class SpeciesPlace(BaseModel):
    tile_id: str
    cells: int = Field(description="Cells of the meta-tile where the species is in the assemblage.")
    coverage: float
    mean_probability: float
    bounds: list[float] = Field(description="[west, south, east, north] of the meta-tile, WGS84.")


class SpeciesDetail(SpeciesFlags):
    woody: bool
    attributes: dict
    run: str | None = Field(None, description="The live run the placement refers to.")
    cells: int = Field(0, description="Cells of the live run where the species is predicted present.")
    predicted_in: list[SpeciesPlace] = Field(default_factory=list)
    layers: list[str] = Field(default_factory=list, description="Layer ids of the species in the live run.")


class HabitatNode(BaseModel):
    code: str
    name: str
    level: int
    parent: str | None = None
    mapped: bool = Field(description="Whether the live run's habitat layers use this class.")
    children: list[HabitatNode] = Field(default_factory=list)


class IndicatorInfo(BaseModel):
    id: str
    kind: str
    title: str
    description: str
    units: str | None = None
    uncertainty_layer: str | None = Field(None, description="Layer of the 2-sigma half-width (indicators) or "
                                          "spread (traits).")
    tiles_url: str


class ErrorOut(BaseModel):
    detail: str | list[dict] = Field(description="What was wrong (a message; request validation: a list of errors).")


# Search text from clients: printable characters only (no control characters), at most 128 of them.
SEARCH_TEXT = {"max_length": 128, "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}


def error_responses(*codes: int) -> dict:
    """OpenAPI ``responses`` for the error codes a route may answer (see backend/http_errors.py)."""
    what = {400: "The body is not JSON.", 404: "Unknown report, run, species or habitat.",
            409: "The report is still being computed or failed.", 413: "Area or body too large.",
            422: "Invalid input (the message names the problem).", 503: "No run is live yet."}
    return {c: {"model": ErrorOut, "description": what[c]} for c in codes}
