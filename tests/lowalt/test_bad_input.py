"""Bad input: 422 with the reason, and nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from helpers_lowalt import GROUND, Local, drone, route_body, window

HERE = Local(90)


def _line(n: int = 2) -> dict:
    return HERE.line([(100 * i, 0, 60) for i in range(n)])


CASES = {
    "one point": lambda d: route_body(d, _line(1)),
    "no points": lambda d: route_body(d, {"type": "LineString", "coordinates": []}),
    "same point twice": lambda d: route_body(d, {"type": "LineString", "coordinates": [
        [*HERE.ll(0, 0), 60], [*HERE.ll(0, 0), 60]]}),
    "reversed times": lambda d: {**route_body(d, _line()),
                                 "start_time": window()["end_time"],
                                 "end_time": window()["start_time"]},
    "naive time": lambda d: {**route_body(d, _line()), "start_time": "2030-01-01T10:00:00",
                             "end_time": "2030-01-01T11:00:00"},
    "in the past": lambda d: {**route_body(d, _line()), **window(start_min=-120)},
    "too far ahead": lambda d: {**route_body(d, _line()), **window(start_min=60 * 24 * 40)},
    "absurd altitude": lambda d: route_body(d, {"type": "LineString", "coordinates": [
        [*HERE.ll(0, 0), 60], [*HERE.ll(100, 0), 99_999]]}),
    "no height": lambda d: route_body(d, {"type": "LineString", "coordinates": [
        HERE.ll(0, 0), HERE.ll(100, 0)]}),
    "lat lon swapped": lambda d: route_body(d, {"type": "LineString", "coordinates": [
        [22.72, 114.25, 60], [22.73, 114.25, 60]]}),
    "unknown drone": lambda d: route_body(987654, _line()),
    "bow-tie corridor": lambda d: route_body(d, _line(), corridor={
        "type": "Polygon", "coordinates": [[HERE.ll(-20, -20), HERE.ll(120, 20),
                                            HERE.ll(120, -20), HERE.ll(-20, 20),
                                            HERE.ll(-20, -20)]]}),
    "corridor missing the line": lambda d: route_body(d, _line(), corridor=HERE.polygon(
        0, 50, 100, 80)),
    "negative width": lambda d: route_body(d, _line(), half_width_m=-5),
    "wrong type": lambda d: {**route_body(d, _line()), "priority": "high"},
    "polygon for a line": lambda d: route_body(d, HERE.polygon(0, 0, 10, 10)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_route_is_422_and_nothing_is_stored(api, auth, city, case):
    w = auth("operator")
    d = drone(api, w)
    before = city.count("drone_routes")
    r = api.post("/drone-routes", json=CASES[case](d), headers=w)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"]
    assert city.count("drone_routes") == before


def test_nan_is_refused(api, auth, city):
    w = auth("operator")
    body = route_body(drone(api, w), _line())
    before = city.count("drone_routes")
    raw = str(body).replace("'", '"')
    raw = raw.replace(str(GROUND + 60), "NaN", 1)
    assert "NaN" in raw
    r = api.post("/drone-routes", content=raw, headers={**w, "content-type":
                                                              "application/json"})
    assert r.status_code == 422
    assert city.count("drone_routes") == before


def test_reasons_are_specific(api, auth):
    w = auth("operator")
    d = drone(api, w)
    detail = api.post("/drone-routes", json=CASES["one point"](d), headers=w).json()["detail"]
    assert "at least two points" in detail
    detail = api.post("/drone-routes", json=CASES["reversed times"](d),
                      headers=w).json()["detail"]
    assert "not after" in detail
    detail = api.post("/drone-routes", json=CASES["unknown drone"](d),
                      headers=w).json()["detail"]
    assert "unknown drone 987654" in detail
    detail = api.post("/drone-routes", json=CASES["bow-tie corridor"](d),
                      headers=w).json()["detail"]
    assert "not a valid polygon" in detail and "Self-intersection" in detail
    problem = api.post("/drone-routes", json=CASES["in the past"](d), headers=w).json()
    assert "in the past" in problem["detail"] and problem["violations"][0]["rule"] == "volume"


def test_bad_telemetry_batch_stores_nothing(api, auth, city):
    w = auth("operator")
    d = drone(api, w)
    lon, lat = HERE.ll(0, 0)
    good = {"drone_id": d, "t": datetime.now(UTC).isoformat(), "lon": lon, "lat": lat,
            "h": 60}
    before = city.count("drone_telemetry")
    for bad in ({**good, "drone_id": 424242}, {**good, "h": 1e6}, {**good, "lat": 95},
                {**good, "t": "2030-01-01T00:00:00"}, {**good, "speed_ms": -1}):
        r = api.post("/telemetry", json={"points": [good, bad]}, headers=w)
        assert r.status_code == 422, (bad, r.text)
    assert city.count("drone_telemetry") == before


def test_bad_zone_and_drone(api, auth, city):
    admin = auth("admin")
    bow = {"type": "Polygon", "coordinates": [[HERE.ll(0, 0), HERE.ll(10, 10),
                                               HERE.ll(10, 0), HERE.ll(0, 10),
                                               HERE.ll(0, 0)]]}
    before = city.count("airspace_zones")
    for body in ({"name": "z", "zone_type": "prohibited", "geometry": bow, "floor_m": 0,
                  "ceiling_m": 100},
                 {"name": "z", "zone_type": "prohibited", "geometry": HERE.polygon(0, 0, 9, 9),
                  "floor_m": 100, "ceiling_m": 50},
                 {"name": "z", "zone_type": "forbidden", "geometry": HERE.polygon(0, 0, 9, 9),
                  "floor_m": 0, "ceiling_m": 50}):
        assert api.post("/airspace-zones", json=body, headers=admin).status_code == 422
    assert city.count("airspace_zones") == before
    r = api.post("/drones", json={"serial": "x", "operator": "y", "class": "huge"},
                 headers=admin)
    assert r.status_code == 422
