"""The dashboard on a simulated Longgang district (EPSG:4547, truth known), in headless
Chromium, as the district's staff would use it (tests/js/dashboard_longgang.mjs):

- the first view goes to the home area (the default setting: Longgang) and its centre shows
  the city, measured as the share of centre pixels the 3D content changes;
- the page is in Simplified Chinese, with the CJK font drawing real glyphs;
- a second survey is uploaded while the page is open: its jobs appear with their progress
  over SSE, and its point cloud is on the map before its buildings are modelled;
- its change report highlights the new, changed and demolished buildings;
- the living map at the first survey's date hides the buildings built since and shows the
  ones gone since;
- the switch to English changes every word and is remembered across a reload.

Screenshots are left in the test's tmp folder (copied to TWINBASE_ARTIFACTS when set)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import laspy
import numpy as np
import pytest
from helpers_tus import upload

from recon.simulate import GROUND, Survey, simulate_district, write_las
from service.jobs.execute import run_job

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "js" / "dashboard_longgang.mjs"
CATALOGUES = ROOT / "service" / "dashboard" / "i18n"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# the smallest share of the first view's centre the city must fill (measured: see the report
# in the test's output); open sea measures 0
MIN_CENTRE_SHARE = 0.05

needs_browser = pytest.mark.skipif(
    not (shutil.which("node") and Path(CHROMIUM).exists()
         and (ROOT / "node_modules" / "cesium").is_dir()
         and (ROOT / "node_modules" / "playwright-core").is_dir()),
    reason="needs node, Debian chromium and the cesium + playwright-core npm packages "
           "(./run test installs them)")


def _razed(s: Survey, gone: set[int], raise_m: dict[int, float] | None = None) -> Survey:
    """The district with the buildings ``gone`` razed (roofs fall to the terrain, walls
    vanish) and others raised by some metres."""
    xyz = s.xyz.copy()
    cls = s.truth_class.copy()
    bid = s.building_id.copy()
    keep = np.ones(len(s), bool)
    for b in gone:
        mine = np.flatnonzero(bid == b)
        first = mine[s.return_number[mine] == 1]
        xyz[first, 2] = s.terrain(xyz[first, 0], xyz[first, 1])
        cls[first] = GROUND
        bid[first] = -1
        keep[np.setdiff1d(mine, first)] = False
    for b, dz in (raise_m or {}).items():
        xyz[bid == b, 2] += dz
    return dataclasses.replace(
        s, xyz=xyz[keep], truth_class=cls[keep], building_id=bid[keep],
        return_number=s.return_number[keep], number_of_returns=s.number_of_returns[keep],
        buildings=[b for b in s.buildings if b.id not in gone])


def _las(s: Survey, path: Path, day: dt.date) -> bytes:
    write_las(s, path)
    las = laspy.read(path)
    las.header.creation_date = day
    las.write(path)
    return path.read_bytes()


def _run(server, db_url: str, settings, job_id: int) -> dict:
    status = run_job(job_id, db_url, settings)
    job = httpx.get(f"{server.url}/jobs/{job_id}").json()
    assert status == "succeeded", job
    return job


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, ("the browser scenario ended early",
                                     proc.stdout.read()[-3000:])
        assert time.monotonic() < end, f"{path.name} never appeared"
        time.sleep(0.2)


@needs_browser
@pytest.mark.timeout(900)  # two surveys modelled and software WebGL on a busy 2-core machine
def test_dashboard_on_a_longgang_district(live_server, auth, db_url, settings, tmp_path):
    op = auth("operator")
    district = simulate_district(n_buildings=13, area_m=120.0, density=10.0, seed=7)
    added, razed, raised = (b.id for b in district.buildings[:3])

    # the first survey, modelled before the page opens
    first = _las(_razed(district, {added}), tmp_path / "first.laz", dt.date(2026, 3, 1))
    _, job1 = upload(live_server, op, first, filename="first.laz", survey="龙岗 测试")
    model1 = _run(live_server, db_url, settings, job1)["report"]["model_job_id"]
    _run(live_server, db_url, settings, model1)

    shots = tmp_path / "shots"
    shots.mkdir()
    files = {k: tmp_path / f"{k}.flag" for k in ("waiting", "ingested", "seen", "done")}
    spec = {"url": f"{live_server.url}/dashboard/", "out": str(shots), "timeout_s": 90,
            "deadline_s": 700, **{f"{k}_file": str(v) for k, v in files.items()}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    # the scenario's own log (timed steps) goes to a file: read it when a step hangs
    log = (tmp_path / "scenario.log").open("w")
    proc = subprocess.Popen(["node", str(SCENARIO), str(tmp_path / "spec.json")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        # the second survey, uploaded while the page is open: one razed, one built, one raised
        _wait_for(files["waiting"], proc, 240)
        second = _las(_razed(district, {razed}, {raised: 4.0}), tmp_path / "second.laz",
                      dt.date(2026, 6, 1))
        ds2, job2 = upload(live_server, op, second, filename="second.laz", survey="龙岗 测试")
        time.sleep(2)  # the queued job shows in the panel before a worker takes it
        model2 = _run(live_server, db_url, settings, job2)["report"]["model_job_id"]
        tileset = next(t["name"] for t in httpx.get(f"{live_server.url}/tiles").json()
                       if t["dataset_id"] == ds2)
        files["ingested"].write_text(json.dumps({"dataset": ds2, "tileset": tileset,
                                                 "model_job": model2}))
        _wait_for(files["seen"], proc, 120)
        _run(live_server, db_url, settings, model2)
        files["done"].write_text(json.dumps({"dataset": ds2, "jobs": [job2, model2]}))
        out, _ = proc.communicate(timeout=720)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    err = (tmp_path / "scenario.log").read_text()
    if os.environ.get("TWINBASE_ARTIFACTS"):
        keep = Path(os.environ["TWINBASE_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copy(png, keep / f"longgang-{png.name}")
    lines = out.strip().splitlines()
    assert lines, (proc.returncode, err[-3000:])
    summary = json.loads(lines[-1])
    print(json.dumps({k: summary.get(k) for k in ("firstView", "glyphs", "changes", "living",
                                                  "seconds")}, ensure_ascii=False))

    assert summary["harnessError"] is None, (summary["harnessError"], err[-3000:])
    clean = {k: summary[k] for k in ("consoleErrors", "pageErrors", "failedRequests",
                                     "httpErrors", "blocked")}
    assert clean == {k: [] for k in clean}, clean
    assert not summary["final"]["errors"], summary["final"]
    for step in summary["steps"]:
        assert Path(step["screenshot"]).stat().st_size > 20_000, step["name"]

    # the first view: the home area, with the city filling its centre
    fv = summary["firstView"]
    assert fv["reason"] == "home", fv
    assert fv["centre"]["share"] >= MIN_CENTRE_SHARE, fv

    # Chinese by default, in the font's own glyphs
    zh = json.loads((CATALOGUES / "zh-CN.json").read_text())
    en = json.loads((CATALOGUES / "en.json").read_text())
    chinese = summary["chinese"]
    assert chinese["lang"] == "zh-CN" and chinese["heading"] == zh["app.name"]
    assert chinese["title"] == zh["page.title"] and chinese["switch"] == "English"
    assert "拥堵等级（GB/T 33171）" in chinese["legend"], chinese["legend"]
    assert "水质类别（GB 3838）" in chinese["legend"], chinese["legend"]
    # no English word in the Chinese page but names (of the product, models, standards),
    # the switch's own label, and the dataset names the operator chose
    page_text = chinese["controls"] + chinese["work"]
    for name in ("first.laz", "second.laz"):
        page_text = page_text.replace(name, "")
    words = set(re.findall(r"[A-Za-z]{3,}", page_text))
    assert words <= {"Twinbase", "CIM", "BIM", "English"}, words
    glyphs = summary["glyphs"]
    assert "Noto Sans CJK SC" in glyphs["font"], glyphs
    assert glyphs["distinct"] and glyphs["long"] > 40 and glyphs["gang"] > 40, glyphs

    # the upload while the page was open: its jobs came over SSE, queued or running first
    seen = summary["jobs"]["seen"]
    states = {(j["id"], j["status"]) for s in seen for j in s["jobs"]}
    assert (job2, "succeeded") in states and (model2, "succeeded") in states, states
    assert {(job2, "queued"), (job2, "running")} & states, states
    assert {(model2, "queued"), (model2, "running")} & states, states
    shown = summary["jobs"]["surveyShown"]
    assert shown is not None, seen
    assert any(j["id"] == model2 and j["status"] != "succeeded" for j in shown["jobs"]), shown
    assert summary["final"]["jobEvents"] >= 1

    # the change report of the second survey: 1 new, 1 changed, 1 demolished
    changes = summary["changes"]
    assert changes["counts"] == {"new": 1, "changed": 1, "demolished": 1}, changes
    assert changes["entities"] >= 3
    assert zh["change.demolished"] in changes["text"] or "拆除 1" in changes["text"], changes

    # the living map at the first survey's date: the building built since and the raised
    # building's new version are hidden; the razed one and the raised one's old version show
    living = summary["living"]
    assert living["at"].startswith("2026-03-01"), living
    assert living["hidden"] == 2 and living["ghosts"] == 2, living
    current = {f["id"] for f in httpx.get(f"{live_server.url}/city/objects",
                                          params={"geometry": "none", "limit": 100}).json()[
        "features"]}
    new_ids = [f["properties"]["object_id"] for f in httpx.get(
        f"{live_server.url}/datasets/{ds2}/changes", params={"change": "new"}).json()["features"]]
    assert set(new_ids) <= set(living["hiddenIds"]) and set(living["hiddenIds"]) <= current

    # English after the switch, every word of it, and still English after a reload
    english = summary["english"]
    assert english["lang"] == "en" and english["heading"] == en["app.name"]
    assert english["switch"] == "中文"
    assert "Congestion level (GB/T 33171)" in english["legend"]
    han = re.findall(r"[\u4e00-\u9fff]+", english["controls"] + english["work"])
    assert set(han) <= {"中文", "龙岗", "测试"}, han  # the switch, and the survey's own name
    assert summary["afterReload"]["lang"] == "en"
    assert summary["afterReload"]["heading"] == en["app.name"]
