"""The dashboard stands the city on the surveys' terrain: a simulated survey (true ground
known) is uploaded, ingested and modelled; headless Chromium opens /dashboard, which must
take /terrain/ as its terrain provider, request quantized-mesh tiles and decode them
(CesiumJS's own sampling of its most detailed tiles gives the true ground). The screenshot is
left in a temporary folder (copied to TWINBASE_ARTIFACTS when that is set)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import laspy
import numpy as np
import pytest
import shapely
from helpers_tus import upload
from pyproj import Transformer

from recon.simulate import simulate_district, write_las
from service.jobs.execute import run_job

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "js" / "terrain_check.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TO_LL = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)

needs_browser = pytest.mark.skipif(
    not (shutil.which("node") and Path(CHROMIUM).exists()
         and (ROOT / "node_modules" / "cesium").is_dir()
         and (ROOT / "node_modules" / "playwright-core").is_dir()),
    reason="needs node, Debian chromium and the cesium + playwright-core npm packages "
           "(./run test installs them)")


@needs_browser
@pytest.mark.timeout(400)
def test_buildings_stand_on_the_survey_terrain(live_server, auth, db_url, settings, tmp_path):
    op = auth("operator")
    url = live_server.url
    s = simulate_district(n_buildings=6, area_m=100.0, density=8.0, seed=4)
    path = write_las(s, tmp_path / "district.laz")
    las = laspy.read(path)
    las.header.creation_date = dt.date(2026, 5, 1)
    las.write(path)
    _, job = upload(live_server, op, path.read_bytes(), filename=path.name)
    assert run_job(job, db_url, settings) == "succeeded"
    model = httpx.get(f"{url}/jobs/{job}").json()["report"]["model_job_id"]
    assert run_job(model, db_url, settings) == "succeeded"
    assert httpx.get(f"{url}/terrain/layer.json").json()["surveys"] == 1

    # bare ground, off roofs and crowns
    rng = np.random.default_rng(2)
    x0, y0, x1, y1 = s.bounds
    cover = shapely.union_all([b.footprint.buffer(2) for b in s.buildings]
                              + [shapely.Point(t.x, t.y).buffer(t.radius + 2) for t in s.trees])
    x = rng.uniform(x0 + 5, x1 - 5, 60)
    y = rng.uniform(y0 + 5, y1 - 5, 60)
    keep = ~shapely.contains_xy(cover, x, y)
    x, y = x[keep][:12], y[keep][:12]
    lon, lat = TO_LL.transform(x, y)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    clon, clat = TO_LL.transform(cx, cy)
    spec = {"url": f"{url}/dashboard/", "out": str(tmp_path / "terrain.png"), "timeout_s": 90,
            "deadline_s": 330, "points": [[float(a), float(b)] for a, b in zip(lon, lat,
                                                                               strict=True)],
            "view": {"lon": clon, "lat": clat, "h": float(s.terrain(cx, cy)), "range": 170,
                     "pitch": -45, "heading": 35}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run(["node", str(CHECK), str(tmp_path / "spec.json")], cwd=ROOT,
                         capture_output=True, text=True, timeout=360)
    lines = run.stdout.strip().splitlines()
    assert lines, (run.returncode, run.stderr[-3000:])
    summary = json.loads(lines[-1])
    if os.environ.get("TWINBASE_ARTIFACTS"):
        keep_dir = Path(os.environ["TWINBASE_ARTIFACTS"])
        keep_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(spec["out"], keep_dir / "terrain.png")
    assert summary["harnessError"] is None, summary["harnessError"]
    clean = {k: summary[k] for k in ("consoleErrors", "pageErrors", "httpErrors", "blocked")}
    assert clean == {k: [] for k in clean}, clean

    provider = summary["provider"]
    assert provider["cesiumTerrain"] and provider["normals"], provider
    assert provider["terrain"] == {"surveys": 1, "on": True}
    tiles = [r for r in summary["terrainRequests"] if ".terrain" in r["url"]]
    assert any(r["url"].endswith("/terrain/layer.json") for r in summary["terrainRequests"])
    assert len(tiles) >= 4 and all(r["status"] in (200, 304) for r in tiles), tiles
    assert all(r["type"].startswith("application/vnd.quantized-mesh") for r in tiles
               if r["status"] == 200)
    assert any("octvertexnormals" in (r["accept"] or "") for r in tiles)
    levels = {int(r["url"].split("/terrain/")[1].split("/")[0]) for r in tiles}
    assert max(levels) >= 15, sorted(levels)  # the camera close to the survey: deep tiles
    st = summary["status"]
    assert st["visibleTiles"] > 0 and st["tileFailures"] == 0 and not st["errors"], st

    # CesiumJS decoded the deepest tiles: their heights are the true ground
    sampled = np.array(summary["sampled"], float)
    truth = s.terrain(x, y)  # EPSG:4547 heights without a vertical CRS: ellipsoidal
    assert np.abs(sampled - truth).max() < 0.1, np.c_[sampled, truth]
    assert Path(spec["out"]).stat().st_size > 20_000
