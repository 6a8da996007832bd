from fastapi import APIRouter
from geoalchemy2.shape import to_shape
from sqlalchemy import select

from backend.db.models import Run
from backend.db.queries import run_or_404
from backend.deps import SessionDep
from backend.schemas import MetaTileState, RunDetail, RunSummary

router = APIRouter(tags=["Runs"])


@router.get("/runs", response_model=list[RunSummary], summary="All runs, newest first")
def list_runs(session: SessionDep) -> list[RunSummary]:
    runs = session.scalars(select(Run).order_by(Run.created_at.desc())).all()
    return [RunSummary.model_validate(r, from_attributes=True) for r in runs]


@router.get("/runs/{run_id}", response_model=RunDetail, summary="A run and the state of each meta-tile")
def get_run(run_id: str, session: SessionDep) -> RunDetail:
    run = run_or_404(session, run_id)
    tiles = [
        MetaTileState(
            tile_id=t.tile_id,
            status=t.status,
            bounds_3035=list(to_shape(t.footprint).bounds),
            error=t.error,
            attempts=t.attempts or 0,
            worker=t.worker,
            updated_at=t.updated_at,
        )
        for t in run.metatiles
    ]
    done = sum(t.status == "done" for t in tiles)
    summary = RunSummary.model_validate(run, from_attributes=True)
    return RunDetail(**summary.model_dump(), metatiles=tiles, progress=done / len(tiles) if tiles else 0.0)
