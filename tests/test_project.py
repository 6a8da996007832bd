"""Project-level checks: settings, CLI, docker-compose file."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner

from tests.conftest import ON_CI, REPO


def test_settings_read_the_geoflora_prefix(monkeypatch, tmp_path):
    from backend.core.settings import Settings

    monkeypatch.setenv("GEOFLORA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GEOFLORA_BROKER_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("GEOFLORA_MAX_IMAGE_PX", "2048")
    s = Settings(_env_file=None)
    assert s.data_dir == tmp_path
    assert s.db_url == f"sqlite:///{tmp_path / 'geoflora.sqlite'}"
    assert s.celery_broker == "redis://127.0.0.1:6379/3" and s.celery_backend == s.celery_broker
    assert s.max_image_px == 2048


def test_production_refuses_to_start_without_an_admin_token(monkeypatch):
    from pydantic import ValidationError

    from backend.core.settings import Settings

    monkeypatch.setenv("GEOFLORA_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="GEOFLORA_ADMIN_TOKEN"):
        Settings(_env_file=None)


def test_cli_generate_and_compute_make_a_live_run(tmp_path, monkeypatch):
    from backend.cli import main
    from backend.core.settings import get_settings

    monkeypatch.setenv("GEOFLORA_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(main, ["generate", "--name", "cli", "--size", "1", "--species", "12", "--seed", "3"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(main, ["generate", "--name", "cli", "--size", "1"])
        assert "exists" in r.output
        r = runner.invoke(main, ["compute", "--region", "nowhere"])
        assert r.exit_code != 0 and "does not exist" in r.output
        r = runner.invoke(main, ["compute", "--region", "cli"])
        assert r.exit_code != 0 and "geoflora train sdm" in r.output
        r = runner.invoke(main, ["train", "sdm", "--region", "cli", "--epochs", "1"])
        assert r.exit_code == 0, r.output
        assert (tmp_path / "models" / "cli" / "sdm.pt").is_file()
        r = runner.invoke(main, ["compute", "--region", "cli"])
        assert r.exit_code == 0, r.output
        assert "is live" in r.output
    finally:
        get_settings.cache_clear()


def test_docker_compose_file_is_valid(tmp_path):
    exe = shutil.which("docker-compose")
    if exe is None:
        if ON_CI:
            pytest.fail("docker-compose (Debian package) is required on CI")
        pytest.skip("docker-compose not installed")
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copytree(REPO / "docker", tmp_path / "docker")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    proc = subprocess.run([exe, "config"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for service in ("postgis:", "redis:", "api:", "worker:", "migrations:"):
        assert service in proc.stdout
