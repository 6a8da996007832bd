"""A STAC catalog (pystac) of the live runs' COGs, served at ``/stac``.

Root catalog -> one collection per live run -> one item per meta-tile, whose assets are the
meta-tile's COGs (every indicator, habitat, trait, embedding and species file listed in its
manifest), with projection metadata and the catalog layers each file holds. Asset files are
served from ``/stac/runs/{run}/files/{tile}/{file}``, only when the meta-tile's manifest lists
them: no path from a client reaches the file system.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated

import pystac
from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, JSONResponse
from geoalchemy2.shape import to_shape
from pystac.extensions.projection import ProjectionExtension
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import mapping

from backend.core.errors import NotFound
from backend.db.models import MetaTileRecord, Run
from backend.db.queries import live_runs, run_or_404

router = APIRouter(prefix="/stac", tags=["STAC"])

COG = str(pystac.MediaType.COG)
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
TILE_ID = r"^E\d{3,5}N\d{3,5}$"
CELL_M = 50.0


def _live_runs(request: Request) -> list[Run]:
    with request.app.state.sessions() as session:
        runs = live_runs(session)
        session.expunge_all()
        return runs


def _run(request: Request, run_id: str) -> tuple[Run, list[MetaTileRecord]]:
    with request.app.state.sessions() as session:
        run = run_or_404(session, run_id, live=True, listing="/stac")
        tiles = [t for t in run.metatiles if t.status == "done"]
        session.expunge_all()
        return run, tiles


def _manifest(request: Request, run_id: str, tile_id: str) -> dict:
    path = request.app.state.settings.layout.manifest(run_id, tile_id)
    if not path.is_file():
        raise NotFound(f"meta-tile {tile_id} of run {run_id} has no outputs")
    return json.loads(path.read_text())


def _url(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + path


def _json(obj: pystac.STACObject) -> JSONResponse:
    return JSONResponse(obj.to_dict(include_self_link=True, transform_hrefs=False),
                        media_type="application/json")


def _file_layers(request: Request) -> dict[str, list[str]]:
    """File name (as in a meta-tile) -> ids of the catalog layers drawn from it."""
    snap = request.app.state.catalog.snapshot()
    out: dict[str, list[str]] = {}
    if snap is not None:
        for info in snap.layers.values():
            if info.species_id is not None:
                out.setdefault(f"species/{info.species_id}.tif", []).append(info.id)
            else:
                out.setdefault(info.path.name.removesuffix(".vrt") + ".tif", []).append(info.id)
    return out


@router.get("", summary="STAC root catalog of the live runs")
@router.get("/catalog.json", include_in_schema=False)
def root_catalog(request: Request) -> JSONResponse:
    cat = pystac.Catalog(id="geoflora", title="GeoFlora", description=(
        "Plant species, EUNIS habitats, biodiversity indicators, plant traits and embeddings at 50 m, as "
        "Cloud-Optimised GeoTIFFs per 25 km meta-tile (EPSG:3035). One collection per live run."))
    cat.set_self_href(_url(request, "/stac/catalog.json"))
    cat.set_root(cat)
    for run in _live_runs(request):
        cat.add_link(pystac.Link("child", _url(request, f"/stac/runs/{run.id}/collection.json"),
                                 media_type="application/json", title=f"run {run.id} ({run.region})"))
    return _json(cat)


@router.get("/runs/{run_id}/collection.json", summary="STAC collection of a live run")
def run_collection(request: Request, run_id: Annotated[str, Path(pattern=RUN_ID)]) -> JSONResponse:
    run, tiles = _run(request, run_id)
    boxes = [transform_bounds("EPSG:3035", "EPSG:4326", *to_shape(t.footprint).bounds) for t in tiles]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)] \
        if boxes else [-180.0, -90.0, 180.0, 90.0]
    created = _utc(run.created_at)
    col = pystac.Collection(
        id=run.id, title=f"GeoFlora run {run.id}",
        description=f"Outputs of GeoFlora run {run.id} over region {run.region}: one item per 25 km meta-tile.",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[created, _utc(run.finished_at)]])),
        license="other", extra_fields={"geoflora:region": run.region})
    col.set_self_href(_url(request, f"/stac/runs/{run.id}/collection.json"))
    col.add_link(pystac.Link("root", _url(request, "/stac/catalog.json"), media_type="application/json"))
    col.add_link(pystac.Link("parent", _url(request, "/stac/catalog.json"), media_type="application/json"))
    for t in tiles:
        col.add_link(pystac.Link("item", _url(request, f"/stac/runs/{run.id}/items/{t.tile_id}.json"),
                                 media_type="application/geo+json", title=t.tile_id))
    return _json(col)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/runs/{run_id}/items/{tile_id}.json", summary="STAC item of one meta-tile: its COGs")
def metatile_item(request: Request, run_id: Annotated[str, Path(pattern=RUN_ID)],
                  tile_id: Annotated[str, Path(pattern=TILE_ID)]) -> JSONResponse:
    run, tiles = _run(request, run_id)
    tile = next((t for t in tiles if t.tile_id == tile_id), None)
    if tile is None:
        raise NotFound(f"run {run_id} has no finished meta-tile {tile_id}")
    manifest = _manifest(request, run_id, tile_id)
    shape = to_shape(tile.footprint)
    geometry = transform_geom("EPSG:3035", "EPSG:4326", mapping(shape))
    left, bottom, right, top = shape.bounds
    item = pystac.Item(id=tile_id, geometry=geometry, bbox=list(transform_bounds("EPSG:3035", "EPSG:4326", *shape.bounds)),
                       datetime=_utc(run.finished_at or run.created_at), properties={"geoflora:run": run_id},
                       collection=run_id)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = "EPSG:3035"
    proj.bbox = [left, bottom, right, top]
    proj.shape = [round((top - bottom) / CELL_M), round((right - left) / CELL_M)]
    proj.transform = [CELL_M, 0.0, left, 0.0, -CELL_M, top]
    layers_of = _file_layers(request)
    for name, size in sorted(manifest["files"].items()):
        if not name.endswith(".tif"):  # other outputs (e.g. the assemblage store) are not COGs
            continue
        key = name.removesuffix(".tif")
        item.add_asset(key, pystac.Asset(
            href=_url(request, f"/stac/runs/{run_id}/files/{tile_id}/{name}"), media_type=COG, roles=["data"],
            title=key, extra_fields={"file:size": size, "geoflora:layers": layers_of.get(name, [])}))
    item.set_self_href(_url(request, f"/stac/runs/{run_id}/items/{tile_id}.json"))
    for rel, path in (("root", "/stac/catalog.json"), ("parent", f"/stac/runs/{run_id}/collection.json"),
                      ("collection", f"/stac/runs/{run_id}/collection.json")):
        item.add_link(pystac.Link(rel, _url(request, path), media_type="application/json"))
    return _json(item)


@router.get("/runs/{run_id}/files/{tile_id}/{name:path}", summary="A COG of a meta-tile (byte ranges supported)",
            response_class=FileResponse)
@router.head("/runs/{run_id}/files/{tile_id}/{name:path}", include_in_schema=False)  # GDAL asks HEAD first
def metatile_file(request: Request, run_id: Annotated[str, Path(pattern=RUN_ID)],
                  tile_id: Annotated[str, Path(pattern=TILE_ID)], name: str) -> FileResponse:
    _run(request, run_id)
    manifest = _manifest(request, run_id, tile_id)
    # only names the pipeline wrote (the manifest) are served; the path is built from them
    if name not in manifest["files"] or not re.fullmatch(r"[A-Za-z0-9_.\-]+\.tif|species/[0-9]+\.tif", name):
        raise NotFound(f"meta-tile {tile_id} of run {run_id} has no file {name!r}")
    path = request.app.state.settings.layout.metatile_dir(run_id, tile_id) / name
    return FileResponse(path, media_type=COG)
