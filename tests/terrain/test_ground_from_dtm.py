"""Heights above ground over a surveyed slope: the low-altitude checks take the ground from
the survey's DTM once it is modelled (before: the survey's lowest point)."""

from __future__ import annotations

import datetime as dt

import httpx
import numpy as np
import test_fly_model as fly
from helpers_tus import upload
from pyproj import Transformer

from recon.simulate import simulate_district
from service.jobs.execute import run_job

TO_LL = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)
ORIGIN = (525300.0, 2513500.0)


def _validate(url: str, headers: dict[str, str], drone_id: int, line: list[list[float]]
              ) -> dict:
    t0 = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    r = httpx.post(f"{url}/drone-routes/validate", headers=headers, timeout=60, json={
        "drone_id": drone_id, "geometry": {"type": "LineString", "coordinates": line},
        "start_time": t0.isoformat(), "end_time": (t0 + dt.timedelta(minutes=20)).isoformat()})
    assert r.status_code == 200, r.text
    return r.json()["checked"]


def test_height_above_ground_over_a_surveyed_slope_uses_the_dtm(live_server, auth, db_url,
                                                               settings, tmp_path):
    op = auth("operator")
    url = live_server.url
    s = simulate_district(n_buildings=2, area_m=80.0, density=8.0, seed=31, origin=ORIGIN)
    path = fly._las(s, tmp_path / "slope.laz", dt.date(2026, 4, 1))
    _, ingest_job = upload(live_server, op, path.read_bytes(), filename=path.name)
    assert run_job(ingest_job, db_url, settings) == "succeeded"
    model_job = httpx.get(f"{url}/jobs/{ingest_job}").json()["report"]["model_job_id"]
    drone = httpx.post(f"{url}/drones", headers=op, json={
        "serial": "DTM-1", "operator": "Longgang test ops", "class": "light"}).json()["id"]

    # a straight, level line up the slope, 5 m samples as the checks take them
    ys = ORIGIN[1] + np.linspace(10.0, 70.0, 13)
    xs = np.full(ys.shape, ORIGIN[0] + 40.0)
    ground = s.terrain(xs, ys)
    assert ground.max() - ground.min() > 0.5, "a slope"
    top = float(ground.max()) + 60.0
    lon, lat = TO_LL.transform(xs[[0, -1]], ys[[0, -1]])
    line = [[float(lon[0]), float(lat[0]), top], [float(lon[1]), float(lat[1]), top]]

    before = _validate(url, op, drone, line)
    # the survey is ingested, not modelled: its lowest point is the ground (heights high)
    assert before["ground_source"] == {"lidar_survey": before["samples"]}
    assert before["height_agl_m"]["min"] > 60.0

    assert run_job(model_job, db_url, settings) == "succeeded"
    after = _validate(url, op, drone, line)
    assert after["samples"] == len(ys)
    # the DTM first, before the city model the survey has just made and the survey minimum
    assert after["ground_source"] == {"survey_dtm": after["samples"]}
    agl = top - ground
    assert abs(after["height_agl_m"]["min"] - agl.min()) < 0.05
    assert abs(after["height_agl_m"]["max"] - agl.max()) < 0.05
