"""``geoflora serve`` and ``seed``: the server processes and the WMTS caches."""

from __future__ import annotations

import click
from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker

from backend.app import create_app
from backend.catalog import LiveCatalog
from backend.cli.base import main, sessions_for
from backend.core.settings import Settings, get_settings
from tiles.seed import seed_low_zooms


def _print_urls(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    click.echo("\nGeoFlora is running:")
    click.echo(f"  map              {base}/")
    click.echo(f"  API docs         {base}/docs")
    click.echo(f"  WMS capabilities {base}/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0")
    click.echo(f"  WMTS capabilities {base}/wmts/1.0.0/WMTSCapabilities.xml\n")


@main.command()
@click.option("--layer", "layer_ids", multiple=True, help="Layer id to seed (repeatable; default: every layer).")
@click.option("--max-zoom", type=click.IntRange(0, 16), default=10, show_default=True,
              help="Deepest Web Mercator zoom; the LAEA and WGS84 grids go to the matching resolution.")
@click.option("--grid", "grids", multiple=True, type=click.Choice(["GLOBAL_WEBMERCATOR", "LAEA_EUROPE", "WGS84"]),
              help="Tile grid to seed (repeatable; default: all three).")
@click.option("--concurrency", type=int, default=2, show_default=True, help="Parallel seeding processes.")
def seed(layer_ids, max_zoom, grids, concurrency) -> None:
    """Fill the WMTS file caches of the live run at low zooms (the caches of a run are dropped
    when another run goes live)."""
    settings = get_settings()
    snap = LiveCatalog(sessions_for(settings), settings.data_dir).snapshot()
    if snap is None:
        raise click.ClickException("no run is live yet: compute a region first (geoflora run)")
    try:
        levels = seed_low_zooms(settings, snap, list(layer_ids) or None, max_zoom, concurrency, list(grids) or None)
    except Exception as exc:  # unknown layer ids and the like
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seeded run {snap.run_id}: " + ", ".join(f"{g} to level {n}" for g, n in levels.items()))


@main.command()
@click.option("--host", default=None, help="Bind address (default from settings).")
@click.option("--port", type=int, default=None, help="Port (default from settings).")
@click.option("--workers", type=int, default=None,
              help="Server processes (default GEOFLORA_WEB_WORKERS), supervised by gunicorn.")
def serve(host, port, workers) -> None:
    """Serve the map, the API, XYZ tiles, WMS and WMTS."""
    settings = get_settings()
    serve_forever(settings, host, port, workers)


def serve_forever(settings: Settings, host=None, port=None, workers: int | None = None) -> None:
    """gunicorn with uvicorn workers: each process serves everything; a process whose event loop
    stops answering for GEOFLORA_WORKER_TIMEOUT_S is killed and replaced."""
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.web_workers
    _print_urls(get_settings().model_copy(update={"host": host, "port": port}))
    click.echo(f"{workers} server process(es) under gunicorn, each restarted after "
               f"{settings.worker_timeout_s} s without a heartbeat")

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}", "workers": workers, "worker_class": "backend.cli.serve.HeartbeatWorker",
                "timeout": settings.worker_timeout_s, "graceful_timeout": 10, "keepalive": 5,
                "loglevel": "warning", "accesslog": None,
                # the heartbeat starts at the fork, not when the server loop first ticks: a process
                # that hangs while it starts up is replaced too (gunicorn alone never times it out)
                "post_fork": _heartbeat_at_fork,
            }.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app()  # in each worker process: no app, engine or connection crosses the fork

    # The libraries are imported with this module, once, before the fork (the app itself, its
    # engine and connections are made in each process): a new or replacement process starts
    # serving in about a second.
    Server().run()


class HeartbeatWorker(UvicornWorker):
    """A uvicorn worker whose event loop tells gunicorn it is alive eight times per worker timeout.
    (uvicorn's own worker does so once per timeout, so a healthy process's heartbeat reaches the
    timeout itself: gunicorn could kill it, and kills a hung one anywhere from 0 to one timeout.)"""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_notify = max(self.timeout / 8, 0.25)


def _heartbeat_at_fork(_server, worker) -> None:
    worker.notify()
