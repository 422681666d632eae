"""Route validation against the city model, the height limit and airspace zones."""

from __future__ import annotations

from helpers_lowalt import GROUND, Local, drone, file, route_body, rules, window


def test_route_through_a_building_is_refused_with_where(api, auth, city):
    w = auth("operator")
    here = Local(0)
    row = city.building(here, "tower-A", (480, -20, 520, 20), height=80)
    d = drone(api, w)
    # 1 km east at 40 m above ground: straight through the 80 m tower at x 480..520
    body = route_body(d, here.line([(0, 0, 40), (1000, 0, 40)]))
    out = file(api, w, body)
    v = out["validation"]
    assert v["verdict"] == "refused"
    [hit] = [x for x in v["violations"] if x["rule"] == "building_clearance"]
    assert hit["city_object"] == "tower-A" and hit["city_object_row"] == row
    assert hit["severity"] == "refuse"
    # the clearance volume starts 10 m (half-width) + 15 m (clearance) before the wall
    assert abs(hit["from_fraction"] - 0.455) < 0.002
    assert abs(hit["to_fraction"] - 0.545) < 0.002
    assert abs(hit["point"][0] - here.ll(455, 0)[0]) < 1e-6
    assert out["properties"]["status"] == "planned"
    assert out["properties"]["verdict"] == "refused"
    assert out["properties"]["city_model_version"]
    # approving a refused route is refused
    r = api.post(f"/drone-routes/{out['id']}/approve", headers=w)
    assert r.status_code == 409


def test_clearance_over_and_beside_a_building(api, auth, city):
    w = auth("operator")
    here = Local(3)
    city.building(here, "low-B", (480, -20, 520, 20), height=30)
    d = drone(api, w)
    # 30 m roof + 10 m clearance + 5 m vertical half-height: 45 m is just clear, 44 is not
    ok = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 0, 45.5), (1000, 0, 45.5)])), headers=w).json()
    assert ok["verdict"] == "accepted", ok["violations"]
    low = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 0, 44), (1000, 0, 44)])), headers=w).json()
    assert rules(low) == ["building_clearance"]
    # beside it at the same low height: 20 m + 10 m half-width + 15 m clearance = 46 m off
    beside = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 67, 20), (1000, 67, 20)])), headers=w).json()
    assert beside["verdict"] == "accepted", beside["violations"]
    near = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 40, 20), (1000, 40, 20)])), headers=w).json()
    assert rules(near) == ["building_clearance"]
    # margins are settings: a wider horizontal clearance catches the 67 m line too
    assert near["checked"]["margins"]["clearance_h_m"] == 15


def test_over_120m_needs_approval_not_refusal(api, auth, city):
    w = auth("operator")
    here = Local(6)
    d = drone(api, w)
    climb = here.line([(0, 0, 50), (500, 0, 50), (600, 0, 150), (900, 0, 150), (1000, 0, 60)])
    out = file(api, w, route_body(d, climb))
    v = out["validation"]
    assert v["verdict"] == "needs_approval"
    [hit] = v["violations"]
    assert hit["rule"] == "height_limit" and hit["severity"] == "needs_approval"
    assert abs(hit["height_agl_m"] - 155) < 0.5 and hit["limit_m"] == 120
    assert 0.55 < hit["from_fraction"] < 0.6 and 0.9 < hit["to_fraction"] < 0.95
    assert v["checked"]["ground_source"] == {"egm96_sea_level": v["checked"]["samples"]}
    # an operator cannot approve it; an admin with a permit reference can
    r = api.post(f"/drone-routes/{out['id']}/approve", headers=w)
    assert r.status_code == 403
    r = api.post(f"/drone-routes/{out['id']}/approve", json={"authorisation": "SZ-2026-17"},
                 headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert api.get(f"/drone-routes/{out['id']}").json()["properties"]["authorisation"] \
        == "SZ-2026-17"


def test_micro_drones_are_limited_to_50m(api, auth):
    w = auth("operator")
    here = Local(9)
    micro = drone(api, w, "micro")
    body = route_body(micro, here.line([(0, 0, 60), (300, 0, 60)]))
    v = api.post("/drone-routes/validate", json=body, headers=w).json()
    assert rules(v) == ["height_limit"] and v["violations"][0]["limit_m"] == 50
    body = route_body(drone(api, w, "small"), here.line([(0, 0, 60), (300, 0, 60)]))
    assert api.post("/drone-routes/validate", json=body, headers=w).json()["verdict"] \
        == "accepted"


def test_height_above_ground_follows_the_city_models_ground(api, auth, city):
    w = auth("operator")
    here = Local(12)
    # a plateau: buildings standing 80 m above the sea-level test ground
    city.building(here, "plateau-1", (0, 300, 20, 320), height=10, ground=GROUND + 80)
    city.building(here, "plateau-2", (100, 300, 120, 320), height=10, ground=GROUND + 80)
    d = drone(api, w)
    # 180 m over the sea-level ground is 100 m over the plateau: fine there, not far away
    near = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 150, 180), (120, 150, 180)])), headers=w).json()
    assert near["verdict"] == "accepted", near["violations"]
    assert near["checked"]["ground_source"] == {"city_model": near["checked"]["samples"]}
    assert abs(near["checked"]["height_agl_m"]["max"] - 100) < 0.01
    far = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(2000, 150, 180), (2120, 150, 180)])), headers=w).json()
    assert rules(far) == ["height_limit"]
    # heights may be given above ground; they are stored on the ellipsoid
    agl = route_body(d, {"type": "LineString", "coordinates": [
        [*here.ll(0, 150), 100], [*here.ll(120, 150), 100]]}, height_reference="agl")
    out = file(api, w, agl)
    assert abs(out["geometry"]["coordinates"][0][2] - (GROUND + 180)) < 0.01


def test_zones_refuse_flag_and_notice(api, auth):
    w, admin = auth("operator"), auth("admin")
    here = Local(15)
    zones = {}
    for name, kind, box in (("hospital", "prohibited", (200, -50, 300, 50)),
                            ("port", "needs_authorisation", (500, -50, 600, 50)),
                            ("park", "conditional", (800, -50, 900, 50))):
        r = api.post("/airspace-zones", json={
            "name": name, "zone_type": kind, "geometry": here.polygon(*box),
            "floor_m": 0, "ceiling_m": 300, "reason": "test", "authority": "CAAC"},
            headers=admin)
        assert r.status_code == 201, r.text
        zones[name] = r.json()["id"]
    # an operator may not define zones
    assert api.post("/airspace-zones", json={
        "name": "x", "zone_type": "prohibited", "geometry": here.polygon(0, 0, 1, 1),
        "floor_m": 0, "ceiling_m": 1}, headers=w).status_code == 403
    d = drone(api, w)
    v = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 0, 60), (1000, 0, 60)])), headers=w).json()
    assert v["verdict"] == "refused"
    got = {x["zone"]: x for x in v["violations"] if x["rule"] == "zone"}
    assert got[zones["hospital"]]["severity"] == "refuse"
    assert got[zones["port"]]["severity"] == "needs_approval"
    assert got[zones["park"]]["severity"] == "notice"
    assert abs(got[zones["hospital"]]["from_fraction"] - 0.19) < 0.006
    # above the prohibited zone's ceiling there is nothing to refuse
    over = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, -200, 60), (1000, -200, 60)])), headers=w).json()
    assert over["verdict"] == "accepted"


def test_zone_validity_is_the_fourth_dimension(api, auth):
    w, admin = auth("operator"), auth("admin")
    here = Local(18)
    later = window(start_min=120, minutes=60)
    r = api.post("/airspace-zones", json={
        "name": "event", "zone_type": "prohibited", "geometry": here.polygon(200, -50, 300, 50),
        "floor_m": 0, "ceiling_m": 500, "valid_from": later["start_time"],
        "valid_to": later["end_time"]}, headers=admin)
    assert r.status_code == 201, r.text
    d = drone(api, w)
    line = here.line([(0, 0, 60), (1000, 0, 60)])
    now_body = route_body(d, line)
    assert api.post("/drone-routes/validate", json=now_body, headers=w).json()["verdict"] \
        == "accepted"
    during = {**now_body, **later}
    assert rules(api.post("/drone-routes/validate", json=during, headers=w).json()) == ["zone"]


def test_listing_and_geojson(api, auth):
    w = auth("operator")
    here = Local(21)
    d = drone(api, w)
    out = file(api, w, route_body(d, here.line([(0, 0, 60), (300, 0, 60)]), name="survey 1"))
    listing = api.get("/drone-routes", params={"drone_id": d}).json()
    assert listing["type"] == "FeatureCollection"
    [f] = listing["features"]
    assert f["id"] == out["id"] and f["geometry"]["type"] == "LineString"
    assert f["properties"]["corridor"]["type"] == "Polygon"
    assert len(f["geometry"]["coordinates"][0]) == 3


def _v_corridor(here: Local) -> tuple[dict, dict]:
    """A V-shaped line and the triangle around it: the triangle's top edge is 219 m from
    the line at its middle, while every vertex of it is at most 30 m from the line."""
    line = here.line([(0, 0, 60), (300, -300, 60), (600, 0, 60)])
    ring = [here.ll(x, y) for x, y in ((-20, 10), (300, -330), (620, 10), (-20, 10))]
    return line, {"type": "Polygon", "coordinates": [ring]}


def test_checks_cover_all_of_a_filed_corridor(api, auth, city):
    w = auth("operator")
    here = Local(24)
    line, triangle = _v_corridor(here)
    # a 93 m building inside the triangle, 184 m from the line: inside the filed corridor
    city.building(here, "in-the-v", (280, -60, 320, -20), height=93)
    d = drone(api, w)
    out = api.post("/drone-routes/validate", json=route_body(d, line, corridor=triangle),
                   headers=w).json()
    assert out["verdict"] == "refused", out
    [hit] = [v for v in out["violations"] if v["rule"] == "building_clearance"]
    assert hit["city_object"] == "in-the-v"
    margins = out["checked"]["margins"]
    assert 219 <= margins["half_width_m"] < 221, margins
    # the same line with its default 10 m corridor passes the building
    plain = api.post("/drone-routes/validate", json=route_body(d, line), headers=w).json()
    assert plain["verdict"] == "accepted", plain["violations"]


def test_corridor_wider_than_its_half_width_is_refused(api, auth, city):
    w = auth("operator")
    here = Local(27)
    line, triangle = _v_corridor(here)
    d = drone(api, w)
    before = city.count("drone_routes")
    r = api.post("/drone-routes", json=route_body(d, line, corridor=triangle, half_width_m=40),
                 headers=w)
    assert r.status_code == 422, r.text
    assert "reaches 219" in r.json()["detail"] and "half_width_m" in r.json()["detail"]
    assert city.count("drone_routes") == before
    # a half-width that holds it is taken, and is what is stored
    out = file(api, w, route_body(d, line, corridor=triangle, half_width_m=230))
    assert out["properties"]["half_width_m"] == 230


def test_clearance_at_a_footprint_corner_is_never_short(api, auth, city):
    """A line passing a corner 24.9 m away (needs 10 + 15 = 25 m), where the buffer polygon
    of 8 segments per quarter circle cuts 0.5 % inside the circle."""
    import math

    w = auth("operator")
    here = Local(30)
    city.building(here, "corner", (480, -20, 520, 20), height=80)
    a = math.pi / 32  # the middle of the first segment of the corner's arc
    px, py = 520 + 24.9 * math.cos(a), 20 + 24.9 * math.sin(a)
    tx, ty = -math.sin(a), math.cos(a)
    line = here.line([(px - 400 * tx, py - 400 * ty, 40), (px + 400 * tx, py + 400 * ty, 40)])
    d = drone(api, w)
    out = api.post("/drone-routes/validate", json=route_body(d, line), headers=w).json()
    assert rules(out) == ["building_clearance"], out
    assert 24.8 < out["violations"][0]["horizontal_m"] < 25
    # 25.2 m off the corner is clear
    px, py = 520 + 25.2 * math.cos(a), 20 + 25.2 * math.sin(a)
    line = here.line([(px - 400 * tx, py - 400 * ty, 40), (px + 400 * tx, py + 400 * ty, 40)])
    out = api.post("/drone-routes/validate", json=route_body(d, line), headers=w).json()
    assert out["verdict"] == "accepted", out["violations"]


def test_zone_margin_is_stated(api, auth):
    w, admin = auth("operator"), auth("admin")
    here = Local(33)
    r = api.post("/airspace-zones", json={
        "name": "school", "zone_type": "prohibited", "geometry": here.polygon(0, 20, 1000, 120),
        "floor_m": 0, "ceiling_m": 300}, headers=admin)
    assert r.status_code == 201, r.text
    d = drone(api, w)
    # the corridor's edge is 1.5 m from the zone: inside the stated 2.5 m margin
    near = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 8.5, 60), (1000, 8.5, 60)])), headers=w).json()
    assert near["checked"]["margins"]["zone_margin_m"] == 2.5
    assert rules(near) == ["zone"]
    clear = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 7, 60), (1000, 7, 60)])), headers=w).json()
    assert clear["verdict"] == "accepted", clear["violations"]


def test_ground_from_sea_level_is_said(api, auth, city):
    w = auth("operator")
    here = Local(36)
    d = drone(api, w)
    out = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 0, 60), (300, 0, 60)])), headers=w).json()
    assert out["checked"]["ground_source"] == {"egm96_sea_level": out["checked"]["samples"]}
    assert "sea level" in out["checked"]["ground_note"]
    city.building(here, "ground-here", (100, 40, 140, 80), height=10)
    out = api.post("/drone-routes/validate", json=route_body(
        d, here.line([(0, 0, 60), (300, 0, 60)])), headers=w).json()
    assert "ground_note" not in out["checked"]
