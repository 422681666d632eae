"""The dashboard in a real browser: headless Debian Chromium (SwiftShader WebGL) driven by
playwright-core opens /dashboard on a live server holding the real samples (a LiDAR survey,
the Rotterdam CityJSON, an IFC model) plus small traffic, water and drone layers placed among
the Rotterdam buildings. It fails on any console error, failed request, HTTP error, request
off the machine, or a 3D layer with no rendered tile; a click on a known building must show
that building's row from the API; a drone must move when telemetry arrives. Screenshots, one
per layer, are left in a temporary folder (copied to TWINBASE_ARTIFACTS when that is set)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from helpers_dashboard import ingest_samples
from shapely.geometry import shape

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "js" / "dashboard_check.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

ZH = json.loads((ROOT / "service" / "dashboard" / "i18n" / "zh-CN.json").read_text())
# the smallest share of a view's centre the content must fill (the first view of the IFC
# house measured 0.57, open sea 0; see test_dashboard_home.py for the measure)
MIN_CENTRE_SHARE = 0.05

needs_browser = pytest.mark.skipif(
    not (shutil.which("node") and Path(CHROMIUM).exists()
         and (ROOT / "node_modules" / "cesium").is_dir()
         and (ROOT / "node_modules" / "playwright-core").is_dir()),
    reason="needs node, Debian chromium and the cesium + playwright-core npm packages "
           "(./run test installs them)")

# primary-road speeds (km/h) that fall in each GB/T 33171-2016 level, free .. severe
LEVEL_SPEEDS = (50, 35, 25, 17, 10)
# NH3-N (mg/L) for a river station of class I, III and worse than V (GB 3838-2002)
NH3N = {"I": 0.1, "III": 0.8, "worse than V": 2.5}


def _post(server, path: str, headers: dict[str, str], body: object) -> dict:
    r = httpx.post(f"{server.url}{path}", headers=headers, json=body, timeout=60)
    assert r.status_code in (200, 201), (path, r.text)
    return r.json()


def _line(a: tuple[float, float], b: tuple[float, float], props: dict) -> dict:
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [a, b]},
            "properties": props}


def seed_layers(server, op: dict[str, str], admin: dict[str, str]) -> dict:
    """Roads, water stations, two drone routes and a live drone around the city model."""
    objs = httpx.get(f"{server.url}/city/objects", params={
        "type": "Building", "geometry": "footprint", "limit": 1000}).json()["features"]
    shapes = [shape(f["geometry"]) for f in objs]
    x0 = min(s.bounds[0] for s in shapes)
    y0 = min(s.bounds[1] for s in shapes)
    x1 = max(s.bounds[2] for s in shapes)
    y1 = max(s.bounds[3] for s in shapes)
    ground = statistics.median(f["properties"]["min_z"] for f in objs)
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    dx, dy = (x1 - x0) * 0.15, (y1 - y0) * 0.15
    now = datetime.now(UTC)

    # five primary roads, one per congestion level
    lines = [((x0 - dx, y0 - dy), (x1 + dx, y0 - dy)), ((x0 - dx, y1 + dy), (x1 + dx, y1 + dy)),
             ((x0 - dx, ym), (x1 + dx, ym)), ((xm, y0 - dy), (xm, y1 + dy)),
             ((x0 - dx, y0 - dy), (x0 - dx, y1 + dy))]
    roads = {"type": "FeatureCollection", "features": [
        _line(a, b, {"code": f"R{i}", "name": f"Test road {i}", "road_class": "primary",
                     "lanes": 2, "speed_limit_kmh": 60, "free_flow_kmh": 60})
        for i, (a, b) in enumerate(lines)]}
    _post(server, "/layers/traffic/segments", op, roads)
    segs = httpx.get(f"{server.url}/collections/road_segments/items").json()["features"]
    by_code = {f["properties"]["code"]: f["id"] for f in segs}
    _post(server, "/layers/traffic/observations", op, [
        {"segment_id": by_code[f"R{i}"], "observed_at": (now - timedelta(minutes=m)).isoformat(),
         "volume": 300, "speed_kmh": speed}
        for i, speed in enumerate(LEVEL_SPEEDS) for m in (10, 25, 40)])

    stations = [("W1", (x0 - dx / 2, y1 + dy / 2), "I"), ("W2", (x1 + dx / 2, ym), "III"),
                ("W3", (xm, y0 - dy / 2), "worse than V")]
    _post(server, "/layers/water/stations", op, {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(p)},
         "properties": {"code": code, "name": f"Station {code}", "water_body": "Maas",
                        "body_type": "river"}} for code, p, _ in stations]})
    st = httpx.get(f"{server.url}/collections/water_stations/items").json()["features"]
    sid = {f["properties"]["code"]: f["id"] for f in st}
    _post(server, "/layers/water/observations", op, [
        {"station_id": sid[code], "observed_at": (now - timedelta(hours=2)).isoformat(),
         "ph": 7.4, "dissolved_oxygen": 8.0, "nh3_n": NH3N[cls]} for code, _, cls in stations])

    drone = _post(server, "/drones", op, {"serial": "DJI-TEST-1", "operator": "Survey team",
                                          "class": "light", "max_speed_ms": 15})
    h = ground + 70
    window = {"start_time": (now + timedelta(minutes=2)).isoformat(),
              "end_time": (now + timedelta(hours=2)).isoformat()}
    path = [[x0, y0, h], [xm, ym, h + 10], [x1, y1, h]]
    active = _post(server, "/drone-routes", op, {
        "drone_id": drone["id"], "name": "Survey diagonal", "half_width_m": 15,
        "vertical_half_m": 10, "geometry": {"type": "LineString", "coordinates": path},
        **window})
    approval = httpx.post(f"{server.url}/drone-routes/{active['id']}/approve", headers=admin,
                          json={"authorisation": "TEST-PERMIT-1"})
    assert approval.status_code == 200, approval.text
    _post(server, "/drone-routes", op, {
        "drone_id": drone["id"], "name": "Inspection loop", "half_width_m": 10,
        "vertical_half_m": 8, "geometry": {"type": "LineString", "coordinates": [
            [x0, y1, h + 40], [x1, y1, h + 40], [x1, ym, h + 40]]}, **window})
    _post(server, "/telemetry", op, {"points": [{
        "drone_id": drone["id"], "t": now.isoformat(), "lon": x0, "lat": y0, "h": h,
        "speed_ms": 0, "battery_pct": 95}]})
    steps = 6
    fly = [[x0 + (xm - x0) * k / steps, y0 + (ym - y0) * k / steps, h] for k in
           range(1, steps + 1)]
    return {"drone": {"id": drone["id"], "path": fly}, "stations": sid, "segments": by_code,
            "ground": ground}


def known_building(server) -> tuple[str, list[float]]:
    """The building with the largest footprint, and a point on its roof."""
    objs = httpx.get(f"{server.url}/city/objects", params={
        "type": "Building", "geometry": "footprint", "limit": 1000}).json()["features"]
    best = max(objs, key=lambda f: shape(f["geometry"]).area)
    p = shape(best["geometry"]).representative_point()
    return best["id"], [p.x, p.y, best["properties"]["max_z"]]


@needs_browser
@pytest.mark.timeout(1200)  # ingest and software WebGL on a busy 2-core machine
def test_dashboard_in_headless_chromium(live_server, auth, db_url, settings, tmp_path):
    from service.lowalt.settings import LowAltSettings

    # the test city is Rotterdam: distances for drone routes in RD New, not Longgang's CRS
    live_server.server.config.app.state.lowalt_settings = LowAltSettings(
        metric_crs="EPSG:28992", max_days_ahead=30)
    op, admin = auth("operator"), auth("admin")
    ingest_samples(live_server, op, db_url, settings)
    layers = seed_layers(live_server, op, admin)
    building_id, (lon, lat, h) = known_building(live_server)
    station = httpx.get(f"{live_server.url}/collections/water_stations/items/"
                        f"{layers['stations']['W2']}").json()
    bim = next(c for c in httpx.get(f"{live_server.url}/tiles/city/tileset.json").json()[
        "root"]["children"] if c["extras"]["kind"] == "bim")
    w, s, e, n, _, top = bim["boundingVolume"]["region"]

    shots = tmp_path / "shots"
    shots.mkdir()
    spec = {
        "url": f"{live_server.url}/dashboard/", "out": str(shots), "timeout_s": 60,
        "deadline_s": 1000,
        "building": {"lon": lon, "lat": lat, "h": h, "range": 120},
        "station": {"lon": station["geometry"]["coordinates"][0],
                    "lat": station["geometry"]["coordinates"][1], "h": layers["ground"] + 4,
                    "range": 300},
        "bim": {"lon": _deg((w + e) / 2), "lat": _deg((s + n) / 2), "h": top, "range": 60},
        "drone": {**layers["drone"], "key": op["Authorization"].split()[1]},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run(["node", str(CHECK), str(tmp_path / "spec.json")], cwd=ROOT,
                         capture_output=True, text=True, timeout=1050)
    lines = run.stdout.strip().splitlines()
    assert lines, (run.returncode, run.stderr[-3000:])
    summary = json.loads(lines[-1])
    if os.environ.get("TWINBASE_ARTIFACTS"):
        keep = Path(os.environ["TWINBASE_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copy(png, keep / png.name)

    assert summary["harnessError"] is None, (summary["harnessError"], run.stderr[-3000:])
    assert summary["webgl"], "no WebGL 2 context in the browser"
    clean = {k: summary[k] for k in ("consoleErrors", "pageErrors", "failedRequests",
                                     "httpErrors", "blocked")}
    assert clean == {k: [] for k in clean}, clean
    assert not summary["final"]["errors"], summary["final"]

    # the home area (Longgang by default) holds nothing here: the first view is the newest
    # dataset (the IFC model), filling the centre; open sea, the measure's control, does not
    newest = max(d["id"] for d in httpx.get(f"{live_server.url}/datasets").json()
                 if d["status"] == "ready")
    first = summary["firstView"]
    assert first["reason"] == "newest" and first["dataset"] == newest, first
    assert first["centre"]["share"] >= MIN_CENTRE_SHARE, first
    assert summary["emptyView"]["centre"]["share"] < 0.01, summary["emptyView"]
    assert first["lang"] == "zh-CN" and first["heading"] == ZH["app.name"], first
    # the dataset list flies to the survey, the city model and the BIM model, each in view
    listed = {d["kind"]: d for d in summary["datasets"]}
    assert set(listed) == {"lidar", "cityjson", "ifc"}, summary["datasets"]
    for kind, d in listed.items():
        assert d["centre"]["share"] >= MIN_CENTRE_SHARE, (kind, d)

    steps = {s["name"]: s for s in summary["steps"]}
    assert {"city", "tiles-mesh", "tiles-bim", "tiles-pointcloud", "traffic", "water",
            "routes", "drones"} <= set(steps), list(steps)
    for name, step in steps.items():
        st = step["status"]
        assert Path(step["screenshot"]).stat().st_size > 20_000, name
        assert st["tileFailures"] == 0 and not st["errors"], (name, st)
        if name.startswith("tiles-") or name == "city":
            assert st["visibleTiles"] > 0 and st["tileLoads"] > 0, (name, st)
    counts = steps["city"]["status"]["counts"]
    assert counts == {**counts, "traffic": 5, "water": 3, "routes": 2, "drones": 1,
                      "trafficObserved": 5, "waterSampled": 3}, counts

    # the live drone moved with the telemetry, through the stream (which sends the latest
    # state per poll, so several reports between two polls are one event)
    drone = summary["drone"]
    assert drone["events"] >= 2, drone
    assert drone["before"][:2] != pytest.approx(drone["after"][:2], abs=1e-6), drone
    assert drone["after"][:2] == pytest.approx(layers["drone"]["path"][-1][:2], abs=1e-7)

    # a click on the building shows its row, as the API has it
    clicked = summary["clicks"]["building"]
    assert clicked["state"] == "ready", clicked
    assert clicked["shown"]["kind"] == "mesh" and clicked["shown"]["id"] == building_id, clicked
    api = httpx.get(f"{live_server.url}/city/objects/{building_id}",
                    params={"geometry": "none"}).json()["properties"]
    assert clicked["shown"]["props"] == api
    # the panel's title is the catalogue's; the row's values are the service's own
    assert building_id in clicked["text"] and "Building" in clicked["text"]
    assert ZH["panel.cityObject"] in clicked["text"], clicked["text"]

    station_click = summary["clicks"]["station"]
    assert station_click["shown"]["kind"] == "water", station_click
    assert station_click["shown"]["id"] == layers["stations"]["W2"]
    assert station_click["shown"]["props"]["latest_class"] == "III"

    bim_click = summary["clicks"]["bim"]
    assert bim_click["shown"]["kind"] == "bim", bim_click
    element = httpx.get(f"{live_server.url}/bim/elements/{bim_click['shown']['id']}")
    assert element.status_code == 200
    assert bim_click["shown"]["props"]["global_id"] == element.json()["id"]


def _deg(rad: float) -> float:
    import math

    return math.degrees(rad)
