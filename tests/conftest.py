"""Shared fixtures: a tiny generated region, a computed run, a live server, PostGIS."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from backend.core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_region(tmp_path_factory) -> Path:
    """A 1 x 1 meta-tile generated region with few species (generated once per test session)."""
    from inference.data.region import generate_region

    path = tmp_path_factory.mktemp("regions") / "tiny"
    # More surveys than the default density so that a small SDM can learn in a few epochs.
    generate_region(path, seed=7, nx=1, ny=1, n_species=24, n_surveys=1500)
    return path


def make_settings(data_dir: Path, **kw) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None, **kw)


TINY_SDM = dict(widths=(4, 8, 8, 8), patch_size=32)


@pytest.fixture(scope="session")
def tiny_samples(tiny_region):
    from inference.data.region import load_region
    from inference.sdm.dataset import region_samples

    return region_samples(load_region(tiny_region), seed=0, s2_size=TINY_SDM["patch_size"])


@pytest.fixture(scope="session")
def tiny_sdm(tmp_path_factory, tiny_samples) -> Path:
    """A small deep-SDM trained for a few epochs on the tiny region (checkpoint path)."""
    from inference.sdm.train import TrainConfig, train_sdm

    out = tmp_path_factory.mktemp("models") / "sdm.pt"
    config = TrainConfig(epochs=30, lr=5e-3, batch_size=64, model_overrides=TINY_SDM, patience=8)
    train_sdm(tiny_samples, out, config, progress=False, log=lambda *_: None)
    return out


@pytest.fixture()
def cli_data_dir(tiny_region, tmp_path, monkeypatch) -> Path:
    """A data dir holding the tiny region as ``tiny``, made the settings' data dir for CLI tests
    (the settings cache is cleared on the way in and out)."""
    from backend.core.settings import get_settings

    (tmp_path / "regions").mkdir()
    (tmp_path / "regions" / "tiny").symlink_to(tiny_region)
    monkeypatch.setenv("GEOFLORA_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def tiny_botaclip(tmp_path_factory, tiny_region) -> Path:
    """A small BotaCLIP trained briefly on the tiny region (checkpoint path)."""
    from inference.botaclip.train import survey_pairs, train_botaclip
    from inference.data.region import load_region
    from tests.botaclip.test_botaclip import TINY_CNN, tiny_config, tiny_encoder

    region = load_region(tiny_region)
    out = tmp_path_factory.mktemp("models") / "botaclip.pt"
    pairs = survey_pairs(region, seed=0, patch_size=TINY_CNN.patch_size)
    train_botaclip(region, out, tiny_config(epochs=20), encoder=tiny_encoder(), pairs=pairs, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def tiny_plantbert(tmp_path_factory, tiny_region) -> Path:
    """A small Pl@ntBERT over the tiny region's species and habitats, weights seeded, not trained:
    the pipeline tests check plumbing (lists, levels, colour tables), tests/habitat check learning."""
    import torch

    from inference.data.region import load_region
    from inference.habitat.plantbert import PlantBert, Vocab, bert_kwargs, build_classifier
    from tests.habitat.test_plantbert import TINY_BERT

    region = load_region(tiny_region)
    torch.manual_seed(0)
    labels = list(region.meta["habitat_codes"])
    kw = bert_kwargs("demo", len(Vocab.from_region(region)), 30, len(labels), **TINY_BERT)
    pb = PlantBert(build_classifier(kw), Vocab.from_region(region), labels, top_n=30, kwargs=kw)
    return pb.save(tmp_path_factory.mktemp("models") / "plantbert.pt")


@pytest.fixture(scope="session")
def computed(tmp_path_factory, tiny_region, tiny_sdm, tiny_botaclip, tiny_plantbert):
    """Settings and session factory of a data dir whose tiny region has a live run."""
    from backend.db.engine import make_engine, make_sessionmaker, migrate
    from backend.jobs.runs import run_local

    data_dir = tmp_path_factory.mktemp("data")
    port = free_port()
    settings = make_settings(data_dir, port=port)
    migrate(settings.db_url)
    sessions = make_sessionmaker(make_engine(settings.db_url))
    run_id = run_local(settings, sessions, "tiny", tiny_region,
                       {"sdm": tiny_sdm, "plantbert": tiny_plantbert, "botaclip": tiny_botaclip}, progress=False)
    return settings, sessions, run_id


@pytest.fixture(scope="session")
def app(computed):
    from backend.app import create_app

    settings, _, _ = computed
    return create_app(settings)


@pytest.fixture()
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(app, computed) -> str:
    """The app served by uvicorn on a free port (for clients that speak HTTP: OWSLib, GDAL)."""
    import uvicorn

    settings, _, _ = computed
    config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{settings.port}"
    server.should_exit = True
    thread.join(timeout=10)


def postgres_url() -> str | None:
    """URL of a PostgreSQL server for the PostGIS tests; on CI it must exist (no silent skip)."""
    url = os.environ.get("GEOFLORA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=3):
            return url
    except Exception as exc:  # noqa: BLE001
        if ON_CI:
            pytest.fail(f"PostgreSQL is required on CI but unreachable at {url}: {exc}")
        return None


@pytest.fixture()
def postgis_url():
    """A fresh PostGIS database, dropped afterwards."""
    import uuid

    import psycopg

    admin = postgres_url()
    if admin is None:
        pytest.skip("no PostgreSQL server reachable (set GEOFLORA_TEST_POSTGRES_URL)")
    name = f"geoflora_test_{uuid.uuid4().hex[:8]}"
    plain = admin.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
