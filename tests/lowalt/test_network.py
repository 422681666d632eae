"""The route network on a small generated city: a 3 x 3 road grid (GeoJSON guides) with low
buildings along the roads, a 60 m tower standing on one road, a prohibited zone over
another, and three vertiports.

Known truth: the tower blocks the 30 and 55 m layers (top 60 m + 10 m clearance +
5 m half-height) and leaves the 80 m (westbound) layer; the zone blocks both directions of
its road; every kept edge passes the service's own validation (POST /drone-routes/validate,
as any filed route); layers follow the heading rule; corridors meet only at nodes, and
flows crossing there are 25 m apart vertically; capacity is
floor(3600 / ((30 + 2 * 10) / 15 + 10)) = 270 per hour.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shapely
from helpers_lowalt import Local, drone, now, window

from tiler.crs import geoid_undulation

HERE = Local(0, 20)
# the city lies at sea level: its ground is the geoid here (what the service falls back to
# far from buildings), so every ground source agrees
_C = HERE.ll(400, 400)
GROUND = float(geoid_undulation(np.array([_C[0]] * 2), np.array([_C[1]] * 2))[0])
GRID = (0.0, 400.0, 800.0)
TOWER = (580.0, 390.0, 620.0, 410.0)  # on the road y = 400 between x = 400 and 800
ZONE = (750.0, 150.0, 850.0, 250.0)  # over the road x = 800 between y = 0 and 400
CAPACITY = math.floor(3600 / ((30 + 2 * 10) / 15 + 10))


def roads() -> dict:
    feats = []
    for i, c in enumerate(GRID):
        for name, line in ((f"ns-{i}", [(c, 0), (c, 800)]), (f"ew-{i}", [(0, c), (800, c)])):
            feats.append({"type": "Feature", "properties": {"name": name},
                          "geometry": {"type": "LineString",
                                       "coordinates": [HERE.ll(x, y) for x, y in line]}})
    return {"type": "FeatureCollection", "features": feats}


def metric(coords: list[list[float]]) -> np.ndarray:
    c = np.asarray(coords, float)
    x, y = HERE.fr.to_metric(c[:, 0], c[:, 1])
    return np.column_stack([x - HERE.ox, y - HERE.oy, c[:, 2] - GROUND])


@pytest.fixture(scope="module")
def world(db_url):
    """The city, zone and vertiports, made once for the module (one database)."""
    from helpers_lowalt import City
    from sqlalchemy import text

    city = City(db_url)
    for k, (x, y) in enumerate(itertools.product((100, 300, 500, 700), (40, 440))):
        city.building(HERE, f"low-{k}", (x, y, x + 40, y + 30), height=12, ground=GROUND)
    city.building(HERE, "tower", TOWER, height=60, ground=GROUND)
    with city.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO airspace_zones (name, zone_type, geom, floor_m, ceiling_m)"
            " VALUES ('barracks', 'prohibited', ST_GeomFromText(:w, 4326), 0, 300)"),
            {"w": HERE.wkt(*ZONE)})
    return city


@pytest.fixture(scope="module")
def ports():
    return {}


def _edges(api, **params) -> list[dict]:
    r = api.get("/collections/route_network/items", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["features"]


def test_a_vertiport_in_a_prohibited_zone_is_refused(api, auth, world):
    planner = auth("planner")
    before = world.count("vertiports")
    r = api.post("/airspace/vertiports", json={
        "name": "inside the barracks", "position": HERE.ll(800, 200), "capacity_per_hour": 30},
        headers=planner)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "prohibited zone" in problem["detail"] and "barracks" in problem["detail"]
    assert [v["rule"] for v in problem["violations"]] == ["zone"]
    assert world.count("vertiports") == before
    # an operator may not add vertiports at all
    r = api.post("/airspace/vertiports", json={
        "name": "x", "position": HERE.ll(200, -60), "capacity_per_hour": 30},
        headers=auth("operator"))
    assert r.status_code == 403


def test_generate_keeps_only_valid_edges_on_heading_layers(api, auth, world, ports):
    planner = auth("planner")
    for name, (x, y) in {"south": (200, -60), "north": (600, 860), "west": (-60, 600)}.items():
        r = api.post("/airspace/vertiports", json={
            "name": name, "code": name, "position": HERE.ll(x, y), "capacity_per_hour": 30},
            headers=planner)
        assert r.status_code == 201, r.text
        ports[name] = r.json()["id"]
    r = api.post("/airspace/network/generate", json={"guides": roads(), "note": "grid"},
                 headers=planner)
    assert r.status_code == 201, r.text
    out = r.json()
    edges = _edges(api)
    assert len(edges) == out["edges"] > 0
    # the tower: only the westbound (80 m) edge of its road survives; the zone: both gone
    dropped = out["dropped_edges"]
    tower = [d for d in dropped if "'tower'" in d["reason"]]
    assert sorted(d["layer"] for d in tower) == [1]  # eastbound at 55 m
    assert all(d["rules"] == ["building_clearance"] for d in tower)
    zone = [d for d in dropped if "barracks" in d["reason"]]
    assert sorted(d["layer"] for d in zone) == [0, 2]  # northbound and southbound
    assert len(dropped) == 3
    for f in edges:
        xyz = metric(f["geometry"]["coordinates"])
        p = f["properties"]
        # the heading rule, from the geometry
        h = math.degrees(math.atan2(xyz[-1, 0] - xyz[0, 0], xyz[-1, 1] - xyz[0, 1])) % 360
        sector = int(((h + 45) % 360) // 90)
        assert p["layer"] == sector, f
        assert np.allclose(xyz[:, 2], 30 + 25 * sector, atol=0.05), f
        assert p["capacity_per_hour"] == CAPACITY
        on_tower_road = abs(xyz[:, 1] - 400).max() < 1 and xyz[:, 0].min() >= 399
        if on_tower_road:
            assert p["layer"] == 3
    assert {f["properties"]["source"] for f in edges} == {"guide", "connector"}


def test_fleet_plans_fly_the_network_paths(api, auth, world):
    """With a network, a fleet plan's legs take the network's shortest-path times (climb,
    corridors, layer changes, descent), not the straight line."""
    from datetime import UTC, datetime, timedelta

    pad, task = HERE.ll(200, -60), HERE.ll(700, 800)
    r = api.post("/airspace/network/travel-times", json={"positions": [pad, task]},
                 headers=auth("planner"))
    assert r.status_code == 200, r.text
    network_s = r.json()["seconds"][0][1]
    # on a network every planned flight is reserved: the drone must be a registered one
    r = api.post("/drones", json={"serial": "NET-FLEET-D", "operator": "Longgang test ops",
                                  "class": "light"}, headers=auth("operator"))
    assert r.status_code == 201, r.text
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # within 30 days
    body = {"start": start.isoformat(),
            "vertiports": [{"id": "VP", "position": pad}],
            "drones": [{"id": "NET-FLEET-D", "home": "VP", "endurance_min": 30, "payload_kg": 2,
                        "speed_ms": 15}],
            "tasks": [{"id": "look", "position": task, "service_s": 60}], "time_limit_s": 1}
    r = api.post("/fleet/plans", json=body, headers=auth("operator"))
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["travel"].startswith("route network version")
    [trip] = plan["drones"][0]["trips"]
    leg = (datetime.fromisoformat(trip["stops"][0]["arrival"])
           - datetime.fromisoformat(trip["departure"])).total_seconds()
    straight = float(np.hypot(500, 860)) / 15
    assert abs(leg - network_s) <= 1.5, (leg, network_s)
    assert leg > straight * 1.05  # the corridors are longer than the straight line


def test_every_edge_passes_the_services_own_validation(api, auth, world):
    w = auth("operator")
    d = drone(api, w)
    for f in _edges(api):
        body = {"drone_id": d, "geometry": f["geometry"], "half_width_m": 10,
                "vertical_half_m": 5, **window(5, 60)}
        r = api.post("/drone-routes/validate", json=body, headers=w)
        assert r.status_code == 200, r.text
        assert r.json()["verdict"] == "accepted", (f["id"], r.json()["violations"])


def test_corridors_meet_only_at_nodes_and_crossings_are_separated(api, world):
    edges = _edges(api)
    lines = [metric(f["geometry"]["coordinates"]) for f in edges]
    crossings = 0
    for (fa, a), (fb, b) in itertools.combinations(zip(edges, lines, strict=True), 2):
        la, lb = shapely.LineString(a[:, :2]), shapely.LineString(b[:, :2])
        if not la.intersects(lb):
            continue
        pa, pb = fa["properties"], fb["properties"]
        shared = {pa["from_node"], pa["to_node"]} & {pb["from_node"], pb["to_node"]}
        # noded guides: corridors meet at their nodes, never between them
        assert shared, (fa["id"], fb["id"])
        if pa["layer"] == pb["layer"]:
            continue  # one flow merging or splitting at a node
        crossings += 1
        za = lines[edges.index(fa)][:, 2]
        zb = lines[edges.index(fb)][:, 2]
        assert abs(za.mean() - zb.mean()) >= 20 - 0.1, (fa["id"], fb["id"])
    assert crossings > 0


def test_edits_are_versions_with_history(api, auth, world):
    planner = auth("planner")
    edges = _edges(api)
    # a grid road: northbound on x = 400 from y = 0 to 400; other ways round exist
    [e] = [f for f in edges if f["properties"]["layer"] == 0
           and abs(metric(f["geometry"]["coordinates"])[:, 0] - 400).max() < 1
           and metric(f["geometry"]["coordinates"])[:, 1].max() < 401]
    before_close = now()
    r = api.post(f"/airspace/network/edges/{e['id']}/close",
                 json={"reason": "crane works", "both_directions": False}, headers=planner)
    assert r.status_code == 200, r.text
    assert r.json()["closed"] == [e["id"]] and r.json()["flagged"] is False
    now_ids = {f["id"] for f in _edges(api)}
    assert e["id"] not in now_ids and len(now_ids) == len(edges) - 1
    # the history: at a time before the close the edge was there
    then = {f["id"]: f for f in _edges(api, datetime=before_close.isoformat())}
    assert e["id"] in then
    r = api.post(f"/airspace/network/edges/{e['id']}/close", json={"reason": "again"},
                 headers=planner)
    assert r.status_code == 409
    versions = api.get("/airspace/network/versions").json()
    assert [v["change"] for v in versions[:2]] == ["close", "generate"]
    assert versions[0]["parent_id"] == versions[1]["id"]
    assert versions[0]["note"] == "crane works"
    # a planner adds a corridor back on the same nodes: validated, a new version
    p = e["properties"]
    r = api.post("/airspace/network/edges", json={
        "from_node": p["from_node"], "to_node": p["to_node"], "both_directions": False,
        "note": "reopened"}, headers=planner)
    assert r.status_code == 201, r.text
    [added] = r.json()["added"]
    assert r.json()["edges"][0]["layer"] == 0
    cur = {f["id"]: f for f in _edges(api)}
    assert cur[added]["properties"]["source"] == "planner"
    assert cur[added]["properties"]["version_from"] == r.json()["version"]


def test_a_corridor_through_the_tower_is_refused(api, auth, world):
    planner = auth("planner")
    edges = _edges(api)
    nodes = {}
    for f in edges:
        xyz = metric(f["geometry"]["coordinates"])
        nodes[f["properties"]["from_node"]] = xyz[0, :2]
    # from the junction (400, 400) eastward to (800, 400): the tower on the road
    a = next(k for k, v in nodes.items() if np.allclose(v, (400, 400), atol=0.5))
    b = next(k for k, v in nodes.items() if np.allclose(v, (800, 400), atol=0.5))
    n_versions = len(api.get("/airspace/network/versions").json())
    r = api.post("/airspace/network/edges", json={"from_node": a, "to_node": b,
                                                 "both_directions": False}, headers=planner)
    assert r.status_code == 422, r.text
    assert "'tower'" in r.json()["detail"]
    assert len(api.get("/airspace/network/versions").json()) == n_versions


def test_an_edit_that_disconnects_a_vertiport(api, auth, world, ports):
    planner = auth("planner")
    edges = _edges(api)
    vp_nodes = {f["properties"]["from_node"] for f in edges
                if f["properties"]["source"] == "connector"
                and abs(metric(f["geometry"]["coordinates"])[0, 0] + 60) < 0.5}
    [west] = vp_nodes
    [leaving] = [f for f in edges if f["properties"]["from_node"] == west]
    n_edges, n_versions = len(edges), len(api.get("/airspace/network/versions").json())
    r = api.post(f"/airspace/network/edges/{leaving['id']}/close",
                 json={"reason": "pad works"}, headers=planner)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert "disconnects" in problem["detail"]
    assert [d["vertiport"] for d in problem["disconnected"]] == [ports["west"]]
    assert len(_edges(api)) == n_edges
    assert len(api.get("/airspace/network/versions").json()) == n_versions
    # asked for: accepted, and flagged in the version
    r = api.post(f"/airspace/network/edges/{leaving['id']}/close",
                 json={"reason": "pad works", "allow_disconnect": True}, headers=planner)
    assert r.status_code == 200, r.text
    assert r.json()["flagged"] is True and len(r.json()["closed"]) == 2
    v = api.get("/airspace/network/versions").json()[0]
    assert any(f["disconnected"]["vertiport"] == ports["west"] for f in v["flags"])
    assert len(_edges(api)) == n_edges - 2


def test_vertiports_and_network_are_feature_collections(api, world, ports):
    r = api.get("/collections")
    ids = {c["id"] for c in r.json()["collections"]}
    assert {"route_network", "vertiports"} <= ids
    feats = api.get("/collections/vertiports/items").json()["features"]
    assert {f["properties"]["code"] for f in feats} == {"south", "north", "west"}
    r = api.get("/airspace/network")
    assert r.status_code == 200 and r.json()["current_edges"] == len(_edges(api))
