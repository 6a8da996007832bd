from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter

from backend.core.layers import LayerInfo
from backend.deps import CatalogDep
from backend.schemas import LayerList, LayerOut, RunRef
from tiles.mapproxy_app import layer_bounds_wgs84

router = APIRouter(tags=["Layers"])

# 50 m cells are ~2 screen pixels at zoom 12 and ~1 at zoom 13 (web mercator at 45-55 deg N).
NATIVE_ZOOM = 13


@lru_cache(maxsize=4096)
def _bounds(path: Path, _mtime: float) -> tuple[float, ...]:
    return tuple(layer_bounds_wgs84(path))


def layer_out(info: LayerInfo) -> LayerOut:
    return LayerOut(
        id=info.id,
        kind=info.kind,
        title=info.title,
        description=info.description,
        units=info.units,
        tiles_url=info.tiles_path(),
        wms_layer=info.id,
        bounds=list(_bounds(info.path, info.path.stat().st_mtime)),
        minzoom=5,
        maxzoom=NATIVE_ZOOM + 3,
        legend=info.legend,
        species_id=info.species_id,
    )


@router.get("/layers", response_model=LayerList, summary="Layers of the live run")
def list_layers(catalog: CatalogDep) -> LayerList:
    """Every map layer of the live run, with its XYZ URL template, WMS name, bounds and legend."""
    snap = catalog.snapshot()
    if snap is None:
        return LayerList(run=None, layers=[])
    layers = [layer_out(info) for info in sorted(snap.layers.values(), key=lambda i: (i.kind, i.id))]
    return LayerList(run=RunRef(id=snap.run_id, region=snap.region, created_at=snap.created_at), layers=layers)


@router.get("/layers/{layer_id}", response_model=LayerOut, summary="One layer of the live run")
def get_layer(layer_id: str, catalog: CatalogDep) -> LayerOut:
    return layer_out(catalog.layer(layer_id))
