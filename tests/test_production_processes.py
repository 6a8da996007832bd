"""The production deployment as plain processes on one machine: the services of docker-compose.yml
without Docker. A fresh PostGIS database and a Redis database of its own; the migrations job
(`geoflora migrate`); two Celery workers started with the worker image's command; a 2 x 2 meta-tile
region submitted through `geoflora run --executor celery`; then the API as the image runs it
(`geoflora serve --workers 2`) on the same database and data dir, checked over HTTP: health, runs,
an XYZ tile and a WMS map pixel for pixel against the COGs, WMTS from the separate tile cache, and
an area report whose numbers match the COGs and assemblage stores."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry import Polygon

from tests.conftest import REPO, free_port
from tests.pixels import compare_image, decode_png, pixel_centres
from tests.processes import Processes, geoflora, parent, start_server
from tests.processes import wait_for as _wait
from tests.reports_data import cell_mask, polygon
from tests.test_celery_redis import _redis_or_fail

REDIS_URL = "redis://127.0.0.1:6379/12"  # a database of its own (test_celery_redis uses 11), flushed
REGION = "quad"
LAYER = "indicator.richness"
TILES = {"E4200N2800", "E4225N2800", "E4200N2825", "E4225N2825"}
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")

pytestmark = [pytest.mark.slow, pytest.mark.postgis]


def _worker_command() -> list[str]:
    """The worker image's command (docker-compose.yml), with `geoflora` from this environment."""
    import yaml

    command = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["worker"]["command"]
    assert command[:2] == ["geoflora", "worker"]
    return [geoflora(), *command[1:]]


@pytest.fixture()
def processes(tmp_path):
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.close()


@pytest.fixture()
def redis_db():
    """The test's own Redis database, flushed before and after."""
    client = _redis_or_fail(REDIS_URL)
    yield REDIS_URL
    client.flushdb()


@pytest.fixture()
def postgis_db(postgis_url):
    """A fresh database with the postgis extension (what the postgis/postgis image provides)."""
    import psycopg

    with psycopg.connect(postgis_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return postgis_url


@pytest.fixture(scope="module")
def quad_region(tmp_path_factory) -> Path:
    """2 x 2 meta-tiles with the tiny region's flora (same seed and species count: same species)."""
    from inference.data.region import generate_region

    path = tmp_path_factory.mktemp("regions") / REGION
    generate_region(path, seed=7, nx=2, ny=2, n_species=24, n_surveys=200, n_po=200, n_photos=0)
    return path


def _run_pinging_workers(processes, env, cmd, nodes, sessions, run_timeout):
    """Run ``cmd`` (the submission); while a meta-tile is computing, the worker healthcheck of
    docker-compose.yml must get a pong from every node. Returns the submission's output."""
    import yaml

    from backend.db.models import MetaTileRecord

    healthcheck = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["worker"]["healthcheck"]
    ping = healthcheck["test"][1]
    submit = processes.start("submit", cmd, env)

    def running():
        with sessions() as session:
            return session.query(MetaTileRecord).filter_by(status="running").count()

    _wait(lambda: running() or submit.poll() is not None, 120, "a meta-tile to start")
    busy = running()
    for node in nodes:  # the compose command with this node's name for worker@$HOSTNAME
        check = ping.replace("worker@$$HOSTNAME", node)
        done = subprocess.run(["sh", "-c", check], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and f"{node}: OK" in done.stdout, (node, done.stdout, done.stderr)
    assert busy, "the ping was meant to reach a worker in the middle of a meta-tile"
    try:
        submit.wait(run_timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run did not finish in {run_timeout} s:\n{processes.log('submit')[-3000:]}")
    out = processes.log("submit")
    assert submit.returncode == 0, out[-3000:]
    return out


@pytest.mark.timeout(600)
def test_region_through_two_workers_then_served_by_the_api(tmp_path, redis_db, postgis_db, processes, quad_region,
                                                           tiny_sdm):
    # Fixture order matters: the processes are killed first, then the databases go.
    from backend.core.settings import Settings
    from backend.db.engine import make_engine, make_sessionmaker
    from backend.db.models import Run
    from backend.jobs.celery_app import make_celery

    started = time.monotonic()
    data_dir, tile_cache = tmp_path / "data", tmp_path / "tile-cache"
    (data_dir / "regions").mkdir(parents=True)
    shutil.copytree(quad_region, data_dir / "regions" / REGION)  # the shared storage, by path
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOFLORA_")}
    env.update(GEOFLORA_ENVIRONMENT="production", GEOFLORA_ADMIN_TOKEN="e2e-admin-token",
               GEOFLORA_DATABASE_URL=postgis_db, GEOFLORA_BROKER_URL=redis_db, GEOFLORA_DATA_DIR=str(data_dir),
               GEOFLORA_DEVICE="cpu", OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")  # as in the images

    # The migrations job.
    done = subprocess.run([geoflora(), "migrate"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "catalog at revision head" in done.stdout
    engine = make_engine(postgis_db)
    sessions = make_sessionmaker(engine)

    # Two workers, each with the worker image's command; both answer before the run is submitted,
    # so neither can take every meta-tile before the other is up.
    host = socket.gethostname()
    nodes = ["w1@" + host, "w2@" + host]
    workers = {}
    for node in nodes:
        cmd = [a if not a.startswith("--hostname=") else f"--hostname={node.split('@')[0]}@%h" for a in _worker_command()]
        workers[node] = processes.start(node.split("@")[0], cmd, env)
    app = make_celery(Settings(_env_file=None, broker_url=redis_db, data_dir=data_dir))
    _wait(lambda: len(app.control.ping(destination=nodes, timeout=1.0)) == 2, 90, "both workers to answer a ping")

    submit = [geoflora(), "run", "--region", REGION, "--sdm", str(tiny_sdm), "--executor", "celery"]
    out = _run_pinging_workers(processes, env, submit, nodes, sessions, run_timeout=300)
    run_id = re.search(r"run (\S+) is live", out).group(1)
    computed_s = time.monotonic() - started

    # Every meta-tile ran once, on one of the two workers; each worker did some; none lost.
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run.status == "complete" and run.is_live
        tiles = {t.tile_id: (t.status, t.attempts, t.worker) for t in run.metatiles}
    assert set(tiles) == TILES
    by_worker: dict[str, set[str]] = {node: set() for node in nodes}
    for tile_id, (status, attempts, worker) in tiles.items():
        assert status == "done" and attempts == 1, (tile_id, status, attempts)
        hostname, pid = worker.rsplit(":", 1)
        assert hostname == host
        # prefork: the meta-tile ran in a child of one worker's main process
        (owner,) = [n for n, p in workers.items() if int(pid) == p.pid or parent(int(pid)) == p.pid]
        by_worker[owner].add(tile_id)
    assert all(by_worker.values()), by_worker
    assert set.union(*by_worker.values()) == TILES and not set.intersection(*by_worker.values())
    for node in nodes:  # the broker's view agrees: each worker ran exactly its meta-tiles
        log = processes.log(node.split("@")[0])
        assert log.count("geoflora.process_metatile") >= 2 * len(by_worker[node]), log[-2000:]

    # The API as the image runs it: several server processes (gunicorn) on the same database and
    # data dir, MapProxy's cache on a volume of its own.
    port = free_port()
    api_env = {**env, "GEOFLORA_TILE_CACHE_DIR": str(tile_cache), "GEOFLORA_PORT": str(port)}
    start_server(processes, "api", port, 2, api_env)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        _check_api(client, data_dir, tile_cache, run_id)
    total_s = time.monotonic() - started
    print(f"\nproduction processes: run computed in {computed_s:.1f} s, all checks in {total_s:.1f} s; "
          f"tiles per worker {dict((k, sorted(v)) for k, v in by_worker.items())}")


def _check_api(client: httpx.Client, data_dir: Path, tile_cache: Path, run_id: str) -> None:
    health = client.get("/api/health").json()
    assert health == {**health, "status": "ok", "database": "postgresql", "live_run": run_id}
    runs = {r["id"]: r for r in client.get("/api/runs").json()}
    assert runs[run_id]["status"] == "complete" and runs[run_id]["is_live"]
    detail = client.get(f"/api/runs/{run_id}").json()
    assert {t["tile_id"] for t in detail["metatiles"] if t["status"] == "done"} == TILES
    index = REPO / "frontend" / "dist" / "index.html"
    assert index.is_file(), "build the web app first (make frontend): the API serves it at /"
    assert client.get("/").text == index.read_text()

    layer = client.get(f"/api/layers/{LAYER}").json()
    mosaic = data_dir / "runs" / run_id / "mosaics" / f"{LAYER}.vrt"
    legend = layer["legend"]

    # An XYZ tile at the corner of the four meta-tiles, pixel for pixel against the mosaic.
    west, south, east, north = layer["bounds"]
    tile = WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, 13)
    resp = client.get(layer["tiles_url"].format(z=tile.z, x=tile.x, y=tile.y))
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png", resp.text
    img = decode_png(resp.content)
    b = WEB_MERCATOR.xy_bounds(tile)
    xs, ys = pixel_centres((b.left, b.bottom, b.right, b.top), 256, 256)
    stats = compare_image(img, xs, ys, "EPSG:3857", mosaic, legend["colormap"], legend["min"], legend["max"])
    assert stats["n_data"] > 1000 and stats["opaque_where_data"] > 0.99, stats
    assert stats["exact"] > 0.95 and stats["near"] > 0.995, stats

    # WMS GetMap (1.1.1: x, y axis order) across the four meta-tiles in EPSG:3035.
    bbox = (4_219_000.0, 2_819_000.0, 4_231_000.0, 2_831_000.0)
    resp = client.get("/wms", params={"SERVICE": "WMS", "VERSION": "1.1.1", "REQUEST": "GetMap", "LAYERS": LAYER,
                                      "STYLES": "", "SRS": "EPSG:3035", "BBOX": ",".join(map(str, bbox)),
                                      "WIDTH": 240, "HEIGHT": 240, "FORMAT": "image/png", "TRANSPARENT": "TRUE"})
    assert resp.status_code == 200 and resp.content[:8] == b"\x89PNG\r\n\x1a\n", resp.text[:500]
    img = decode_png(resp.content)
    if img.shape[0] == 3:  # fully opaque images may come without alpha
        img = np.concatenate([img, np.full((1, *img.shape[1:]), 255, np.uint8)])
    xs, ys = pixel_centres(bbox, 240, 240)
    stats = compare_image(img, xs, ys, "EPSG:3035", mosaic, legend["colormap"], legend["min"], legend["max"])
    assert stats["n_data"] > 0.9 * 240 * 240 and stats["exact"] > 0.9 and stats["near"] > 0.98, stats

    # WMTS goes through MapProxy's file cache: on the tile-cache volume, not the shared storage.
    tile = WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, 12)
    resp = client.get(f"/wmts/{LAYER}/GLOBAL_WEBMERCATOR/{tile.z}/{tile.x}/{tile.y}.png")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert any((tile_cache / run_id).rglob("*.png")), "no WMTS tile cached in GEOFLORA_TILE_CACHE_DIR"
    assert not (data_dir / "cache" / "mapproxy").exists()

    _check_report(client, data_dir, run_id, mosaic)


def _check_report(client: httpx.Client, data_dir: Path, run_id: str, mosaic: Path) -> None:
    """An irregular area over the four meta-tiles: cells, species cells and richness as the COGs
    and assemblage stores give them."""
    from inference.grid import MetaTile
    from inference.pipeline.assemblage import read_assemblage

    pts = [(4_214_013.0, 2_816_007.0), (4_236_011.0, 2_818_989.0), (4_233_493.0, 2_834_013.0),
           (4_217_007.0, 2_831_511.0)]
    resp = client.post("/api/reports", json=polygon(pts), params={"species_limit": 1000})
    assert resp.status_code == 200, resp.text
    report = resp.json()
    area = Polygon(pts)

    expected_cells, species_cells = 0, {}
    for tile_id in TILES:
        mask = cell_mask(MetaTile.from_id(tile_id), area)
        expected_cells += int(mask.sum())
        a = read_assemblage(data_dir / "runs" / run_id / "metatiles" / tile_id / "assemblage.bin")
        take = np.repeat(mask.ravel(), a.counts)
        counts = np.bincount(a.species[take], minlength=len(a.species_ids))
        for k in np.flatnonzero(counts):
            species_cells[int(a.species_ids[k])] = species_cells.get(int(a.species_ids[k]), 0) + int(counts[k])
    assert report["area"]["cells"] == expected_cells > 100_000
    assert {s["id"]: s["cells"] for s in report["species"]["items"]} == species_cells

    with rasterio.open(mosaic) as src:
        values = src.read(1)
        rows, cols = np.indices(values.shape)
        cx, cy = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
        inside = shapely.contains_xy(area, np.asarray(cx), np.asarray(cy)).reshape(values.shape)
        v = values[inside & (values != src.nodata)].astype(np.float64)
    (rich,) = [e for e in report["indicators"]["items"] if e["id"] == LAYER]
    assert rich["mean"] == pytest.approx(v.mean(), rel=1e-5) and rich["max"] == pytest.approx(v.max(), rel=1e-5)
    assert rich["min"] == pytest.approx(v.min(), rel=1e-5)
