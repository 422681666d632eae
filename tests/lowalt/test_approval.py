"""Approval checks the route again against what holds at approval time, not the verdict
stored when it was filed."""

from __future__ import annotations

from helpers_lowalt import Local, drone, file, route_body


def _approve(api, headers, route_id: int, **body):
    return api.post(f"/drone-routes/{route_id}/approve", json=body or None, headers=headers)


def test_zone_declared_after_filing_refuses_approval(api, auth):
    w, admin = auth("operator"), auth("admin")
    here = Local(0)
    body = route_body(drone(api, w), here.line([(0, 0, 60), (1000, 0, 60)]))
    out = file(api, w, body)
    assert out["validation"]["verdict"] == "accepted"
    r = api.post("/airspace-zones", json={
        "name": "incident", "zone_type": "prohibited", "geometry": here.polygon(400, -50, 600, 50),
        "floor_m": 0, "ceiling_m": 300}, headers=admin)
    assert r.status_code == 201, r.text
    zone = r.json()["id"]
    assert api.post("/drone-routes/validate", json=body, headers=w).json()["verdict"] \
        == "refused"
    r = _approve(api, w, out["id"])
    assert r.status_code == 409, r.text
    problem = r.json()
    assert "validation" in problem["detail"]
    assert [v["zone"] for v in problem["violations"] if v["rule"] == "zone"] == [zone]
    assert api.get(f"/drone-routes/{out['id']}").json()["properties"]["status"] == "planned"


def test_building_added_after_filing_refuses_approval(api, auth, city):
    w = auth("operator")
    here = Local(3)
    out = file(api, w, route_body(drone(api, w), here.line([(0, 0, 40), (1000, 0, 40)])))
    assert out["validation"]["verdict"] == "accepted"
    # a survey lands a 90 m tower on the line after the route was filed
    city.building(here, "new-tower", (480, -20, 520, 20), height=90)
    r = _approve(api, w, out["id"])
    assert r.status_code == 409, r.text
    [hit] = r.json()["violations"]
    assert hit["rule"] == "building_clearance" and hit["city_object"] == "new-tower"


def test_authorisation_zone_after_filing_needs_an_admin(api, auth):
    w, admin = auth("operator"), auth("admin")
    here = Local(6)
    out = file(api, w, route_body(drone(api, w), here.line([(0, 0, 60), (1000, 0, 60)])))
    assert out["validation"]["verdict"] == "accepted"
    r = api.post("/airspace-zones", json={
        "name": "port", "zone_type": "needs_authorisation",
        "geometry": here.polygon(400, -50, 600, 50), "floor_m": 0, "ceiling_m": 300},
        headers=admin)
    assert r.status_code == 201, r.text
    assert _approve(api, w, out["id"]).status_code == 403
    r = _approve(api, admin, out["id"], authorisation="SZ-PORT-1")
    assert r.status_code == 200, r.text
    # what approval checked is kept with the route
    props = api.get(f"/drone-routes/{out['id']}").json()["properties"]
    assert props["status"] == "approved" and props["verdict"] == "needs_approval"
    assert [v["rule"] for v in props["validation"]["violations"]] == ["zone"]


def test_unchanged_world_still_approves(api, auth):
    w = auth("operator")
    here = Local(9)
    out = file(api, w, route_body(drone(api, w), here.line([(0, 0, 60), (500, 0, 60)])))
    r = _approve(api, w, out["id"])
    assert r.status_code == 200, r.text
    assert r.json()["validation"]["verdict"] == "accepted"


def test_a_suspended_flight_is_approved_again_while_its_window_runs(api, auth, city):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    w = auth("operator")
    here = Local(12)
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    out = file(api, w, {**route_body(drone(api, w), here.line([(0, 0, 60), (500, 0, 60)])),
                        "start_time": t0.isoformat(),
                        "end_time": (t0 + timedelta(minutes=30)).isoformat()})
    rid = out["id"]
    assert _approve(api, w, rid).status_code == 200
    for status in ("active", "suspended"):
        assert api.post(f"/drone-routes/{rid}/status", json={"status": status},
                        headers=w).status_code == 200
    # twenty minutes into its window (a filing would be refused as starting in the past)
    with city.engine.begin() as conn:
        conn.execute(text("UPDATE drone_routes SET time_window = tstzrange(now() - interval"
                          " '20 minutes', now() + interval '10 minutes') WHERE id = :id"),
                     {"id": rid})
    r = _approve(api, w, rid)
    assert r.status_code == 200, r.text
    # once its window is over, it cannot be approved again
    assert api.post(f"/drone-routes/{rid}/status", json={"status": "suspended"},
                    headers=w).status_code == 200
    with city.engine.begin() as conn:
        conn.execute(text("UPDATE drone_routes SET time_window = tstzrange(now() - interval"
                          " '40 minutes', now() - interval '10 minutes') WHERE id = :id"),
                     {"id": rid})
    r = _approve(api, w, rid)
    assert r.status_code == 409, r.text
    assert r.json()["violations"][0]["rule"] == "volume"
    assert "ended" in r.json()["detail"]
