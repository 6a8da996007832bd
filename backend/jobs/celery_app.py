"""Celery: Redis in production, an embedded SQLite broker by default (no server to install).

The app is built by :func:`make_celery` from the settings; nothing builds one at import time (the
``celery`` command line imports :mod:`backend.jobs.worker`, which does). Tasks acknowledge late (a
worker killed mid-meta-tile leaves the message for another worker) and are idempotent (a finished
meta-tile is skipped), so a region completes with nothing lost and nothing computed twice into a
visible file. Clients send tasks by name, so they need no task code.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from celery import Celery, chord
from kombu.transport import sqlalchemy as kombu_sqla
from tqdm import tqdm

from backend.core.errors import RunError
from backend.core.settings import Settings, get_settings
from backend.db.engine import make_engine, make_sessionmaker
from backend.db.models import Run
from backend.reports.service import ReportService

# The SQLAlchemy transport polls once a second; its polling_interval cannot be passed through
# broker_transport_options (they reach create_engine), so it is set on the transport class.
kombu_sqla.Transport.polling_interval = 0.1

PROCESS_METATILE = "geoflora.process_metatile"
FINALIZE_RUN = "geoflora.finalize_run"
COMPUTE_REPORT = "geoflora.compute_report"


def make_celery(settings: Settings) -> Celery:
    """A Celery app on ``settings``' broker, with GeoFlora's tasks registered."""
    if settings.celery_broker.startswith("sqla+sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("geoflora", broker=settings.celery_broker, backend=settings.celery_backend)
    if settings.celery_broker.startswith(("redis://", "rediss://")):
        # A task taken by a worker that died unacknowledged goes back to the queue after this long.
        app.conf.broker_transport_options = {"visibility_timeout": settings.task_visibility_timeout}
        app.conf.result_backend_transport_options = {"visibility_timeout": settings.task_visibility_timeout}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        result_extended=True,
    )
    _register_tasks(app)
    return app


_apps: dict[tuple, Celery] = {}


def celery_for(settings: Settings) -> Celery:
    """One app per broker and result backend (a process sending tasks keeps its connection pool)."""
    key = (settings.celery_broker, settings.celery_backend, settings.task_visibility_timeout)
    if key not in _apps:
        _apps[key] = make_celery(settings)
    return _apps[key]


def _worker_sessions():
    """The settings and catalog sessions of a worker process (read from its environment)."""
    settings = get_settings()
    return settings, _sessionmaker(settings.db_url)


@lru_cache(maxsize=4)
def _sessionmaker(db_url: str):
    return make_sessionmaker(make_engine(db_url))


def _register_tasks(app: Celery) -> None:
    @app.task(name=PROCESS_METATILE, bind=True, autoretry_for=(OSError,), max_retries=3, retry_backoff=True)
    def process_metatile_task(self, run_id: str, tile_id: str) -> str:
        from backend.jobs.runs import process_metatile  # torch: loaded by the worker, not by API start-up

        settings, sessions = _worker_sessions()
        return process_metatile(settings, sessions, run_id, tile_id)

    @app.task(name=FINALIZE_RUN)
    def finalize_run_task(_results, run_id: str) -> str:
        from backend.jobs.runs import finalize_run  # torch: loaded by the worker, not by API start-up

        settings, sessions = _worker_sessions()
        finalize_run(settings, sessions, run_id)
        return run_id

    @app.task(name=COMPUTE_REPORT, bind=True, autoretry_for=(OSError,), max_retries=3, retry_backoff=True)
    def compute_report_task(self, report_id: str) -> str:
        """Compute a stored pending report; returns its final status (done or failed)."""
        settings, sessions = _worker_sessions()
        return ReportService(settings, sessions).run_stored(report_id)


def submit_run(settings: Settings, sessions, region_name: str, region_path: Path,
               checkpoints: Mapping[str, Path | None]):
    """Create a run (``checkpoints``: ``{kind: path}`` of its models) and fan it out over the
    workers: one task per meta-tile, then the finaliser.

    Returns the run id and the chord's result handle.
    """
    from backend.jobs.runs import create_run  # torch: the run's profile needs the models

    run_id = create_run(settings, sessions, region_name, region_path, checkpoints)
    with sessions() as session:
        tiles = [t.tile_id for t in session.get(Run, run_id).metatiles]
    app = celery_for(settings)
    header = [app.signature(PROCESS_METATILE, args=(run_id, t)) for t in tiles]
    result = chord(header, app=app)(app.signature(FINALIZE_RUN, args=(run_id,)))
    return run_id, result


def wait_for_run(sessions, run_id: str, result, timeout: float = 3600, progress: bool = True,
                 poll: float = 0.5) -> None:
    """Follow a submitted run in the catalog (a progress bar of done meta-tiles) until it is live."""
    deadline = time.monotonic() + timeout
    with sessions() as session:
        total = len(session.get(Run, run_id).metatiles)
    bar = tqdm(total=total, desc=f"run {run_id}", unit="meta-tile", disable=not progress)
    try:
        while True:
            with sessions() as session:
                run = session.get(Run, run_id)
                done = sum(t.status == "done" for t in run.metatiles)
                failed = [f"{t.tile_id}: {t.error}" for t in run.metatiles if t.status == "failed"]
                status = run.status
            bar.update(done - bar.n)
            if status == "complete":
                return
            if result.failed():
                result.get(propagate=True)  # raises the task's error
            if failed and result.ready():
                raise RunError(f"run {run_id} failed: {'; '.join(failed)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} not complete after {timeout:.0f} s ({done}/{total} meta-tiles)")
            time.sleep(poll)
    finally:
        bar.close()


def run_with_celery(settings: Settings, sessions, region_name: str, region_path: Path,
                    checkpoints: Mapping[str, Path | None], timeout: float = 3600, progress: bool = True) -> str:
    """Fan a new run out over the workers and wait, with a progress bar, until it is live."""
    run_id, result = submit_run(settings, sessions, region_name, region_path, checkpoints)
    wait_for_run(sessions, run_id, result, timeout=timeout, progress=progress)
    return run_id
