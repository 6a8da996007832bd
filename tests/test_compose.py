"""docker-compose.yml as `docker-compose config` resolves it with a .env made from .env.example:
the services, their commands (real `geoflora` commands), healthchecks, volumes, GPU reservation,
and settings the processes accept. No Docker engine is needed: `config` only reads the files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ON_CI, REPO

SERVICES = {"postgis", "redis", "migrations", "api", "worker"}
GEOFLORA = ("migrations", "api", "worker")


def _compose_config(project_dir, env_text: str) -> subprocess.CompletedProcess:
    """`docker-compose config` of the repository's compose file with ``env_text`` as its .env."""
    exe = shutil.which("docker-compose")
    if exe is None:
        if ON_CI:
            pytest.fail("docker-compose must be installed on CI (scripts/system-deps.sh --test installs it)")
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    (project_dir / ".env").write_text(env_text)
    # The project directory holds the .env (for interpolation and env_file); the file is the repo's.
    return subprocess.run([exe, "--project-directory", str(project_dir), "-f", str(REPO / "docker-compose.yml"),
                           "config"], capture_output=True, text=True, timeout=60)


def _config(project_dir, **overrides: str) -> dict:
    env = (REPO / ".env.example").read_text()
    for key, value in overrides.items():
        env = re.sub(rf"^{key}=.*$", f"{key}={value}", env, flags=re.M)
    done = _compose_config(project_dir, env)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> source of every volume of a service (short or long syntax), with ":ro"
    appended to read-only ones."""
    out = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            source, target, *mode = vol.split(":")
            read_only = mode == ["ro"]
        else:
            source, target, read_only = vol.get("source"), vol["target"], vol.get("read_only", False)
        out[target] = source + (":ro" if read_only else "")
    return out


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    return _config(tmp_path_factory.mktemp("compose"))


def test_services_and_their_geoflora_commands(config):
    from backend.cli import main

    services = config["services"]
    assert set(services) == SERVICES
    assert services["migrations"]["command"] == ["geoflora", "migrate"]
    serve = services["api"]["command"]
    assert serve[:2] == ["geoflora", "serve"] and int(serve[serve.index("--workers") + 1]) > 1
    assert services["worker"]["command"][:2] == ["geoflora", "worker"]
    for name in GEOFLORA:  # every command the compose file runs is one the CLI has
        assert services[name]["command"][1] in main.commands, (name, services[name]["command"])
    assert services["migrations"]["restart"] == "no"
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrations"]["condition"] == "service_completed_successfully"
        assert deps["postgis"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    # The images: one Dockerfile whose targets are the ones compose builds.
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "docker" / "Dockerfile").read_text(), flags=re.M))
    for name in GEOFLORA:
        build = services[name]["build"]
        assert (REPO / build["dockerfile"]).is_file() and build["target"] in stages
    assert services["api"]["build"]["target"] == "api" and services["worker"]["build"]["target"] == "worker"
    assert "/whl/cpu" in services["api"]["build"]["args"]["TORCH_INDEX"]
    assert re.search(r"/whl/cu\d+$", services["worker"]["build"]["args"]["TORCH_INDEX"])


def test_healthchecks(config):
    services = config["services"]
    for name in ("postgis", "redis", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(services["postgis"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert services["api"]["healthcheck"]["test"][-1] == "http://127.0.0.1:8000/api/health"
    # The worker answers a ping under the node name its command gives it (%h = container hostname).
    ping = " ".join(services["worker"]["healthcheck"]["test"])
    assert "celery -A backend.jobs.worker inspect ping --destination worker@$" in ping
    assert "--hostname=worker@%h" in services["worker"]["command"]


def test_volumes_data_shared_tile_cache_local(config):
    services = config["services"]
    data = {name: _mounts(services[name])["/data"] for name in GEOFLORA}
    assert set(data.values()) == {"geodata"}, data  # one storage for the API, the workers, migrations
    api = _mounts(services["api"])
    assert api["/cache"] == "tilecache"
    assert services["api"]["environment"]["GEOFLORA_TILE_CACHE_DIR"].startswith("/cache/")
    for name in ("api", "worker"):  # weights from local files, read-only, the same for both
        assert _mounts(services[name])["/pretrained"] == "pretrained:ro"
    assert _mounts(services["postgis"])["/var/lib/postgresql/data"] == "pgdata"
    assert _mounts(services["redis"])["/data"] == "redisdata"
    assert {"geodata", "tilecache", "pgdata", "redisdata", "pretrained"} <= set(config["volumes"])


def test_worker_reserves_an_nvidia_gpu(config):
    (device,) = config["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["device_ids"] == ["0"]
    assert config["services"]["worker"]["environment"]["GEOFLORA_DEVICE"] == "cuda"


def test_processes_accept_the_settings_compose_gives_them(config, monkeypatch):
    """The environment of each GeoFlora service, as the container gets it, is valid Settings:
    production, PostGIS and Redis URLs pointing at the services, the admin token set."""
    from backend.core.settings import Settings

    for name in GEOFLORA:
        env = config["services"][name]["environment"]
        for key in [k for k in os.environ if k.startswith("GEOFLORA_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        settings = Settings(_env_file=None)
        assert settings.environment == "production"
        assert settings.db_url == "postgresql+psycopg://geoflora:change-me@postgis:5432/geoflora"
        assert settings.celery_broker == settings.celery_backend == "redis://:change-me@redis:6379/0"
        assert str(settings.data_dir) == "/data"
        assert settings.admin_token.get_secret_value() == "change-me"


def test_ports_published_on_loopback_by_default(config):
    services = config["services"]
    for name, port in (("api", 8000), ("postgis", 5432), ("redis", 6379)):
        (published,) = services[name]["ports"]
        text = published if isinstance(published, str) else f"{published['host_ip']}:{published['published']}"
        assert text.startswith(f"127.0.0.1:{port}"), (name, published)


def test_gpu_node_settings_point_at_the_main_host_and_nfs(tmp_path):
    """An extra GPU machine: .env names the main host and the NFS mount; the worker follows."""
    config = _config(tmp_path, POSTGRES_HOST="10.0.0.5", REDIS_HOST="10.0.0.5", DATA_SOURCE="/srv/geoflora/data",
                     WORKER_GPU="1", TORCH_INDEX="https://download.pytorch.org/whl/cu128")
    worker = config["services"]["worker"]
    assert _mounts(worker)["/data"] == "/srv/geoflora/data"  # a bind mount of the shared path
    assert "@10.0.0.5:5432/" in worker["environment"]["GEOFLORA_DATABASE_URL"]
    assert worker["environment"]["GEOFLORA_BROKER_URL"].endswith("@10.0.0.5:6379/0")
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
    assert worker["build"]["args"]["TORCH_INDEX"].endswith("/cu128")


@pytest.mark.parametrize("missing", ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "GEOFLORA_ADMIN_TOKEN"])
def test_a_missing_secret_is_a_clear_error(tmp_path, missing):
    env = re.sub(rf"^{missing}=.*\n", "", (REPO / ".env.example").read_text(), flags=re.M)
    done = _compose_config(tmp_path, env)
    assert done.returncode != 0
    assert f"set {missing} in .env" in done.stderr


def test_dockerignore_keeps_secrets_and_data_out_of_the_images():
    lines = set((REPO / ".dockerignore").read_text().split())
    assert {".env", "data", ".venv", ".git", "frontend/node_modules"} <= lines
