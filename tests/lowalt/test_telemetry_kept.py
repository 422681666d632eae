"""What telemetry ingest keeps between batches (a drone's routes, the ground of a tile) is
seen to change at the next report; a batch is one statement; the live stream polls once a
process for all its clients and still sends a report committed after a later one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from helpers_lowalt import GROUND, Local, drone, file, route_body
from sqlalchemy import text
from test_live import SSE, _point


def _latest(r) -> dict:
    assert r.status_code == 201, r.text
    [latest] = r.json()["latest"]
    return latest


def test_a_building_put_under_a_flying_drone_is_its_ground_at_the_next_report(api, auth,
                                                                              city):
    w = auth("operator")
    here = Local(30)
    d = drone(api, w)
    first = _latest(api.post("/telemetry/one", json=_point(here, d, 0, 0, 60), headers=w))
    assert first["ground_reference"] == "egm96_sea_level"
    assert abs(first["height_agl_m"] - 60) < 2  # the geoid 30 km from ORIGIN
    # a city model now stands here, its ground 40 m above the sea
    city.building(here, "kept-ground-1", (-30, -30, 30, 30), 20, ground=GROUND + 40)
    second = _latest(api.post("/telemetry/one", json=_point(here, d, 5, 0, 60), headers=w))
    assert second["ground_reference"] == "city_model"
    assert abs(second["height_agl_m"] - 20) < 0.5, second


def test_a_survey_made_ready_is_the_ground_at_the_next_report(api, auth, city):
    w = auth("operator")
    here = Local(33)
    d = drone(api, w)
    with city.engine.begin() as conn:
        survey = conn.execute(text(
            "INSERT INTO datasets (kind, name, status, footprint, bounds3d) VALUES ('lidar',"
            " 'kept survey', 'ingesting', ST_GeomFromText(:wkt, 4326),"
            " jsonb_build_object('min', jsonb_build_array(0, 0, :z), 'max',"
            " jsonb_build_array(0, 0, :z + 30))) RETURNING id"),
            {"wkt": here.wkt(-200, -200, 200, 200), "z": GROUND + 25}).scalar_one()
    first = _latest(api.post("/telemetry/one", json=_point(here, d, 0, 0, 60), headers=w))
    assert first["ground_reference"] == "egm96_sea_level"  # not ready: not ground yet
    with city.engine.begin() as conn:
        conn.execute(text("UPDATE datasets SET status = 'ready', updated_at = now()"
                          " WHERE id = :id"), {"id": survey})
    second = _latest(api.post("/telemetry/one", json=_point(here, d, 10, 0, 60), headers=w))
    assert second["ground_reference"] == "lidar_survey"
    assert abs(second["height_agl_m"] - 35) < 0.5, second


def test_a_route_approved_between_reports_is_flown_at_the_next_one(api, auth):
    w = auth("operator")
    here = Local(36)
    d = drone(api, w)
    r = api.post("/telemetry/one", json=_point(here, d, 100, 0, 60), headers=w)
    assert r.json()["flagged"][0]["flags"] == ["no_approved_route"], r.text
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    out = file(api, w, {**route_body(d, here.line([(0, 0, 60), (1000, 0, 60)])),
                        "start_time": t0.isoformat(),
                        "end_time": (t0 + timedelta(minutes=30)).isoformat()})
    assert api.post(f"/drone-routes/{out['id']}/approve", headers=w).status_code == 200
    r = api.post("/telemetry/one", json=_point(here, d, 110, 0, 60), headers=w)
    assert r.json()["flagged"] == [], r.text
    state = {f["id"]: f for f in api.get("/drones-live").json()["features"]}[d]
    assert state["properties"]["route_id"] == out["id"]
    # retired: no route to fly again
    assert api.post(f"/drone-routes/{out['id']}/status", json={"status": "retired"},
                    headers=w).status_code == 200
    r = api.post("/telemetry/one", json=_point(here, d, 120, 0, 60), headers=w)
    assert r.json()["flagged"][0]["flags"] == ["no_approved_route"], r.text


def test_a_report_twice_in_one_batch_is_stored_once_the_later_kept(api, auth, city):
    w = auth("operator")
    here = Local(39)
    d, e = drone(api, w), drone(api, w)
    t = datetime.now(UTC) - timedelta(seconds=2)
    a, b = _point(here, d, 0, 0, 60, t), _point(here, d, 50, 0, 60, t)
    other = _point(here, e, 0, 0, 60, t - timedelta(seconds=1))
    r = api.post("/telemetry", json={"points": [a, other, b]}, headers=w)
    assert r.status_code == 201, r.text
    assert r.json()["drones"] == 2
    with city.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT drone_id, ST_X(geom) FROM drone_telemetry WHERE drone_id IN (:d, :e)"
            " ORDER BY drone_id"), {"d": d, "e": e}).all()
    assert [(row[0], round(row[1], 9)) for row in rows] == [
        (d, round(b["lon"], 9)), (e, round(other["lon"], 9))]
    states = {f["id"]: f for f in api.get("/drones-live").json()["features"]}
    assert abs(states[d]["geometry"]["coordinates"][0] - b["lon"]) < 1e-9
    assert abs(states[e]["geometry"]["coordinates"][0] - other["lon"]) < 1e-9


def _feeds(engine):
    from service.lowalt import livefeed

    return [f for f in list(livefeed._FEEDS.values()) if f.engine is engine]


def test_stream_clients_of_one_process_share_one_poll(api, auth, live_server):
    w = auth("operator")
    here = Local(42)
    d = drone(api, w)
    states = len(api.get("/drones-live").json()["features"])
    clients = [SSE(live_server.url + "/drones-live/stream") for _ in range(3)]
    try:
        for c in clients:
            c.wait_live(states)
        [feed] = _feeds(live_server.server.config.app.state.engine)
        assert len(feed.subscribers) == 3
        r = api.post("/telemetry/one", json=_point(here, d, 0, 0, 60), headers=w)
        assert r.status_code == 201
        got = [c.wait_for(lambda k, e: k == "state" and e["id"] == d)[1] for c in clients]
        assert all(g == got[0] for g in got)
    finally:
        for c in clients:
            c.close()
    deadline = time.monotonic() + 10
    while _feeds(live_server.server.config.app.state.engine) and time.monotonic() < deadline:
        time.sleep(0.1)
    # the last client gone, the feed stops polling
    assert _feeds(live_server.server.config.app.state.engine) == []


def test_a_report_committed_after_a_later_one_reaches_the_stream(api, auth, live_server,
                                                                 city):
    w = auth("operator")
    here = Local(45)
    slow, fast = drone(api, w), drone(api, w)
    for d in (slow, fast):
        assert api.post("/telemetry/one", json=_point(here, d, 0, 0, 60),
                        headers=w).status_code == 201
    states = len(api.get("/drones-live").json()["features"])
    stream = SSE(live_server.url + "/drones-live/stream")
    try:
        stream.wait_live(states)
        # the slow drone's state draws its seq first and commits last
        with city.engine.connect() as conn:
            tx = conn.begin()
            seq = conn.execute(text(
                "UPDATE drone_state SET seq = nextval('drone_state_seq'), t = now(),"
                " speed_ms = 3.5 WHERE drone_id = :d RETURNING seq"), {"d": slow}).scalar_one()
            moved = _point(here, fast, 10, 0, 60)
            assert api.post("/telemetry/one", json=moved, headers=w).status_code == 201
            stream.wait_for(lambda k, e: k == "state" and e["id"] == fast and abs(
                e["geometry"]["coordinates"][0] - moved["lon"]) < 1e-9)
            time.sleep(0.5)  # the feed has polled past the slow drone's seq
            tx.commit()
        _, event = stream.wait_for(lambda k, e: k == "state" and e["id"] == slow
                                   and e["properties"]["speed_ms"] == 3.5)
        assert event["properties"]["drone_id"] == slow and seq > 0
    finally:
        stream.close()
