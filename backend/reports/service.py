"""Reports end to end: resolve the run, check the area against it, answer from the store or compute
(now, or in the background for large areas), store the result in the catalog."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from geoalchemy2.shape import from_shape
from pyproj import Transformer
from shapely.geometry import box
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.core.errors import InvalidInput, NoLiveRun, NotFound
from backend.core.settings import Settings
from backend.db.models import Report, Run, Species, utcnow
from backend.db.queries import live_run, run_or_404
from backend.reports.aggregate import area_sums
from backend.reports.content import SpeciesTable, build_report
from backend.reports.geometry import Area, parse_area
from backend.reports.index import VERSION as INDEX_VERSION
from backend.reports.index import RunIndex, band_specs, build_index, index_version, run_index_dir
from backend.reports.search import NameIndex
from inference.grid import CELL_M, MetaTile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    """What POST /api/reports answers: the stored row's state and, when done, the report."""

    report_id: str
    status: str
    report: dict | None = None
    error: str | None = None


def status_body(row: Report) -> dict:
    return {"id": row.id, "status": row.status, "run": row.run_id, "area_km2": row.area_km2,
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "seconds": row.seconds, "error": row.error, "report_url": f"/api/reports/{row.id}"}


class ReportService:
    """One per server process: caches each run's index and species table."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 send_to_workers: Callable[[str], None] | None = None) -> None:
        """``send_to_workers(report_id)`` sends a stored pending report to the Celery workers (settings
        ``report_executor`` 'celery'; the app factory passes it); otherwise a thread computes it."""
        self.settings = settings
        self.sessions = sessions
        self.send_to_workers = send_to_workers
        self._indexes: dict[str, RunIndex] = {}
        self._tables: dict[str, SpeciesTable] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._names: tuple[int, NameIndex, list] | None = None

    # --- runs and their index -------------------------------------------------------------------
    def resolve_run(self, session: Session, run_id: str | None) -> Run:
        if run_id is None:
            run = live_run(session)
            if run is None:
                raise NoLiveRun("no run is live yet: compute a region first (geoflora compute)")
            return run
        run = run_or_404(session, run_id)
        if run.status != "complete":
            raise InvalidInput(f"run {run_id!r} is not complete (status {run.status}): reports need a finished run")
        return run

    def index(self, run: Run) -> RunIndex:
        """The run's report index, built on first use."""
        with self._lock:
            idx = self._indexes.get(run.id)
        if idx is not None:
            return idx
        if index_version(run_index_dir(self.settings.data_dir, run.id)) != INDEX_VERSION:
            t0 = time.perf_counter()
            build_index(self.settings.data_dir, run.id, [t.tile_id for t in run.metatiles], band_specs(run.layers))
            log.info("report index of run %s built in %.1f s", run.id, time.perf_counter() - t0)
        idx = RunIndex(self.settings.data_dir, run.id)
        with self._lock:
            self._indexes[run.id] = idx
        return idx

    def species_table(self, session: Session, run_id: str, index: RunIndex) -> SpeciesTable:
        with self._lock:
            table = self._tables.get(run_id)
        if table is None:
            rows = session.scalars(select(Species)).all()
            table = SpeciesTable.from_rows(index.species_ids, rows)
            with self._lock:
                self._tables[run_id] = table
        return table

    def name_index(self, session: Session) -> tuple[NameIndex, list]:
        """Search index over the catalog's species names (rebuilt when the species table changes)."""
        n = session.scalar(select(func.count()).select_from(Species))
        with self._lock:
            cached = self._names
        if cached is None or cached[0] != n:
            rows = session.execute(select(Species.id, Species.name, Species.family, Species.genus, Species.iucn)
                                   .order_by(Species.id)).all()
            cached = (n, NameIndex([r.name for r in rows]), rows)
            with self._lock:
                self._names = cached
        return cached[1], cached[2]

    def check_overlap(self, run: Run, area: Area) -> None:
        tiles = [MetaTile.from_id(t.tile_id) for t in run.metatiles]
        if not tiles:
            raise InvalidInput(f"run {run.id!r} has no meta-tiles")
        if not any(area.grid.intersects(box(*t.bounds)) for t in tiles):
            left = min(t.x0 for t in tiles)
            bottom = min(t.y0 for t in tiles)
            right = max(t.bounds[2] for t in tiles)
            top = max(t.bounds[3] for t in tiles)
            to_wgs = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
            w, s, e, n = to_wgs.transform_bounds(left, bottom, right, top)
            raise InvalidInput(f"the area is outside the mapped region: run {run.id!r} covers longitude "
                               f"{w:.3f} to {e:.3f}, latitude {s:.3f} to {n:.3f} (WGS84)")

    # --- computing ------------------------------------------------------------------------------
    def compute(self, session: Session, run: Run, area: Area, report_id: str) -> dict:
        t0 = time.perf_counter()
        index = self.index(run)
        # exact quantiles need every cell's values: only for areas of at most report_exact_cells cells
        small = area.grid.area / CELL_M ** 2 <= self.settings.report_exact_cells
        sums = area_sums(index, area.grid, keep_values=small)
        if not sums.n_cells:
            raise InvalidInput("the area covers no cell centre of the mapped region (cells are 50 m): draw a larger "
                               "area inside the mapped region")
        body = build_report(index, self.species_table(session, run.id, index), sums, area.area_km2)
        seconds = time.perf_counter() - t0
        return {"id": report_id, "status": "done", "run": {"id": run.id, "region": run.region},
                "geometry": area.geojson, "seconds": round(seconds, 4), **body}

    def submit(self, doc: object, run_id: str | None) -> Submitted:
        """Check an area; answer from the store, compute it now, or start it in the background."""
        s = self.settings
        area = parse_area(doc, s.max_vertices, s.max_area_km2)
        with self.sessions() as session:
            run = self.resolve_run(session, run_id)
            self.check_overlap(run, area)
            report_id = area.report_id(run.id)
            row = session.get(Report, report_id)
            if row is not None and row.status == "done":
                return Submitted(report_id, "done", row.result)
            if row is not None and row.status in ("pending", "running"):
                return Submitted(report_id, row.status)
            background = area.area_km2 > s.report_async_km2
            if not background:
                result = self.compute(session, run, area, report_id)
                self._save(session, report_id, run.id, area, "done", result=result, seconds=result["seconds"])
                return Submitted(report_id, "done", result)
            self._save(session, report_id, run.id, area, "pending")
        self._dispatch(report_id)
        return Submitted(report_id, "pending")

    def _save(self, session: Session, report_id: str, run_id: str, area: Area, status: str, **values) -> None:
        row = session.get(Report, report_id)
        if row is None:
            row = Report(id=report_id, run_id=run_id, area_km2=area.area_km2, geometry=area.geojson,
                         footprint=from_shape(area.wgs84, srid=4326))
            session.add(row)
        row.status, row.error = status, None
        row.created_at = utcnow()
        row.finished_at = utcnow() if status == "done" else None
        for k, v in values.items():
            setattr(row, k, v)
        try:
            session.commit()
        except IntegrityError:  # the same area posted twice at once: the other request stored it
            session.rollback()

    def _dispatch(self, report_id: str) -> None:
        if self.settings.report_executor == "celery":
            if self.send_to_workers is None:
                raise RuntimeError("report_executor is 'celery' but this ReportService was given no send_to_workers")
            self.send_to_workers(report_id)
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report")
        self._pool.submit(self.run_stored, report_id)

    def run_stored(self, report_id: str) -> str:
        """Compute a stored pending report (background thread or Celery task); returns its status."""
        with self.sessions() as session:
            row = session.get(Report, report_id)
            if row is None:
                raise NotFound(f"unknown report {report_id!r}")
            if row.status == "done":
                return "done"
            row.status = "running"
            session.commit()
            try:
                run = self.resolve_run(session, row.run_id)
                area = parse_area(row.geometry, 10**9, float("inf"))  # checked when it was posted
                result = self.compute(session, run, area, report_id)
            except Exception as exc:  # noqa: BLE001 - recorded for the client, logged for the operator
                log.exception("report %s failed", report_id)
                row.status, row.error, row.finished_at = "failed", f"{type(exc).__name__}: {exc}", utcnow()
                session.commit()
                return "failed"
            row.status, row.result, row.seconds, row.finished_at = "done", result, result["seconds"], utcnow()
            session.commit()
            return "done"

    def get(self, report_id: str) -> Report:
        with self.sessions() as session:
            row = session.get(Report, report_id)
            if row is None:
                raise NotFound(f"unknown report {report_id!r}: POST the area to /api/reports to make it")
            session.expunge(row)
            return row

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
