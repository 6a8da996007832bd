"""EUNIS habitats: the hierarchy, with the classes the live run maps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from backend.core.errors import NotFound
from backend.db.models import Habitat
from backend.deps import CatalogDep, SessionDep
from backend.schemas import HabitatNode, error_responses

router = APIRouter(tags=["Habitats"], responses=error_responses(404, 422))


def _mapped_codes(catalog: CatalogDep) -> set[str]:
    snap = catalog.snapshot()
    if snap is None:
        return set()
    return {item["code"] for lid, info in snap.layers.items() if lid.startswith("habitat.l") and info.legend
            for item in info.legend.get("items", []) if item.get("code")}


def _node(h: Habitat, children: dict[str | None, list[Habitat]], mapped: set[str], depth: int) -> HabitatNode:
    kids = sorted(children.get(h.code, []), key=lambda c: c.code) if h.level < depth else []
    return HabitatNode(code=h.code, name=h.name, level=h.level, parent=h.parent, mapped=h.code in mapped,
                       children=[_node(c, children, mapped, depth) for c in kids])


def _children(rows: list[Habitat]) -> dict[str | None, list[Habitat]]:
    out: dict[str | None, list[Habitat]] = {}
    for h in rows:
        out.setdefault(h.parent, []).append(h)
    return out


@router.get("/habitats", response_model=list[HabitatNode], summary="The EUNIS habitat tree")
def habitat_tree(session: SessionDep, catalog: CatalogDep,
                 depth: Annotated[int, Query(ge=1, le=3, description="Deepest level returned.")] = 3,
                 mapped_only: Annotated[bool, Query(description="Only classes (and their ancestors) that the "
                                                              "live run maps.")] = False) -> list[HabitatNode]:
    rows = list(session.scalars(select(Habitat)))
    mapped = _mapped_codes(catalog)
    if mapped_only:
        keep = set(mapped)
        parent = {h.code: h.parent for h in rows}
        for code in list(mapped):
            while parent.get(code):
                code = parent[code]
                keep.add(code)
        rows = [h for h in rows if h.code in keep]
    children = _children(rows)
    return [_node(h, children, mapped, depth) for h in sorted(children.get(None, []), key=lambda h: h.code)]


@router.get("/habitats/{code}", response_model=HabitatNode, summary="One EUNIS habitat and its sub-types")
def habitat_detail(code: Annotated[str, Path(max_length=16, description="EUNIS code, e.g. R22.")],
                   session: SessionDep, catalog: CatalogDep) -> HabitatNode:
    rows = list(session.scalars(select(Habitat)))
    match = [h for h in rows if h.code.upper() == code.upper()]
    if not match:
        raise NotFound(f"unknown habitat {code!r}; see GET /api/habitats")
    return _node(match[0], _children(rows), _mapped_codes(catalog), 3)
