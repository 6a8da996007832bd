"""Indicators and trait maps of the live run, each with its uncertainty layer."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import CatalogDep
from backend.schemas import IndicatorInfo, error_responses

router = APIRouter(tags=["Indicators"], responses=error_responses(422))


@router.get("/indicators", response_model=list[IndicatorInfo], summary="Indicators and traits of the live run")
def list_indicators(catalog: CatalogDep) -> list[IndicatorInfo]:
    """The biodiversity indicators (mean per cell, with the 2-sigma half-width layer) and the
    community-weighted trait maps (with their spread layer); empty when no run is live."""
    snap = catalog.snapshot()
    if snap is None:
        return []
    layers = sorted(snap.layers.values(), key=lambda i: i.id)
    out = []
    for info in layers:
        if info.kind not in ("indicator", "trait"):
            continue
        partner = [o.id for o in layers if o.path == info.path and o.kind == f"{info.kind}-uncertainty"]
        out.append(IndicatorInfo(id=info.id, kind=info.kind, title=info.title, description=info.description,
                                 units=info.units, uncertainty_layer=partner[0] if partner else None,
                                 tiles_url=info.tiles_path()))
    return out
