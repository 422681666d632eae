"""Telemetry, the latest state per drone, conformance flags and the live stream."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
from helpers_lowalt import GROUND, Local, drone, file, route_body


def _active_route(api, w, here):
    d = drone(api, w)
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    body = {**route_body(d, here.line([(0, 0, 60), (1000, 0, 60)])),
            "start_time": t0.isoformat(), "end_time": (t0 + timedelta(minutes=30)).isoformat()}
    out = file(api, w, body)
    assert api.post(f"/drone-routes/{out['id']}/approve", headers=w).status_code == 200
    assert api.post(f"/drone-routes/{out['id']}/status", json={"status": "active"},
                    headers=w).status_code == 200
    return d, out["id"]


def _point(here, d, x, y, h_agl, t=None):
    lon, lat = here.ll(x, y)
    return {"drone_id": d, "t": (t or datetime.now(UTC)).isoformat(), "lon": lon, "lat": lat,
            "h": GROUND + h_agl, "speed_ms": 12.0, "track_deg": 90.0, "battery_pct": 80}


class SSE:
    """Reads a text/event-stream in a thread and keeps the events."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict]] = []
        self.keepalives = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.stream("GET", url, timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.append((kind, json.loads(line[6:])))
                elif line.startswith(": keep-alive"):
                    self.keepalives += 1

    def wait_for(self, pred, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for kind, data in list(self.events):
                if pred(kind, data):
                    return kind, data
            time.sleep(0.05)
        raise AssertionError(f"no such event in {self.events}")

    def wait_live(self, states: int, timeout: float = 10.0) -> None:
        """Until the stream is past its opening snapshot of ``states`` drones, so that what
        is reported next reaches it as a change: until the snapshot's last state, or (with
        no drone in it, nothing to see its end by) the keep-alive the idle stream sends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.keepalives or (states and sum(k == "state" for k, _ in self.events)
                                   >= states):
                return
            time.sleep(0.01)
        raise AssertionError(f"the stream sent no snapshot of {states} drones: {self.events}")

    def close(self) -> None:
        # the reader hangs up at the next line (keep-alives come every 0.5 s in tests), so
        # the server sees the client leave and ends the stream
        self._stop.set()
        self._thread.join(5)


def test_conformance_flags_in_state_and_stream(api, auth, live_server):
    w = auth("operator")
    here = Local(0)
    d, rid = _active_route(api, w, here)
    states = len(api.get("/drones-live").json()["features"])
    stream = SSE(live_server.url + "/drones-live/stream")
    try:
        stream.wait_live(states)
        r = api.post("/telemetry", json={"points": [_point(here, d, 100, 2, 61),
                                                    _point(here, d, 200, -3, 58)]}, headers=w)
        assert r.status_code == 201, r.text
        assert r.json()["stored"] == 2 and r.json()["flagged"] == []
        state = {f["id"]: f for f in api.get("/drones-live").json()["features"]}[d]
        assert state["properties"]["conforming"] and state["properties"]["route_id"] == rid
        assert abs(state["properties"]["height_agl_m"] - 58) < 0.5
        stream.wait_for(lambda k, e: k == "state" and e["id"] == d
                        and e["properties"]["conforming"])
        # 40 m off the centre line (half-width 10 m), and too high: both flagged
        r = api.post("/telemetry/one", json=_point(here, d, 300, 40, 80), headers=w)
        assert r.status_code == 201
        [flagged] = r.json()["flagged"]
        assert set(flagged["flags"]) == {"outside_corridor", "outside_altitude_band"}
        _, event = stream.wait_for(lambda k, e: e["id"] == d and "outside_corridor"
                                   in e["properties"]["flags"])
        assert not event["properties"]["conforming"]
        # silent after 1.5 s (the test setting; 15 s by default)
        _, event = stream.wait_for(lambda k, e: k == "silent" and e["id"] == d, timeout=8)
        assert "silent" in event["properties"]["flags"]
        state = {f["id"]: f for f in api.get("/drones-live").json()["features"]}[d]
        assert "silent" in state["properties"]["flags"]
    finally:
        stream.close()


def test_latest_state_wins_and_history_is_kept(api, auth, city):
    w = auth("operator")
    here = Local(3)
    d = drone(api, w)
    t = datetime.now(UTC)
    late, early = _point(here, d, 50, 0, 60, t), _point(here, d, 0, 0, 60, t - timedelta(
        seconds=5))
    assert api.post("/telemetry", json={"points": [late]}, headers=w).status_code == 201
    # an older report arriving later is history, not the current state
    r = api.post("/telemetry", json={"points": [early]}, headers=w)
    assert r.status_code == 201
    assert r.json()["flagged"][0]["flags"] == ["no_approved_route"]
    state = {f["id"]: f for f in api.get("/drones-live").json()["features"]}[d]
    assert abs(state["geometry"]["coordinates"][0] - late["lon"]) < 1e-9
    # a re-sent report replaces, not duplicates
    assert api.post("/telemetry", json={"points": [late]}, headers=w).status_code == 201
    with city.engine.connect() as conn:
        from sqlalchemy import text

        n = conn.execute(text("SELECT count(*) FROM drone_telemetry WHERE drone_id = :d"),
                         {"d": d}).scalar_one()
    assert n == 2


def test_writes_need_an_operator_key(api, auth):
    here = Local(6)
    p = _point(here, 1, 0, 0, 60)
    assert api.post("/telemetry", json={"points": [p]}).status_code == 401
    assert api.post("/telemetry", json={"points": [p]},
                    headers=auth("viewer")).status_code == 403
    assert api.get("/drones-live").status_code == 200


def test_drones_live_is_a_features_collection(api, auth):
    w = auth("operator")
    here = Local(9)
    d = drone(api, w)
    assert api.post("/telemetry", json={"points": [_point(here, d, 0, 0, 60)]},
                    headers=w).status_code == 201
    r = api.get("/collections/drones_live/items", params={"limit": 1000})
    assert r.status_code == 200, r.text
    [f] = [f for f in r.json()["features"] if f["id"] == d]
    assert f["properties"]["flags"] == ["no_approved_route"]
    assert f["properties"]["conforming"] is False
    assert len(f["geometry"]["coordinates"]) == 3
    r = api.get("/collections/drones_live/items", params={"conforming": "false"})
    assert d in [f["id"] for f in r.json()["features"]]



def test_dashboard_stream_reader_sends_the_key_and_resumes(settings, db_url, auth,
                                                            lowalt_settings,
                                                            live_server_factory):
    """The dashboard's fetch-based reader (service/dashboard/js/sse.js, run in node) reads the
    stream where reads need a viewer key (EventSource cannot send one); without the key the
    server refuses it and the reader gives up; after a cut it resumes with Last-Event-ID."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    from service.app import create_app

    assert shutil.which("node"), "needs node (./run test installs it)"
    check = Path(__file__).resolve().parents[2] / "tests" / "js" / "sse_check.mjs"
    settings.read_requires_key = True
    app = create_app(settings, db_url, in_process_worker=False)
    app.state.lowalt_settings = lowalt_settings
    viewer = auth("viewer")["Authorization"].split()[1]
    w = auth("operator")
    here = Local(12)

    def read(*args: str, **env: str) -> dict:
        run = subprocess.run(["node", str(check), f"{server.url}/drones-live/stream", *args],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, **env})
        assert run.returncode == 0, run.stderr[-2000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    with live_server_factory(app) as server, httpx.Client(base_url=server.url,
                                                           timeout=60) as api:
        d, _ = _active_route(api, w, here)

        landed = threading.Event()

        def fly() -> None:  # a report every 0.3 s while the readers listen
            for i in range(60):
                api.post("/telemetry/one", json=_point(here, d, 100 + 10 * i, 0, 60),
                         headers=w)
                if landed.wait(0.3):
                    return

        pilot = threading.Thread(target=fly, daemon=True)
        pilot.start()
        refused = read("", "1", "2")
        assert refused["events"] == [] and refused["errors"] \
            and "401" in refused["errors"][0], refused
        assert len(refused["requests"]) == 1  # a refused key is not retried

        got = read(viewer, "6", "30", DROP_AFTER="3")
        landed.set()
        pilot.join(20)
    assert len(got["events"]) == 6, got
    assert d in {e["id"] for e in got["events"]}  # (drones of earlier tests may speak too)
    assert len(got["requests"]) >= 2, got  # cut after 3 events, then connected again
    first = [e for e in got["events"] if e["connection"] == 1]
    assert len(first) >= 3 and any(e["connection"] == 2 for e in got["events"]), got
    resumed = got["requests"][1]["lastEventId"]
    assert resumed is not None and resumed == first[-1]["lastEventId"], got
    # nothing from before the resume point comes again ("silent" events carry no id)
    again = [e for e in got["events"] if e["connection"] == 2 and e["type"] == "state"]
    assert all(int(e["lastEventId"]) > int(resumed) for e in again), got


def test_outside_corridor_follows_the_filed_polygon(api, auth):
    w = auth("operator")
    here = Local(15)
    d = drone(api, w)
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    ring = [here.ll(x, y) for x, y in ((-20, 10), (300, -330), (620, 10), (-20, 10))]
    out = file(api, w, {**route_body(d, here.line([(0, 0, 60), (300, -300, 60),
                                                   (600, 0, 60)]),
                                     corridor={"type": "Polygon", "coordinates": [ring]}),
                        "start_time": t0.isoformat(),
                        "end_time": (t0 + timedelta(minutes=30)).isoformat()})
    assert api.post(f"/drone-routes/{out['id']}/approve", headers=w).status_code == 200
    # inside the triangle, 198 m from the line: where the operator said it would be
    r = api.post("/telemetry/one", json=_point(here, d, 300, -20, 60), headers=w)
    assert r.json()["flagged"] == [], r.text
    # 15 m from the line's start but outside the triangle (its top edge is at y = 10)
    r = api.post("/telemetry/one", json=_point(here, d, 0, 15, 60), headers=w)
    assert r.json()["flagged"][0]["flags"] == ["outside_corridor"], r.text


def test_a_report_from_the_future_is_refused_and_cannot_freeze_the_state(api, auth, city):
    from sqlalchemy import text

    w = auth("operator")
    here = Local(18)
    d = drone(api, w)
    now = datetime.now(UTC)
    assert api.post("/telemetry/one", json=_point(here, d, 0, 0, 60, now),
                    headers=w).status_code == 201
    before = city.count("drone_telemetry")
    hour = _point(here, d, 500, 0, 60, now + timedelta(hours=1))
    for path, body in (("/telemetry/one", hour),
                       ("/telemetry", {"points": [_point(here, d, 10, 0, 60), hour]})):
        r = api.post(path, json=body, headers=w)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "ahead of the server clock" in r.json()["detail"]
        assert 3590 < r.json()["ahead_s"] < 3610
    assert city.count("drone_telemetry") == before
    # within the 5 s clock bound is fine
    skew = _point(here, d, 20, 0, 60, datetime.now(UTC) + timedelta(seconds=3))
    assert api.post("/telemetry/one", json=skew, headers=w).status_code == 201
    # a state stamped an hour ahead (as stored before the bound) gives way to the next report
    with city.engine.begin() as conn:
        conn.execute(text("UPDATE drone_state SET t = now() + interval '1 hour'"
                          " WHERE drone_id = :d"), {"d": d})
    states = len(api.get("/drones-live").json()["features"])
    stream = SSE(api.base_url.join("/drones-live/stream").__str__())
    try:
        stream.wait_live(states)
        later = _point(here, d, 300, 0, 60, datetime.now(UTC) + timedelta(seconds=4))
        assert api.post("/telemetry/one", json=later, headers=w).status_code == 201
        state = {f["id"]: f for f in api.get("/drones-live").json()["features"]}[d]
        assert abs(state["geometry"]["coordinates"][0] - later["lon"]) < 1e-9
        stream.wait_for(lambda k, e: k == "state" and e["id"] == d
                        and abs(e["geometry"]["coordinates"][0] - later["lon"]) < 1e-9)
    finally:
        stream.close()


def test_over_the_true_height_limit_is_flagged_with_its_ground(api, auth, live_server):
    w = auth("operator")
    here = Local(21)
    d = drone(api, w)
    states = len(api.get("/drones-live").json()["features"])
    stream = SSE(live_server.url + "/drones-live/stream")
    try:
        stream.wait_live(states)
        r = api.post("/telemetry/one", json=_point(here, d, 0, 0, 130), headers=w)
        assert r.status_code == 201, r.text
        out = r.json()
        assert set(out["flagged"][0]["flags"]) == {"no_approved_route", "above_height_limit"}
        # no city model or survey here: the answer says the height is over sea level
        [latest] = out["latest"]
        assert abs(latest["height_agl_m"] - 130) < 1  # the geoid 21 km from ORIGIN
        assert latest["ground_reference"] == "egm96_sea_level"
        assert "sea level" in latest["ground_note"]
        _, event = stream.wait_for(lambda k, e: k == "state" and e["id"] == d)
        props = event["properties"]
        assert "above_height_limit" in props["flags"] and not props["conforming"]
        assert props["ground_reference"] == "egm96_sea_level" and props["ground_note"]
        # 119 m is under the limit
        r = api.post("/telemetry/one", json=_point(here, d, 10, 0, 119), headers=w)
        assert r.json()["flagged"][0]["flags"] == ["no_approved_route"]
        state = {f["id"]: f for f in api.get("/drones-live").json()["features"]}[d]
        assert state["properties"]["flags"] == ["no_approved_route"]
    finally:
        stream.close()
    items = api.get("/collections/drones_live/items", params={"limit": 1000}).json()
    [f] = [f for f in items["features"] if f["id"] == d]
    assert f["properties"]["ground_reference"] == "egm96_sea_level"


def test_an_authorised_flight_above_120m_is_not_flagged(api, auth):
    w, admin = auth("operator"), auth("admin")
    here = Local(24)
    d = drone(api, w)
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    out = file(api, w, {**route_body(d, here.line([(0, 0, 150), (1000, 0, 150)])),
                        "start_time": t0.isoformat(),
                        "end_time": (t0 + timedelta(minutes=30)).isoformat()})
    assert out["validation"]["verdict"] == "needs_approval"
    assert api.post(f"/drone-routes/{out['id']}/approve", json={"authorisation": "SZ-9"},
                    headers=admin).status_code == 200
    r = api.post("/telemetry/one", json=_point(here, d, 100, 0, 150), headers=w)
    assert r.json()["flagged"] == [], r.text
    # off the route, the permit does not hold
    r = api.post("/telemetry/one", json=_point(here, d, 200, 60, 150), headers=w)
    assert set(r.json()["flagged"][0]["flags"]) == {"outside_corridor", "above_height_limit"}
