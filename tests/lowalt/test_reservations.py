"""4D reservations on the network, against the real database and a live server.

The network comes from the road table of the traffic layer: a 2 km east-west road crossed
by a north-south one, vertiports at the west end (W), the east end (E) and the north end
(N). Edges carry 270 flights per hour (a headway of 3600 / 270 = 13.33 s), so flights
asking for one departure on one path leave 13.33 s apart when they may wait, and of two
racing for one time exactly one gets it.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from helpers_lowalt import Local, drone, now
from sqlalchemy import text

HERE = Local(0, 40)
HEADWAY = 3600 / 270


@pytest.fixture(scope="module")
def net(db_url):
    """Roads in road_segments, three vertiports, the generated network (made through the
    app, once)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.core.auth import create_key
    from service.core.db import sync_engine
    from service.core.settings import Settings

    eng = sync_engine(db_url)
    with eng.begin() as conn:
        for code, line in (("ew", [(0, 0), (1000, 0), (2000, 0)]),
                           ("ns", [(1000, -800), (1000, 0), (1000, 800)])):
            wkt = "LINESTRING(" + ", ".join(f"{lon} {lat}" for lon, lat in
                                            (HERE.ll(x, y) for x, y in line)) + ")"
            conn.execute(text(
                "INSERT INTO road_segments (code, road_class, lanes, speed_limit_kmh,"
                " free_flow_kmh, length_m, geom) VALUES (:c, 'primary', 4, 60, 60, 2000,"
                " ST_GeomFromText(:w, 4326))"), {"c": code, "w": wkt})
    with eng.begin() as conn:
        key = create_key(conn, "net-planner", "planner")
    h = {"Authorization": f"Bearer {key}"}
    import tempfile
    from pathlib import Path

    settings = Settings(database_url=db_url, data_dir=Path(tempfile.mkdtemp()) / "var",
                        in_process_worker=False, load_samples=False)
    with TestClient(create_app(settings, db_url, in_process_worker=False)) as client:
        ports = {}
        for name, (x, y) in {"W": (-50, -40), "E": (2050, 40), "N": (1040, 850)}.items():
            r = client.post("/airspace/vertiports", json={
                "name": name, "code": name, "position": HERE.ll(x, y),
                "capacity_per_hour": 3600}, headers=h)
            assert r.status_code == 201, r.text
            ports[name] = r.json()["id"]
        r = client.post("/airspace/network/generate", json={"guides": "roads"}, headers=h)
        assert r.status_code == 201, r.text
        assert r.json()["dropped"] == 0 and r.json()["edges"] > 0
    eng.dispose()
    return ports


def _flight(api, headers, d: int, a: int, b: int, t0, **extra):
    return api.post("/airspace/network/flights", json={
        "drone_id": d, "from_vertiport": a, "to_vertiport": b, "departure": t0.isoformat(),
        **extra}, headers=headers)


def test_a_flight_reserves_every_place_on_its_path(api, auth, net):
    w = auth("operator")
    t0 = now() + timedelta(minutes=10)
    r = _flight(api, w, drone(api, w), net["W"], net["E"], t0)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["departure_delay_s"] == 0
    res = api.get(f"/airspace/network/flights/{out['reservation_id']}").json()
    kinds = [s["kind"] for s in res["slots"]]
    assert kinds.count("v") == 2 and kinds.count("e") == len(out["edges"]) >= 3
    assert "n" in kinds
    route = api.get(f"/drone-routes/{out['route_id']}").json()["properties"]
    assert route["status"] == "approved"
    # the path is flown eastbound: every corridor on the 55 m layer
    feats = {f["id"]: f for f in api.get("/collections/route_network/items",
                                         params={"limit": 1000}).json()["features"]}
    assert {feats[e]["properties"]["layer"] for e in out["edges"]} <= {0, 1, 2}
    assert feats[out["edges"][len(out["edges"]) // 2]]["properties"]["layer"] == 1
    # travel times over the network say the same duration
    lonlat = {k: HERE.ll(x, y) for k, (x, y) in
              {"W": (-50, -40), "E": (2050, 40)}.items()}
    r = api.post("/airspace/network/travel-times",
                 json={"positions": [lonlat["W"], lonlat["E"]]}, headers=w)
    assert r.status_code == 200, r.text
    tt = r.json()
    assert tt["access_m"] == [0.0, 0.0]
    assert tt["seconds"][0][1] == pytest.approx(out["duration_s"], abs=0.2)


def test_capacity_holds_flights_a_headway_apart(api, auth, net):
    w = auth("operator")
    t0 = now() + timedelta(hours=2)
    delays = []
    for _ in range(4):
        r = _flight(api, w, drone(api, w), net["W"], net["N"], t0, max_delay_s=600)
        assert r.status_code == 201, r.text
        delays.append(r.json()["departure_delay_s"])
    assert delays == pytest.approx([0, HEADWAY, 2 * HEADWAY, 3 * HEADWAY], abs=0.01)
    # without waiting, the fifth finds the time taken
    r = _flight(api, w, drone(api, w), net["W"], net["N"], t0)
    assert r.status_code == 409, r.text
    assert "full" in r.json()["detail"]


def test_racing_for_the_last_slot_exactly_one_wins_and_cancel_frees_it(api, auth, net):
    w = auth("operator")
    for round_ in range(4):
        t0 = now() + timedelta(hours=4, minutes=10 * round_)
        drones = [drone(api, w), drone(api, w)]
        barrier = threading.Barrier(2)
        codes: list[tuple[int, dict]] = []

        def go(d: int, t0=t0, barrier=barrier, codes=codes) -> None:
            import httpx

            with httpx.Client(base_url=str(api.base_url), timeout=60) as c:
                barrier.wait()
                r = _flight(c, w, d, net["E"], net["W"], t0)
                codes.append((r.status_code, r.json()))

        threads = [threading.Thread(target=go, args=(d,)) for d in drones]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(c for c, _ in codes) == [201, 409], codes
    [winner] = [b for c, b in codes if c == 201]
    # cancelling the winner frees its slots: the loser's flight goes through
    r = api.post(f"/airspace/network/flights/{winner['reservation_id']}/cancel", headers=w)
    assert r.status_code == 200 and r.json()["slots_freed"] > 0
    assert api.get(f"/drone-routes/{winner['route_id']}").json()["properties"]["status"] \
        == "retired"
    r = _flight(api, w, drone(api, w), net["E"], net["W"], t0)
    assert r.status_code == 201, r.text
    assert api.post(f"/airspace/network/flights/{winner['reservation_id']}/cancel",
                    headers=w).status_code == 409


def test_off_network_flights_keep_the_geometric_checks(api, auth, net):
    w = auth("operator")
    t0 = now() + timedelta(hours=8)
    r = _flight(api, w, drone(api, w), net["W"], net["E"], t0)
    assert r.status_code == 201, r.text
    on = r.json()
    # an off-network route along the road at the eastbound layer, at the same time
    from helpers_lowalt import GROUND

    line = {"type": "LineString", "coordinates": [
        [*HERE.ll(200, 0), GROUND + 50], [*HERE.ll(800, 0), GROUND + 50]]}
    body = {"drone_id": drone(api, w), "geometry": line, "start_time": t0.isoformat(),
            "end_time": (t0 + timedelta(minutes=10)).isoformat()}
    r = api.post("/drone-routes", json=body, headers=w)
    assert r.status_code == 201, r.text
    assert on["route_id"] in [c["route_id"] for c in r.json()["validation"]["conflicts"]]
    r = api.post(f"/drone-routes/{r.json()['id']}/approve", headers=w)
    assert r.status_code == 409, r.text
    assert on["route_id"] in [c["route_id"] for c in r.json()["conflicts"]]
    # the other way round: an approved off-network flight blocks an on-network one
    t1 = t0 + timedelta(hours=1)
    body = {**body, "drone_id": drone(api, w), "start_time": t1.isoformat(),
            "end_time": (t1 + timedelta(minutes=10)).isoformat()}
    r = api.post("/drone-routes", json=body, headers=w)
    off = r.json()["id"]
    assert api.post(f"/drone-routes/{off}/approve", headers=w).status_code == 200
    r = _flight(api, w, drone(api, w), net["W"], net["E"], t1)
    assert r.status_code == 409, r.text
    assert [c["route_id"] for c in r.json()["conflicts"]] == [off]


def test_a_zone_declared_after_the_network_refuses_flights_then(api, auth, net):
    w, admin = auth("operator"), auth("admin")
    t0 = now() + timedelta(hours=12)
    r = api.post("/airspace-zones", json={
        "name": "incident", "zone_type": "prohibited", "geometry": HERE.polygon(400, -50, 600, 50),
        "floor_m": 0, "ceiling_m": 300, "valid_from": t0.isoformat(),
        "valid_to": (t0 + timedelta(hours=1)).isoformat()}, headers=admin)
    assert r.status_code == 201, r.text
    r = _flight(api, w, drone(api, w), net["W"], net["E"], t0 + timedelta(minutes=5))
    assert r.status_code == 409, r.text
    assert "incident" in r.json()["detail"]
    r = _flight(api, w, drone(api, w), net["W"], net["E"], t0 + timedelta(hours=2))
    assert r.status_code == 201, r.text


def test_bad_flights_are_refused_with_a_reason(api, auth, net):
    w = auth("operator")
    d = drone(api, w)
    t0 = now() + timedelta(hours=16)
    r = _flight(api, w, d, net["W"], 999_999, t0)
    assert r.status_code == 422 and "not on the current network" in r.json()["detail"]
    r = _flight(api, w, d, net["W"], net["W"], t0)
    assert r.status_code == 422
    r = _flight(api, w, d, net["W"], net["E"], now() - timedelta(hours=1))
    assert r.status_code == 422 and "past" in r.json()["detail"]
    r = _flight(api, w, 999_999, net["W"], net["E"], t0)
    assert r.status_code == 422 and "unknown drone" in r.json()["detail"]
    assert api.post("/airspace/network/flights", json={
        "drone_id": d, "from_vertiport": net["W"], "to_vertiport": net["E"],
        "departure": t0.isoformat()}).status_code == 401


def test_positions_without_both_coordinates_are_refused(api, auth, net):
    """An empty position once reached the area check and answered 500."""
    w = auth("planner")
    for positions in ([[]], [[114.25]], [[114.25, 22.72, 10.0, 1.0]]):
        r = api.post("/airspace/network/travel-times", json={"positions": positions}, headers=w)
        assert r.status_code == 422, (positions, r.text)
    # [lon, lat] and [lon, lat, h] mixed (a 500 once): far off the globe, refused with reason
    r = api.post("/airspace/network/travel-times", headers=w, json={
        "positions": [[3.7e16, -1.6e91], [-1.5e16, 4.0e-185, -1.8e-68]]})
    assert r.status_code == 422 and "degrees" in r.json()["detail"], r.text
    r = api.post("/airspace/vertiports", json={"name": "x", "position": [],
                                               "capacity_per_hour": 10}, headers=w)
    assert r.status_code == 422, r.text
