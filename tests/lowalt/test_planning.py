"""Planning: a path across a dense block that passes validation, and clear no-path answers."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from helpers_lowalt import GROUND, Local, drone, window

from service.lowalt.geo import frame, horizontal_lengths


def dense_block(city, here: Local, tall_every: int = 3) -> int:
    """40 m buildings on a 70 m grid from x 300 to 1700, y -300 to 300; every third one is
    180 m tall (over the height limit, so it must be flown around)."""
    n = 0
    for i, x in enumerate(range(300, 1700, 70)):
        for j, y in enumerate(range(-300, 300, 70)):
            height = 180 if (i + j) % tall_every == 0 else 40 + 10 * ((i * 7 + j) % 5)
            city.building(here, f"blk-{i}-{j}", (x, y, x + 40, y + 40), height=height)
            n += 1
    return n


def _plan(api, headers, d, here, start, goal, **extra):
    return api.post("/drone-routes/plan", json={
        "drone_id": d, "start": here.ll(*start[:2]) + ([GROUND + start[2]] if len(start) > 2
                                                       else []),
        "goal": here.ll(*goal[:2]) + ([GROUND + goal[2]] if len(goal) > 2 else []),
        **window(), **extra}, headers=headers)


def test_planned_path_crosses_a_dense_block_and_validates(api, auth, city):
    w, planner = auth("operator"), auth("planner")
    here = Local(100)
    dense_block(city, here)
    d = drone(api, w)
    r = _plan(api, planner, d, here, (0, 0, 30), (2000, 0, 30))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["validation"]["verdict"] == "accepted"
    assert out["validation"]["checked"]["obstacles"] > 100
    route = out["route"]
    coords = np.array(route["geometry"]["coordinates"])
    assert np.allclose(coords[0, :2], here.ll(0, 0)) and np.allclose(coords[-1, :2],
                                                                      here.ll(2000, 0))
    xyz = frame("EPSG:4547").xyz(coords)
    length = horizontal_lengths(xyz)[-1]
    assert 2000 <= length < 2600, length
    assert (coords[:, 2] - GROUND).max() <= 115 + 0.01  # 120 m limit less the half-height
    # the answer is a route body: the validator agrees, and it can be filed and approved
    check = api.post("/drone-routes/validate", json=route, headers=planner).json()
    assert check["verdict"] == "accepted", check["violations"]
    filed = api.post("/drone-routes", json=route, headers=w)
    assert filed.status_code == 201
    assert api.post(f"/drone-routes/{filed.json()['id']}/approve",
                    headers=w).status_code == 200


def test_micro_drone_path_stays_under_50m(api, auth, city):
    w = auth("operator")
    here = Local(110)
    city.building(here, "wall", (400, -150, 440, 150), height=60)
    d = drone(api, w, "micro")
    r = _plan(api, w, d, here, (0, 0, 20), (800, 0, 20))
    assert r.status_code == 200, r.text
    coords = np.array(r.json()["route"]["geometry"]["coordinates"])
    assert (coords[:, 2] - GROUND).max() <= 45.01
    # it went around the 60 m wall, not over it
    assert np.abs(frame("EPSG:4547").xyz(coords)[:, 1] - here.oy).max() > 150


def test_no_path_is_said_clearly(api, auth, city):
    w, admin = auth("operator"), auth("admin")
    here = Local(120)
    city.building(here, "goal-tower", (980, -20, 1020, 20), height=100)
    d = drone(api, w)
    r = _plan(api, w, d, here, (0, 0, 30), (1000, 0, 30))
    assert r.status_code == 422
    assert r.json()["detail"].startswith("no path")
    assert "building_clearance" in r.json()["detail"]
    # a start walled in by a prohibited zone from the ground to 5 km
    outer = [here.ll(x, y) for x, y in ((-300, -300), (300, -300), (300, 300), (-300, 300),
                                        (-300, -300))]
    inner = [here.ll(x, y) for x, y in ((-100, -100), (-100, 100), (100, 100), (100, -100),
                                        (-100, -100))]
    z = api.post("/airspace-zones", json={
        "name": "ring", "zone_type": "prohibited", "height_reference": "wgs84",
        "geometry": {"type": "Polygon", "coordinates": [outer, inner]},
        "floor_m": -100, "ceiling_m": 5000}, headers=admin)
    assert z.status_code == 201, z.text
    r = _plan(api, w, d, here, (0, 0, 30), (0, 1000, 30))
    assert r.status_code == 422
    assert "no way from the start to the goal" in r.json()["detail"]


def test_plan_avoids_approved_flights_in_its_window(api, auth):
    w = auth("operator")
    here = Local(130)
    # an approved flight across the straight way from start to goal, at the plan's height
    a = api.post("/drone-routes", json={
        "drone_id": drone(api, w), **window(),
        "geometry": here.line([(500, -300, 30), (500, 300, 30)])}, headers=w).json()
    assert api.post(f"/drone-routes/{a['id']}/approve", headers=w).status_code == 200
    d = drone(api, w)
    r = _plan(api, w, d, here, (0, 0, 30), (1000, 0, 30))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["validation"]["conflicts"] == []
    assert out["plan"]["flights_avoided"] == 1
    filed = api.post("/drone-routes", json=out["route"], headers=w)
    assert filed.status_code == 201 and filed.json()["validation"]["conflicts"] == []
    assert api.post(f"/drone-routes/{filed.json()['id']}/approve",
                    headers=w).status_code == 200
    # another time: the flight is not in the way, the path stays low and straight
    later = window(start_min=120)
    r = _plan(api, w, drone(api, w), here, (0, 0, 30), (1000, 0, 30), **later)
    assert r.status_code == 200, r.text
    coords = np.array(r.json()["route"]["geometry"]["coordinates"])
    assert np.allclose(coords[:, 2], GROUND + 30, atol=0.01)
    assert r.json()["plan"]["flights_avoided"] == 0


def test_plan_departs_later_when_flights_block_the_start(api, auth):
    w = auth("operator")
    here = Local(140)
    # an approved flight right over the start, at the plan's height, for 30 minutes
    a = api.post("/drone-routes", json={
        "drone_id": drone(api, w), **window(),
        "geometry": here.line([(-500, 0, 30), (500, 0, 30)])}, headers=w).json()
    assert api.post(f"/drone-routes/{a['id']}/approve", headers=w).status_code == 200
    d = drone(api, w)
    r = _plan(api, w, d, here, (0, 0, 30), (0, 800, 30), max_delay_s=0)
    assert r.status_code == 422, r.text
    assert "flights" in r.json()["detail"] and r.json()["flights_in_the_way"] == 1
    r = _plan(api, w, d, here, (0, 0, 30), (0, 800, 30))
    assert r.status_code == 200, r.text
    out = r.json()
    a_end = datetime.fromisoformat(a["properties"]["end_time"])
    start = datetime.fromisoformat(out["route"]["start_time"])
    assert start == a_end + timedelta(seconds=240), (start, a_end)
    assert out["plan"]["departure_delay_s"] > 1800
    assert "approved flights blocked every way" in out["plan"]["note"]
    assert out["validation"]["conflicts"] == []
    filed = api.post("/drone-routes", json=out["route"], headers=w)
    assert filed.status_code == 201, filed.text
    assert api.post(f"/drone-routes/{filed.json()['id']}/approve",
                    headers=w).status_code == 200
