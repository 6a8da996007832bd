"""The catalog queries more than one module asks: the live run, a run or 404."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.core.errors import NotFound
from backend.db.models import Run


def live_run(session: Session) -> Run | None:
    """The run every map service and report serves (at most one is live)."""
    return session.scalars(select(Run).where(Run.is_live.is_(True))).first()


def live_runs(session: Session) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.is_live.is_(True)).order_by(Run.id)).all())


def run_or_404(session: Session, run_id: str, live: bool = False, listing: str = "GET /api/runs") -> Run:
    """The run ``run_id`` (only if live, with ``live``), or NotFound naming it and ``listing``."""
    run = session.get(Run, run_id)
    if live and (run is None or not run.is_live):
        raise NotFound(f"no live run {run_id!r}; see {listing}")
    if run is None:
        raise NotFound(f"unknown run {run_id!r}; see {listing}")
    return run


def live_run_for(sessions: sessionmaker[Session], region_name: str) -> str | None:
    """Id of the live, complete run over ``region_name`` (None: compute one)."""
    with sessions() as session:
        return session.scalars(
            select(Run.id).where(Run.region == region_name, Run.is_live.is_(True), Run.status == "complete")
        ).first()
