"""The web app in Debian Chromium (playwright-core): loads `/` and sees the layer drawn."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ON_CI, REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = REPO / "tests" / "artifacts"


def _require(path: Path, what: str) -> None:
    if not path.exists():
        msg = f"{what} missing at {path}: run `make test` (it installs and builds everything)"
        if ON_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def test_map_page_draws_the_layer(live_server):
    _require(Path("/usr/bin/chromium"), "Debian chromium")
    _require(REPO / "frontend" / "node_modules" / "playwright-core", "playwright-core")
    _require(REPO / "frontend" / "dist" / "index.html", "the built front end")
    node = shutil.which("node")
    assert node, "node is required"
    out = ARTIFACTS / "browser"
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [node, "e2e/smoke.mjs", live_server, str(out)],
        cwd=REPO / "frontend", capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"smoke test failed:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] is True
    assert result["layer"] == "indicator.richness"
    assert (out / "smoke.png").stat().st_size > 10_000
