"""The Celery task of background reports (production: on the workers; see inference/celery_app.py)."""

from __future__ import annotations

from inference.celery_app import celery_app


@celery_app.task(name="geoflora.compute_report", bind=True, autoretry_for=(OSError,), max_retries=3,
                 retry_backoff=True)
def compute_report_task(self, report_id: str) -> str:
    """Compute a stored pending report; returns its final status (done or failed)."""
    from backend.db.engine import make_engine, make_sessionmaker
    from backend.reports.service import ReportService
    from backend.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.db_url)
    try:
        return ReportService(settings, make_sessionmaker(engine)).run_stored(report_id)
    finally:
        engine.dispose()
