"""GEOFLORA_PRETRAINED_DIR is the base of every pretrained path setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.core.settings import PRETRAINED_PATH_FIELDS, Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("pretrained_dir", *PRETRAINED_PATH_FIELDS):
        monkeypatch.delenv(f"GEOFLORA_{name.upper()}", raising=False)


def _settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def test_relative_paths_resolve_against_pretrained_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOFLORA_PRETRAINED_DIR", str(tmp_path))
    monkeypatch.setenv("GEOFLORA_DINOV2_PATH", "dinov2-vitb14")
    monkeypatch.setenv("GEOFLORA_DEPTH_ANYTHING_PATH", "depth/Depth-Anything-V2-Base-hf")
    monkeypatch.setenv("GEOFLORA_CLIMPLICIT_PATH", "climplicit.pt")
    monkeypatch.setenv("GEOFLORA_EO_ENCODER_PATH", "/opt/models/eo")
    s = _settings()
    assert s.dinov2_path == tmp_path / "dinov2-vitb14"
    assert s.depth_anything_path == tmp_path / "depth" / "Depth-Anything-V2-Base-hf"
    assert s.climplicit_path == tmp_path / "climplicit.pt"
    assert s.eo_encoder_path == Path("/opt/models/eo")  # absolute: as given


def test_without_pretrained_dir_paths_stay_as_given():
    s = _settings(dinov2_path="dinov2", eo_encoder_path="/abs/eo")
    assert s.pretrained_dir is None
    assert s.dinov2_path == Path("dinov2") and s.eo_encoder_path == Path("/abs/eo")
    assert s.depth_anything_path is None and s.climplicit_path is None


def test_relative_pretrained_dir_is_taken_from_the_working_directory_once(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = _settings(pretrained_dir="weights", dinov2_path="dinov2")
    assert s.pretrained_dir == tmp_path / "weights"
    assert s.dinov2_path == tmp_path / "weights" / "dinov2"
    again = _settings(**{k: v for k, v in s.model_dump().items() if k in ("pretrained_dir", *PRETRAINED_PATH_FIELDS)})
    assert again.dinov2_path == s.dinov2_path  # built again from its own values: the same files
    assert _settings(pretrained_dir="weights").dinov2_path is None  # unset stays unset


def test_every_pretrained_path_setting_is_covered_and_documented():
    paths = {name for name, f in Settings.model_fields.items()
             if name.endswith("_path") and "Path" in str(f.annotation)}
    assert paths == set(PRETRAINED_PATH_FIELDS)
    for name in PRETRAINED_PATH_FIELDS:
        assert "GEOFLORA_PRETRAINED_DIR" in Settings.model_fields[name].description
    assert all(f"GEOFLORA_{n.upper()}" in Settings.model_fields["pretrained_dir"].description
               for n in PRETRAINED_PATH_FIELDS)
