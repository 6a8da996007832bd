"""Celery on Redis with real worker processes: kill a worker mid-meta-tile, start another, and the
region completes with no lost and no duplicated meta-tile and no partial file visible."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ON_CI, REPO, make_settings
from tests.processes import wait_for as _wait

REDIS_URL = "redis://127.0.0.1:6379/11"  # a database of its own, flushed by the test


def _redis_or_fail(url: str = REDIS_URL):
    """A client of the Redis database ``url``, flushed; on CI a missing Redis fails the test."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        if ON_CI:
            pytest.fail(f"Redis must run at 127.0.0.1:6379 on CI (make test starts it): {exc}")
        pytest.skip("no Redis at 127.0.0.1:6379")
    client.flushdb()
    return client


@pytest.fixture(scope="module")
def region_2x1(tmp_path_factory) -> Path:
    """Two meta-tiles with the tiny region's flora (same seed and species count: same species)."""
    from inference.data.region import generate_region

    path = tmp_path_factory.mktemp("regions") / "pair"
    generate_region(path, seed=7, nx=2, ny=1, n_species=24, n_surveys=200, n_po=200, n_photos=0)
    return path


def _worker(env: dict, name: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "backend.jobs.worker", "worker", "--pool", "solo",
           "--concurrency", "1", "--without-gossip", "--without-mingle", "--without-heartbeat",
           "-n", f"{name}@%h", "--loglevel", "INFO"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _tiles(sessions, run_id):
    from backend.db.models import Run

    with sessions() as session:
        run = session.get(Run, run_id)
        return run.status, run.is_live, {t.tile_id: (t.status, t.attempts, t.worker) for t in run.metatiles}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_worker_mid_metatile_and_a_new_worker_completes_the_region(tmp_path, region_2x1, tiny_sdm):
    from backend.core.paths import DataLayout
    from backend.db.engine import make_engine, make_sessionmaker, migrate
    from tiles.cog import is_valid_cog

    _redis_or_fail()
    data_dir = tmp_path / "data"
    settings = make_settings(data_dir, broker_url=REDIS_URL, task_visibility_timeout=5)
    migrate(settings.db_url)
    sessions = make_sessionmaker(make_engine(settings.db_url))
    env = {**os.environ, "GEOFLORA_DATA_DIR": str(data_dir), "GEOFLORA_BROKER_URL": REDIS_URL,
           "GEOFLORA_TASK_VISIBILITY_TIMEOUT": "5", "GEOFLORA_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}

    from backend.jobs.celery_app import submit_run

    run_id, result = submit_run(settings, sessions, "pair", region_2x1, {"sdm": tiny_sdm})
    first = _worker(env, "first", tmp_path / "first.log")
    try:
        # Wait until the first worker is inside a meta-tile, give it a moment, then kill it.
        victim = _wait(lambda: next((t for t, (s, _, _) in _tiles(sessions, run_id)[2].items() if s == "running"),
                                    None), 240, "the first worker to start a meta-tile")
        time.sleep(1.0)
        assert _tiles(sessions, run_id)[2][victim][0] == "running", "the meta-tile finished before the kill"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    # Nothing half-written is visible: every visible file is a complete COG.
    folder = DataLayout(data_dir).metatile_dir(run_id, victim)
    visible = list(folder.glob("*.tif")) if folder.is_dir() else []
    assert all(is_valid_cog(p) for p in visible)
    assert _tiles(sessions, run_id)[0] == "running"

    second = _worker(env, "second", tmp_path / "second.log")
    try:
        _wait(lambda: _tiles(sessions, run_id)[0] == "complete", 600, "the second worker to finish the run")
        assert result.get(timeout=60) == run_id
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(60)

    status, live, tiles = _tiles(sessions, run_id)
    assert status == "complete" and live
    assert set(tiles) == {"E4200N2800", "E4225N2800"}
    for tile_id, (state, attempts, _node) in tiles.items():
        assert state == "done"
        # The killed meta-tile was started twice (once per worker); the other exactly once.
        assert attempts == (2 if tile_id == victim else 1), (tile_id, attempts)
        folder = DataLayout(data_dir).metatile_dir(run_id, tile_id)
        assert not list(folder.glob(".*.tmp")), "temporary files left behind"
        assert all(is_valid_cog(p) for p in folder.glob("*.tif"))
    # Every layer of the run is registered and points at an existing mosaic.
    from sqlalchemy import select

    from backend.db.models import Layer

    with sessions() as session:
        layers = session.scalars(select(Layer).where(Layer.run_id == run_id)).all()
        assert {lay.id for lay in layers} >= {"indicator.richness", "indicator.status.most"}
        assert all((data_dir / lay.path).is_file() for lay in layers)
