"""The web app in Debian Chromium (playwright-core) against the live server of the computed run:
the layer drawn (smoke), then the whole app (draw an area, report, exports, modules, legends,
values at a point, permalinks, upload, comparison, phone layout). Screenshots: tests/artifacts/browser."""

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


def _run_e2e(script: str, base_url: str, out: Path, timeout: int) -> dict:
    _require(Path("/usr/bin/chromium"), "Debian chromium")
    _require(REPO / "frontend" / "node_modules" / "playwright-core", "playwright-core")
    _require(REPO / "frontend" / "dist" / "index.html", "the built front end")
    node = shutil.which("node")
    assert node, "node is required"
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [node, script, base_url, str(out)],
        cwd=REPO / "frontend", capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] is True
    return result


def test_map_page_draws_the_layer(live_server):
    out = ARTIFACTS / "browser"
    result = _run_e2e("e2e/smoke.mjs", live_server, out, 120)
    assert result["layer"] == "indicator.richness"
    assert (out / "smoke.png").stat().st_size > 10_000


def test_web_app_end_to_end(live_server, computed):
    """Draw a rectangle -> report in the side panel -> JSON export checked -> every module with its
    legend -> values at a point -> permalink -> uploaded area compared -> meta-tile -> phone."""
    _, _, run_id = computed
    out = ARTIFACTS / "browser" / "app"
    result = _run_e2e("e2e/app.mjs", live_server, out, 300)
    assert result["page_errors"] == []
    assert result["species"] > 0 and result["area_km2"] > 0
    assert run_id in result["report_meta"]
    assert result["modules"]["habitats"].startswith("EUNIS habitat")
    assert result["point_rows"] > 1
    assert f"r={result['report_id']}" in result["permalink"]
    assert result["metatile"].startswith("Meta-tile E")
    # The export the browser downloaded is the stored report, byte for byte in content.
    exported = json.loads((out / "report.json").read_text())
    assert exported["id"] == result["report_id"] and exported["run"]["id"] == run_id
    for name in ("1-report-1280x800", "2-indicators-uncertainty", "5-comparison", "7-phone-390x844"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name
