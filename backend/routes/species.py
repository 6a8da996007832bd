"""Species: name search (prefix, then typo-tolerant) and detail (attributes, where predicted, layers)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query
from pyproj import Transformer

from backend.core.errors import NotFound
from backend.db.models import Species
from backend.db.queries import live_run
from backend.deps import ReportsDep, SessionDep
from backend.schemas import SEARCH_TEXT, SpeciesDetail, SpeciesHit, SpeciesPlace, error_responses
from inference.grid import CELLS_PER_METATILE, MetaTile

router = APIRouter(tags=["Species"], responses=error_responses(404, 422, 503))

THREATENED = ("VU", "EN", "CR")


@router.get("/species", response_model=list[SpeciesHit], summary="Search species by name")
def search_species(
    session: SessionDep, reports: ReportsDep,
    q: Annotated[str, Query(min_length=1, **SEARCH_TEXT, description="Name or its beginning; typos are tolerated "
                                                                      "(from 3 characters).")],
    limit: Annotated[int, Query(ge=1, le=100, description="Most results.")] = 20,
) -> list[SpeciesHit]:
    """Names starting with `q` first (shortest first), then names with a word starting with `q`, then
    names within a few typos of `q` (1 edit up to 5 characters, 2 up to 9, 3 beyond)."""
    index, rows = reports.name_index(session)
    return [SpeciesHit(id=rows[m.index].id, name=rows[m.index].name, family=rows[m.index].family,
                       genus=rows[m.index].genus, iucn=rows[m.index].iucn, match=m.kind, distance=m.distance)
            for m in index.search(q, limit)]


@router.get("/species/{species_id}", response_model=SpeciesDetail, summary="A species: attributes, where it is "
            "predicted in the live run, its layer ids")
def species_detail(species_id: Annotated[int, Path(ge=0, le=2**31 - 1, description="Species id.")],
                   session: SessionDep, reports: ReportsDep) -> SpeciesDetail:
    sp = session.get(Species, species_id)
    if sp is None:
        raise NotFound(f"unknown species {species_id}; search with GET /api/species?q=...")
    detail = SpeciesDetail(id=sp.id, name=sp.name, family=sp.family, genus=sp.genus, iucn=sp.iucn,
                           eu_directive=sp.eu_directive, threatened=sp.iucn in THREATENED, invasive=sp.invasive,
                           endemic=sp.endemic, tree=sp.tree, woody=sp.woody, attributes=dict(sp.attributes or {}))
    run = live_run(session)
    if run is None:
        return detail
    detail.run = run.id
    detail.layers = sorted(lyr.id for lyr in run.layers if lyr.species_id == species_id)
    index = reports.index(run)
    hit = np.flatnonzero(index.species_ids == species_id)
    if not len(hit):
        return detail
    k = int(hit[0])
    to_wgs = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    for tile_id in index.tile_ids:
        t = index.tile(tile_id)
        cells = int(t.sp_total[k])
        if cells:
            detail.cells += cells
            detail.predicted_in.append(SpeciesPlace(
                tile_id=tile_id, cells=cells, coverage=cells / CELLS_PER_METATILE ** 2,
                mean_probability=float(t.sp_total_codes[k]) / cells / index.code_scale,
                bounds=list(to_wgs.transform_bounds(*MetaTile.from_id(tile_id).bounds))))
    return detail
