"""POST /fleet/plans and its re-plan and emergency routes, against the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers_lowalt import Local

HERE = Local(-40, 30)  # away from the other modules' test cities
T0 = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)


def _iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def _body(**extra) -> dict:
    body = {
        "start": T0.isoformat(),
        "vertiports": [{"id": "VP-W", "position": HERE.ll(0, 0)},
                       {"id": "VP-E", "position": HERE.ll(5000, 0), "swap_s": 90}],
        "drones": [{"id": "D1", "home": "VP-W", "endurance_min": 20, "payload_kg": 2,
                    "speed_ms": 15},
                   {"id": "D2", "home": "VP-E", "endurance_min": 20, "payload_kg": 5,
                    "speed_ms": 15}],
        "tasks": [
            {"id": "insp-1", "position": HERE.ll(800, 600), "service_s": 120,
             "window": {"start": _iso(0), "end": _iso(60)}, "priority": 3},
            {"id": "insp-2", "area": HERE.polygon(1800, -700, 2200, -300), "service_s": 300,
             "priority": 2},
            {"id": "parcel", "kind": "delivery", "position": HERE.ll(4200, 900),
             "payload_kg": 4, "service_s": 60, "priority": 5},
            {"id": "far", "position": HERE.ll(60_000, 0), "service_s": 60},
            {"id": "piano", "kind": "delivery", "position": HERE.ll(300, 300),
             "payload_kg": 300},
        ],
        "time_limit_s": 1,
    }
    body.update(extra)
    return body


def _count(city) -> int:
    return city.count("fleet_plans")


def _times_ok(plan: dict, body: dict) -> None:
    """Stops in order, inside their windows; trips chained through vertiports."""
    windows = {t["id"]: t.get("window") for t in body["tasks"]}
    for d in plan["drones"]:
        last = None
        for trip in d["trips"]:
            dep, arr = datetime.fromisoformat(trip["departure"]), datetime.fromisoformat(
                trip["arrival"])
            assert dep >= T0 and arr > dep
            assert (arr - dep).total_seconds() <= 20 * 60 + 1e-6
            if last is not None:
                assert dep >= last
            clock = dep
            for s in trip["stops"]:
                a, st = datetime.fromisoformat(s["arrival"]), datetime.fromisoformat(s["start"])
                assert a >= clock and st >= a
                w = windows.get(s["task"])
                if w:
                    assert datetime.fromisoformat(w["start"]) <= st <= datetime.fromisoformat(
                        w["end"])
                clock = datetime.fromisoformat(s["departure"])
            last = arr


def test_a_plan_is_made_stored_and_read_back(api, auth, city):
    w = auth("operator")
    before = _count(city)
    body = _body()
    r = api.post("/fleet/plans", json=body, headers=w)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert _count(city) == before + 1
    reasons = {u["task"]: u["reason"] for u in plan["unassigned"]}
    assert reasons == {"far": "out_of_battery_range", "piano": "too_heavy"}
    served = {s["task"]: d["drone"] for d in plan["drones"] for t in d["trips"]
              for s in t["stops"]}
    assert set(served) == {"insp-1", "insp-2", "parcel"}
    assert served["parcel"] == "D2"  # only D2 carries 4 kg
    assert plan["planned"] == 3
    assert plan["reservation"]["status"] == "not_reserved"
    assert plan["travel"].startswith("straight line")  # no route network in this city
    _times_ok(plan, body)
    got = api.get(f"/fleet/plans/{plan['id']}")
    assert got.status_code == 200
    assert got.json()["drones"] == plan["drones"]


BAD = {
    "duplicate task ids": lambda b: {**b, "tasks": b["tasks"] + [b["tasks"][0]]},
    "home is no vertiport": lambda b: {**b, "drones": [{**b["drones"][0], "home": "VP-X"}]},
    "window ends before it starts": lambda b: {**b, "tasks": [
        {**b["tasks"][0], "window": {"start": _iso(60), "end": _iso(0)}}]},
    "naive start": lambda b: {**b, "start": "2030-05-01T08:00:00"},
    "no place": lambda b: {**b, "tasks": [{"id": "x", "service_s": 10}]},
    "two places": lambda b: {**b, "tasks": [{**b["tasks"][0], "area": HERE.polygon(
        0, 0, 10, 10)}]},
    "negative payload": lambda b: {**b, "tasks": [{**b["tasks"][2], "payload_kg": -1}]},
    "zero speed": lambda b: {**b, "drones": [{**b["drones"][0], "speed_ms": 0}]},
    "no drones": lambda b: {**b, "drones": []},
    "latitude off the globe": lambda b: {**b, "tasks": [{**b["tasks"][0],
                                                         "position": [114.2, 123.0]}]},
    "bow-tie area": lambda b: {**b, "tasks": [{**b["tasks"][1], "area": {
        "type": "Polygon", "coordinates": [[HERE.ll(0, 0), HERE.ll(10, 10), HERE.ll(10, 0),
                                            HERE.ll(0, 10), HERE.ll(0, 0)]]}}]},
    "unknown field": lambda b: {**b, "fleet": []},
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_payload_is_422_with_reasons_and_nothing_stored(api, auth, city, case):
    w = auth("operator")
    before = _count(city)
    r = api.post("/fleet/plans", json=BAD[case](_body()), headers=w)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"]
    assert _count(city) == before


def test_reasons_are_listed_all_at_once(api, auth):
    b = _body()
    b["drones"][0]["home"] = "nowhere"
    b["tasks"].append(b["tasks"][0])
    r = api.post("/fleet/plans", json=b, headers=auth("operator"))
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert any("nowhere" in e for e in errors) and any("twice" in e for e in errors)


def test_a_plan_needs_a_writer_key(api, auth, city):
    before = _count(city)
    assert api.post("/fleet/plans", json=_body()).status_code == 401
    assert api.post("/fleet/plans", json=_body(), headers=auth("viewer")).status_code == 403
    assert _count(city) == before


def test_prohibited_zones_refuse_a_vertiport_and_report_a_task(api, auth, city):
    zone = {"name": "fleet test no-fly", "zone_type": "prohibited",
            "geometry": HERE.polygon(2500, 2500, 3500, 3500), "floor_m": 0, "ceiling_m": 500}
    assert api.post("/airspace-zones", json=zone, headers=auth("admin")).status_code == 201
    w = auth("operator")
    before = _count(city)
    b = _body()
    b["vertiports"].append({"id": "VP-Z", "position": HERE.ll(3000, 3000)})
    r = api.post("/fleet/plans", json=b, headers=w)
    assert r.status_code == 422 and "VP-Z" in r.json()["detail"]
    assert _count(city) == before
    b = _body()
    b["tasks"].append({"id": "inside", "position": HERE.ll(3000, 3100), "service_s": 30})
    r = api.post("/fleet/plans", json=b, headers=w)
    assert r.status_code == 201
    reasons = {u["task"]: u["reason"] for u in r.json()["unassigned"]}
    assert reasons["inside"] == "in_prohibited_zone"
    assert r.json()["planned"] == 3


def test_replan_after_a_drop_out_and_an_added_task(api, auth, city):
    w = auth("operator")
    body = _body()
    first = api.post("/fleet/plans", json=body, headers=w).json()
    at = _iso(1)  # before any trip has begun its work
    r = api.post(f"/fleet/plans/{first['id']}/replan", headers=w, json={
        "at": at, "dropped": ["D1"], "time_limit_s": 1,
        "add_tasks": [{"id": "late", "position": HERE.ll(4500, -500), "service_s": 60,
                       "priority": 4}]})
    assert r.status_code == 201, r.text
    again = r.json()
    assert again["parent_id"] == first["id"] and again["kind"] == "replan"
    by = {d["drone"]: d for d in again["drones"]}
    flown_d1 = [t for t in by["D1"]["trips"]]
    assert all(datetime.fromisoformat(t["departure"]) <= datetime.fromisoformat(at)
               for t in flown_d1)
    served = {s["task"] for t in by["D2"]["trips"] for s in t["stops"]}
    assert "late" in served
    # what D1 had is now D2's or reported, never lost
    had = {s["task"] for d in first["drones"] if d["drone"] == "D1" for t in d["trips"]
           for s in t["stops"]}
    reported = {u["task"] for u in again["unassigned"]}
    assert had <= served | reported | set(again["completed"])
    # refusals store nothing
    before = _count(city)
    for bad in ({"dropped": ["D9"]}, {"remove_tasks": ["nope"]},
                {"add_tasks": [{"id": "insp-1", "position": HERE.ll(0, 0)}]}):
        r = api.post(f"/fleet/plans/{first['id']}/replan", headers=w, json=bad)
        assert r.status_code == 422, r.text
    assert api.post("/fleet/plans/999999/replan", headers=w, json={}).status_code == 404
    assert _count(city) == before


def test_emergency_goes_to_the_nearest_suitable_drone_or_is_answered_none(api, auth, city):
    w = auth("operator")
    body = _body(tasks=[])
    first = api.post("/fleet/plans", json=body, headers=w).json()
    r = api.post(f"/fleet/plans/{first['id']}/emergency", headers=w, json={
        "at": _iso(5), "task": {"id": "fire-1", "type": "fire", "position": HERE.ll(4600, 200),
                                "service_s": 300, "payload_kg": 1}})
    assert r.status_code == 201, r.text
    e = r.json()["emergency"]
    assert e["drone"] == "D2" and e["preempted"] == []
    assert datetime.fromisoformat(e["eta"]) > T0 + timedelta(minutes=5)
    before = _count(city)
    r = api.post(f"/fleet/plans/{first['id']}/emergency", headers=w, json={
        "at": _iso(5), "task": {"id": "fire-2", "position": HERE.ll(100, 100),
                                "payload_kg": 50}})
    assert r.status_code == 409, r.text
    assert "no drone available" in r.json()["detail"]
    assert set(r.json()["refused"]) == {"D1", "D2"}
    assert _count(city) == before
