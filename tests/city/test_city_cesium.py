"""The CIM tileset in a real client: CesiumJS in headless Chromium loads /tiles/cim from the
live server, with no errors and at least one tile, picks buildings whose ids are rows in the
API, and leaves a screenshot to look at (set TWINBASE_ARTIFACTS to keep a copy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers_city import DATA, object_url, upload

from service.jobs.execute import run_job

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "js" / "cesium_check" / "check.js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

needs_browser = pytest.mark.skipif(
    not (shutil.which("node") and Path(CHROMIUM).exists()
         and (ROOT / "node_modules" / "cesium").is_dir()
         and (ROOT / "node_modules" / "playwright-core").is_dir()),
    reason="needs node, Debian chromium and the cesium + playwright-core npm packages "
           "(./run test installs them)")


@needs_browser
def test_cesium_loads_and_picks_the_city_tileset(live_server, auth, db_url, settings,
                                                 tmp_path):
    op = auth("operator")
    path = DATA / "rotterdam_subset.json"
    _, job_id = upload(live_server, op, path.read_bytes(), filename=path.name, crs="EPSG:7415")
    assert run_job(job_id, db_url, settings) == "succeeded"

    shot = tmp_path / "city_cesium.png"
    run = subprocess.run(
        ["node", str(CHECK), f"{live_server.url}/tiles/cim/tileset.json", "--out", str(shot),
         "--timeout", "60", "--pitch", "-35", "--range", "700"],
        capture_output=True, text=True, timeout=150, cwd=ROOT)
    start = run.stdout.find("{")
    assert start >= 0, run.stderr[-2000:]
    summary = json.loads(run.stdout[start:])
    if os.environ.get("TWINBASE_ARTIFACTS"):
        keep = Path(os.environ["TWINBASE_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / shot.name)
    result = summary["result"]
    assert run.returncode == 0, (run.stderr[-2000:], summary)
    assert result["ok"] and not result["errors"], result
    assert result["tileLoadEvents"] >= 1 and result["assetVersion"] == "1.1"
    assert not summary["httpErrors"] and not summary["consoleErrors"], summary
    assert shot.stat().st_size > 10_000

    # a click in the client maps back to the object's row
    assert result["pickedIds"], "CesiumJS picked no building"
    for object_id in result["pickedIds"]:
        r = httpx.get(object_url(live_server, object_id))
        assert r.status_code == 200 and r.json()["properties"]["type"] == "Building"
