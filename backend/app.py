"""The one FastAPI process: REST API, TiTiler, MapProxy and the single-page app."""

from __future__ import annotations

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from backend import __version__
from backend.catalog import LiveCatalog
from backend.db.engine import make_engine, make_sessionmaker
from backend.errors import add_exception_handlers
from backend.reports.service import ReportService
from backend.routes import habitats, health, indicators, layers, reports, runs, species
from backend.settings import Settings, get_settings
from tiles.mapproxy_app import MapProxyMount
from tiles import stac, xyz
from tiles.titiler_app import mount_titiler
from tiles.xyz import TileCache

DESCRIPTION = """
GeoFlora maps Europe's plants at 50 m: species, EUNIS habitats, biodiversity indicators and plant
traits. Layers are served as XYZ tiles under `/tiles/{layer_id}/...`, as WMS at `/wms` and as WMTS
at `/wmts`; the REST API lives under `/api`.
"""


class BodySizeLimit:
    """Reject request bodies above ``limit`` bytes with 413 before reading them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                resp = JSONResponse(
                    {"detail": f"request body too large: at most {self.limit} bytes are accepted"}, 413
                )
                await resp(scope, receive, send)
                return
            received = 0

            async def limited_receive():
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
                return message

            try:
                await self.app(scope, limited_receive, send)
            except _BodyTooLarge:
                resp = JSONResponse(
                    {"detail": f"request body too large: at most {self.limit} bytes are accepted"}, 413
                )
                await resp(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


OWS_PREFIXES = ("/wms", "/wmts", "/service")


class OWSDispatch:
    """Send ``/wms``, ``/wmts`` and ``/service`` (with or without a trailing path) to MapProxy."""

    def __init__(self, app: ASGIApp, ows_app: ASGIApp) -> None:
        self.app, self.ows_app = app, ows_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix in OWS_PREFIXES:
                if path == prefix or path.startswith(prefix + "/"):
                    await self.ows_app(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.db_url)
    sessions = make_sessionmaker(engine)
    catalog = LiveCatalog(sessions, settings.data_dir)

    app = FastAPI(title="GeoFlora", version=__version__, description=DESCRIPTION, docs_url="/docs")
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.catalog = catalog
    app.state.reports = ReportService(settings, sessions)
    add_exception_handlers(app)

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
    app.add_middleware(OWSDispatch, ows_app=WSGIMiddleware(MapProxyMount(catalog, settings), workers=4))
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    return app
