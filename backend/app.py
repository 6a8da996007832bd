"""The one FastAPI process: REST API, TiTiler, MapProxy and the single-page app."""

from __future__ import annotations

from contextlib import asynccontextmanager

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from backend import __version__
from backend.catalog import LiveCatalog
from backend.core.settings import Settings, get_settings
from backend.db.engine import make_engine, make_sessionmaker
from backend.http_errors import add_exception_handlers
from backend.jobs.celery_app import COMPUTE_REPORT, celery_for
from backend.middleware import BodySizeLimit, OWSDispatch, RenderDeadline
from backend.reports.service import ReportService
from backend.routes import habitats, health, indicators, layers, reports, runs, species, stac
from tiles import xyz
from tiles.deadline import DeadlineExceeded
from tiles.mapproxy_app import MapProxyMount
from tiles.titiler_app import mount_titiler
from tiles.xyz import TileCache

DESCRIPTION = """
GeoFlora maps Europe's plants at 50 m: species, EUNIS habitats, biodiversity indicators and plant
traits. Layers are served as XYZ tiles under `/tiles/{layer_id}/...`, as WMS at `/wms` and as WMTS
at `/wmts`; the REST API lives under `/api`.
"""


def _celery_submit(settings: Settings):
    """How background reports reach the Celery workers (settings report_executor 'celery')."""
    if settings.report_executor != "celery":
        return None
    app = celery_for(settings)
    return lambda report_id: app.tasks[COMPUTE_REPORT].delay(report_id)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.db_url)
    sessions = make_sessionmaker(engine)
    catalog = LiveCatalog(sessions, settings.data_dir)
    ows = MapProxyMount(catalog, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # MapProxy's configuration for the live run takes a second or two to build: build it during
        # start-up, so the first WMS request does not spend its render deadline (and slot) on it.
        # In line, not in a thread: imports racing the first requests' imports can fail half-way.
        ows.warm()
        yield

    app = FastAPI(title="GeoFlora", version=__version__, description=DESCRIPTION, docs_url="/docs",
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.catalog = catalog
    app.state.reports = ReportService(settings, sessions, send_to_workers=_celery_submit(settings))
    add_exception_handlers(app)

    @app.exception_handler(DeadlineExceeded)
    async def past_deadline(_request: Request, exc: DeadlineExceeded) -> JSONResponse:
        # the renderer noticed the deadline before the middleware did: the same 503
        return JSONResponse({"detail": f"{exc}; retry in {settings.busy_retry_after_s} s"}, 503,
                            headers={"Retry-After": str(settings.busy_retry_after_s)})

    for module in (health, layers, runs, reports, species, habitats, indicators):
        app.include_router(module.router, prefix="/api")
    app.state.tile_cache = TileCache(settings.tile_cache_mb * 2**20)
    app.include_router(xyz.router)  # before TiTiler: the lean path for the catalog's own rendering
    app.include_router(stac.router)
    mount_titiler(app)

    dist = settings.frontend_dist
    if (dist / "index.html").is_file():
        app.mount("/", StaticFiles(directory=dist, html=True), name="spa")
    else:

        @app.get("/", include_in_schema=False)
        def no_frontend() -> HTMLResponse:
            return HTMLResponse(
                "<h1>GeoFlora</h1><p>The web app is not built: run <code>make run</code>. "
                'The API is at <a href="/docs">/docs</a>.</p>',
                status_code=503,
            )

    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(OWSDispatch, ows_app=WSGIMiddleware(ows, workers=4))
    app.add_middleware(RenderDeadline, render_s=settings.render_timeout_s, report_s=settings.report_timeout_s,
                       slots=settings.render_slots, retry_after_s=settings.busy_retry_after_s)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    return app
