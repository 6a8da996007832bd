"""Area reports: POST an area, GET the stored report, its pages, exports and comparisons."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from backend.core.errors import InvalidInput, NotReady
from backend.deps import ReportsDep, SettingsDep
from backend.reports import export
from backend.reports.geometry import parse_json
from backend.reports.service import status_body
from backend.schemas import SEARCH_TEXT, ReportHabitats, ReportSpeciesPage, ReportState, error_responses

router = APIRouter(tags=["Reports"], responses=error_responses(404, 409, 413, 422, 503))

_POSITION = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3}
_RING = {"type": "array", "items": _POSITION, "minItems": 4}
_POLYGON = {"type": "object", "required": ["type", "coordinates"],
            "properties": {"type": {"type": "string", "enum": ["Polygon"]},
                           "coordinates": {"type": "array", "items": _RING, "minItems": 1}}}
_MULTI = {"type": "object", "required": ["type", "coordinates"],
          "properties": {"type": {"type": "string", "enum": ["MultiPolygon"]},
                         "coordinates": {"type": "array", "minItems": 1,
                                         "items": {"type": "array", "items": _RING, "minItems": 1}}}}
_FEATURE = {"type": "object", "required": ["type", "geometry"],
            "properties": {"type": {"type": "string", "enum": ["Feature"]}, "geometry": {"oneOf": [_POLYGON, _MULTI]},
                           "properties": {"type": "object"}}}
_EXAMPLE = {"type": "Polygon", "coordinates": [[[10.0, 50.0], [10.1, 50.0], [10.1, 50.1], [10.0, 50.1], [10.0, 50.0]]]}
AREA_BODY = {"requestBody": {"required": True, "description": (
    "The area: a GeoJSON (RFC 7946) Polygon or MultiPolygon in WGS84 longitude/latitude, or a Feature of one."),
    "content": {"application/json": {"schema": {"oneOf": [_POLYGON, _MULTI, _FEATURE]}, "example": _EXAMPLE}}}}

ReportId = Annotated[str, Path(description="Report id (32 hex digits), as returned by POST /api/reports.",
                               pattern="^[0-9a-f]{32}$")]
RunParam = Annotated[str | None, Query(description="Run id (default: the live run).", max_length=64)]
SpeciesLimit = Annotated[int, Query(ge=1, le=1000, description="Species included in the report body "
                                                           "(the rest: GET /api/reports/{id}/species).")]


def _pending(state: dict, retry_after: int) -> JSONResponse:
    return JSONResponse(state, status_code=202, headers={"Location": state["report_url"],
                                                         "Retry-After": str(retry_after)})


def _done_report(reports: ReportsDep, report_id: str) -> dict:
    row = reports.get(report_id)
    if row.status == "failed":
        raise NotReady(f"report {report_id} failed: {row.error}; POST the area again to retry")
    if row.status != "done":
        raise NotReady(f"report {report_id} is still being computed: see GET /api/reports/{report_id}/status")
    return row.result


@router.post(
    "/reports", summary="Report on an area: species, habitats, indicators, traits",
    openapi_extra=AREA_BODY,
    responses={200: {"description": "The report (computed now or from the store)."},
               202: {"model": ReportState, "description": "A large area: computed in the background; poll the "
                     "Location (Retry-After seconds)."},
               400: {"description": "Invalid JSON."}, 413: {"description": "Area or body too large."},
               422: {"description": "Wrong geometry type, self-intersection, outside the mapped region, too many "
                     "vertices, non-WGS84 coordinates."}},
)
async def post_report(request: Request, reports: ReportsDep, settings: SettingsDep, run: RunParam = None,
                      species_limit: SpeciesLimit = 50) -> Response:
    """Summarise what lives in an area. The report id is derived from the normalised geometry and
    the run, so the same area posted again is answered from the store. Areas above
    `GEOFLORA_REPORT_ASYNC_KM2` are computed in the background (202 with `Location` and `Retry-After`)."""
    doc = parse_json(await request.body())
    done = await run_in_threadpool(reports.submit, doc, run)
    if done.status != "done":
        return _pending(status_body(reports.get(done.report_id)), settings.report_retry_after_s)
    return JSONResponse(export.trimmed(done.report, species_limit),
                        headers={"Location": f"/api/reports/{done.report_id}"})


@router.get("/reports/compare", summary="Compare two or more stored reports")
def compare_reports(reports: ReportsDep, ids: Annotated[list[str], Query(
        description="Two to ten report ids.", min_length=2, max_length=10)]) -> dict:
    """Side by side: area, species counts, dominant habitats, indicator and trait means; species shared
    by all areas, unique to each, and pairwise Jaccard similarity; level-1 habitat coverages."""
    if len(set(ids)) < 2:
        raise InvalidInput("compare needs at least two different report ids")
    return export.compare([_done_report(reports, i) for i in ids])


@router.get("/reports/{report_id}", summary="A stored report",
            responses={202: {"model": ReportState, "description": "Still being computed."},
                       404: {"description": "Unknown report."}, 409: {"description": "The computation failed."}})
def get_report(report_id: ReportId, reports: ReportsDep, settings: SettingsDep,
               species_limit: SpeciesLimit = 50) -> Response:
    row = reports.get(report_id)
    if row.status in ("pending", "running"):
        return _pending(status_body(row), settings.report_retry_after_s)
    return JSONResponse(export.trimmed(_done_report(reports, report_id), species_limit))


@router.get("/reports/{report_id}/status", response_model=ReportState, summary="State of a report")
def report_status(report_id: ReportId, reports: ReportsDep) -> dict:
    return status_body(reports.get(report_id))


@router.get("/reports/{report_id}/species", response_model=ReportSpeciesPage,
            summary="The species of a report: filtered, sorted, paged")
def report_species(
    report_id: ReportId, reports: ReportsDep,
    offset: Annotated[int, Query(ge=0, le=10**6, description="First species of the page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Species per page.")] = 50,
    sort: Annotated[Literal["coverage", "mean_probability", "cells", "name"], Query(description="Sort key.")] = "coverage",
    order: Annotated[Literal["desc", "asc"], Query(description="Sort order.")] = "desc",
    flag: Annotated[Literal["eu_directive", "threatened", "invasive", "endemic", "tree"] | None,
                    Query(description="Only species with this flag.")] = None,
    iucn: Annotated[Literal["LC", "NT", "VU", "EN", "CR", "DD"] | None, Query(description="Only this IUCN status.")] = None,
    family: Annotated[str | None, Query(**SEARCH_TEXT, description="Only this family.")] = None,
    q: Annotated[str | None, Query(**SEARCH_TEXT, description="Name contains this text.")] = None,
) -> dict:
    items = export.filter_species(_done_report(reports, report_id), flag=flag, iucn=iucn, family=family, q=q,
                                  sort=sort, descending=order == "desc")
    return {"report": report_id, "total": len(items), "offset": offset, "limit": limit,
            "items": items[offset:offset + limit]}


@router.get("/reports/{report_id}/habitats", response_model=ReportHabitats,
            summary="The habitats of a report at EUNIS levels 1-3: filtered, sorted")
def report_habitats(
    report_id: ReportId, reports: ReportsDep,
    level: Annotated[int | None, Query(ge=1, le=3, description="Only this EUNIS level.")] = None,
    min_coverage: Annotated[float, Query(ge=0, le=1, description="Only classes covering at least this share.")] = 0.0,
    q: Annotated[str | None, Query(**SEARCH_TEXT, description="Code or name contains this text.")] = None,
    sort: Annotated[Literal["coverage", "code", "name"], Query(description="Sort key (within each level).")] = "coverage",
    order: Annotated[Literal["desc", "asc"], Query(description="Sort order.")] = "desc",
) -> dict:
    report = _done_report(reports, report_id)
    items = export.filter_habitats(report, level=level, min_coverage=min_coverage, q=q, sort=sort,
                                   descending=order == "desc")
    return {"report": report_id, "total": len(items), "items": items,
            "unclassified_cells": report["habitats"]["unclassified_cells"]}


@router.get("/reports/{report_id}/export", summary="Download a report: JSON, CSV per module, GeoJSON",
            responses={200: {"content": {"application/json": {}, "text/csv": {}, "application/geo+json": {}}}})
def export_report(
    report_id: ReportId, reports: ReportsDep,
    format: Annotated[Literal["json", "csv", "geojson"], Query(description="File format.")] = "json",
    module: Annotated[Literal["species", "habitats", "indicators", "traits"] | None,
                      Query(description="CSV only: which module's table.")] = None,
) -> Response:
    report = _done_report(reports, report_id)
    name = f"geoflora-report-{report_id}"
    if format == "csv":
        if module is None:
            raise InvalidInput("format=csv needs module=species, habitats, indicators or traits")
        return Response(export.to_csv(report, module), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}-{module}.csv"'})
    if format == "geojson":
        return Response(json.dumps(export.to_geojson(report)), media_type="application/geo+json",
                        headers={"Content-Disposition": f'attachment; filename="{name}.geojson"'})
    return Response(json.dumps(report), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}.json"'})
