"""Fleet plans on the route network: every flight reserved and approved in one transaction,
re-plans releasing and re-reserving, emergencies pre-empting with a notice on the stream.

The network is generated from roads written into road_segments: a 2 km east-west road
crossed at its middle by a 1.6 km north-south one, with vertiports at the west (W) and east
(E) ends. Tasks lie on the roads, near their nodes (the junction J at x = 1000 and the
north and south ends), so every flight runs between two network nodes.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import datetime, timedelta

import httpx
import pytest
from helpers_lowalt import Local, now
from sqlalchemy import text

HERE = Local(20, 40)
PORTS = {"W": (-50, -40), "E": (2050, 40)}


@pytest.fixture(scope="module")
def net(db_url):
    """Roads, two vertiports and the generated network (through the app, once)."""
    import tempfile
    from pathlib import Path

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
        key = create_key(conn, "fleet-net-planner", "planner")
    h = {"Authorization": f"Bearer {key}"}
    settings = Settings(database_url=db_url, data_dir=Path(tempfile.mkdtemp()) / "var",
                        in_process_worker=False, load_samples=False)
    with TestClient(create_app(settings, db_url, in_process_worker=False)) as client:
        ports = {}
        for name, (x, y) in PORTS.items():
            r = client.post("/airspace/vertiports", json={
                "name": name, "code": f"F{name}", "position": HERE.ll(x, y),
                "capacity_per_hour": 120}, headers=h)
            assert r.status_code == 201, r.text
            ports[name] = r.json()["id"]
        r = client.post("/airspace/network/generate", json={"guides": "roads"}, headers=h)
        assert r.status_code == 201, r.text
        assert r.json()["dropped"] == 0
    yield {"ports": ports, "engine": eng}
    eng.dispose()


def _register(api, w, *serials: str) -> dict[str, int]:
    out = {}
    for sn in serials:
        r = api.post("/drones", json={"serial": sn, "operator": "Longgang fleet tests",
                                      "class": "light"}, headers=w)
        assert r.status_code == 201, r.text
        out[sn] = r.json()["id"]
    return out


_serial = iter(range(1, 10_000))


def _body(t0: datetime, tag: str, api, w, tasks=None, **extra) -> dict:
    """Two registered drones at W and E, and tasks at the junction and the road ends."""
    n = next(_serial)
    d1, d2 = f"{tag}-{n}-A", f"{tag}-{n}-B"
    _register(api, w, d1, d2)

    def iso(minutes: float) -> str:
        return (t0 + timedelta(minutes=minutes)).isoformat()

    body = {
        "start": t0.isoformat(),
        "vertiports": [{"id": k, "position": HERE.ll(*xy), "swap_s": 60}
                       for k, xy in PORTS.items()],
        "drones": [{"id": d1, "home": "W", "endurance_min": 25, "payload_kg": 2,
                    "speed_ms": 15},
                   {"id": d2, "home": "E", "endurance_min": 25, "payload_kg": 2,
                    "speed_ms": 15}],
        "tasks": tasks if tasks is not None else [
            {"id": "north", "position": HERE.ll(1000, 790), "service_s": 60, "priority": 2},
            {"id": "south", "position": HERE.ll(1000, -790), "service_s": 60, "priority": 2,
             "window": {"start": iso(0), "end": iso(60)}},
            {"id": "junction", "position": HERE.ll(1005, 5), "service_s": 30, "priority": 1},
        ],
        "time_limit_s": 1,
    }
    body.update(extra)
    return body


def _counts(net) -> tuple[int, int, int]:
    with net["engine"].connect() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                     for t in ("fleet_plans", "network_reservations", "drone_routes"))


def _flights(plan: dict) -> list[dict]:
    return [f for d in plan["drones"] for t in d["trips"] for f in t["flights"]]


def _flights_with_drone(plan: dict) -> list[dict]:
    return [{**f, "drone": d["drone"]} for d in plan["drones"] for t in d["trips"]
            for f in t["flights"]]


def test_every_flight_of_a_plan_is_reserved_and_approved(api, auth, net):
    w = auth("operator")
    t0 = now() + timedelta(hours=1)
    body = _body(t0, "RES", api, w)
    before = _counts(net)
    r = api.post("/fleet/plans", json=body, headers=w)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["travel"].startswith("route network")
    assert plan["planned"] == 3 and plan["unassigned"] == []
    res = plan["reservation"]
    assert res["status"] == "reserved"
    flights = _flights(plan)
    reserved = [f for f in flights if f["status"] == "approved"]
    assert res["approved"] == len(reserved) >= 4  # out and back, through the tasks
    assert len({f["reservation_id"] for f in reserved}) == len(reserved)
    for d in plan["drones"]:
        for trip in d["trips"]:
            fl = trip["flights"]
            # the trip's hops, site to site, in order
            assert [f["from"] for f in fl] == [trip["origin"], *(s["task"] for s in
                                                                   trip["stops"])]
            assert fl[-1]["to"] == trip["destination"]
            assert datetime.fromisoformat(fl[0]["departure"]) >= datetime.fromisoformat(
                trip["departure"])
            for f, stop in zip(fl, trip["stops"], strict=False):
                if f["status"] == "approved":  # the drone is there when the flight lands
                    assert datetime.fromisoformat(stop["arrival"]) >= datetime.fromisoformat(
                        f["arrival"]) - timedelta(seconds=0.01)
    for f in reserved:
        got = api.get(f"/airspace/network/flights/{f['reservation_id']}").json()
        assert got["status"] == "held" and got["route_id"] == f["route_id"]
        assert datetime.fromisoformat(got["start_time"]) == datetime.fromisoformat(
            f["departure"])
        route = api.get(f"/drone-routes/{f['route_id']}").json()["properties"]
        assert route["status"] == "approved"
    after = _counts(net)
    assert after == (before[0] + 1, before[1] + len(reserved), before[2] + len(reserved))
    # the stored plan says the same
    got = api.get(f"/fleet/plans/{plan['id']}").json()
    assert got["drones"] == plan["drones"]
    assert got["reservation"] == plan["reservation"]


def test_two_drones_leaving_one_pad_at_once_are_re_timed_to_free_slots(api, auth, net):
    """Both drones start at W, for two tasks due early at the two road ends (too far apart
    for one drone): the vertiport takes 120 movements an hour (30 s apart), so one drone
    leaves later and its whole schedule moves."""
    w = auth("operator")
    t0 = now() + timedelta(hours=3)
    tt = api.post("/airspace/network/travel-times", headers=w, json={"positions": [
        HERE.ll(*PORTS["W"]), HERE.ll(1000, 790), HERE.ll(1000, -790)]}).json()["seconds"]
    # each reachable from W with 90 s to spare; one after the other is out of reach
    latest = max(tt[0][1], tt[0][2]) + 90
    assert tt[0][1] + 30 + tt[1][2] > latest
    due = {"start": t0.isoformat(), "end": (t0 + timedelta(seconds=latest)).isoformat()}
    body = _body(t0, "RET", api, w, tasks=[
        {"id": "n1", "position": HERE.ll(1000, 790), "service_s": 30, "window": due},
        {"id": "s1", "position": HERE.ll(1000, -790), "service_s": 30, "window": due}])
    body["drones"][1]["home"] = "W"
    r = api.post("/fleet/plans", json=body, headers=w)
    assert r.status_code == 201, r.text
    plan = r.json()
    firsts = sorted(datetime.fromisoformat(d["trips"][0]["flights"][0]["departure"])
                    for d in plan["drones"] if d["trips"])
    assert len(firsts) == 2, plan["unassigned"]
    assert (firsts[1] - firsts[0]).total_seconds() >= 30 - 0.01
    assert plan["reservation"]["delayed"] >= 1


def test_a_flight_that_cannot_be_reserved_refuses_the_plan_and_stores_nothing(api, auth,
                                                                              net):
    """A prohibited zone declared over the north road after the network was built: the
    flight to the north task cannot be reserved, so the plan is refused, naming it."""
    w = auth("operator")
    t0 = now() + timedelta(hours=5)
    r = api.post("/airspace-zones", headers=auth("admin"), json={
        "name": "fleet test incident", "zone_type": "prohibited",
        "geometry": HERE.polygon(950, 300, 1050, 500), "floor_m": 0, "ceiling_m": 300,
        "valid_from": t0.isoformat(), "valid_to": (t0 + timedelta(hours=1)).isoformat()})
    assert r.status_code == 201, r.text
    body = _body(t0, "ZON", api, w, tasks=[
        {"id": "north", "position": HERE.ll(1000, 790), "service_s": 60, "priority": 2},
        {"id": "south", "position": HERE.ll(1000, -790), "service_s": 60}])
    before = _counts(net)
    r = api.post("/fleet/plans", json=body, headers=w)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert "north" in problem["detail"] and "could not be reserved" in problem["detail"]
    assert "fleet test incident" in problem["detail"]
    assert problem["flight"]["to"] == "north" or problem["flight"]["from"] == "north"
    assert _counts(net) == before  # no plan, no reservation, no route
    # an unregistered drone: refused before anything is reserved
    body = _body(t0 + timedelta(hours=2), "UNR", api, w)
    body["drones"][0]["id"] = "nobody-registered-this"
    r = api.post("/fleet/plans", json=body, headers=w)
    assert r.status_code == 422 and "not registered" in r.json()["detail"], r.text
    assert _counts(net) == before


def _status(api, rid: int) -> str:
    return api.get(f"/airspace/network/flights/{rid}").json()["status"]


def test_replan_releases_the_old_flights_and_reserves_the_new_in_one_go(api, auth, net):
    w = auth("operator")
    t0 = now() + timedelta(hours=8)
    body = _body(t0, "REP", api, w)
    first = api.post("/fleet/plans", json=body, headers=w).json()
    assert first["reservation"]["status"] == "reserved"
    old = {f["reservation_id"]: d["drone"] for d in first["drones"] for t in d["trips"]
           for f in t["flights"] if f["status"] == "approved"}
    d1 = next(iter(old.values()))  # a drone with flights drops out
    other = next(d["id"] for d in body["drones"] if d["id"] != d1)
    r = api.post(f"/fleet/plans/{first['id']}/replan", headers=w, json={
        "at": now().isoformat(), "dropped": [d1], "time_limit_s": 1,
        "add_tasks": [{"id": "late", "position": HERE.ll(1990, 5), "service_s": 30}]})
    assert r.status_code == 201, r.text
    again = r.json()
    res = again["reservation"]
    new = {f["reservation_id"]: f for f in _flights(again)
           if f["status"] in ("approved", "carried")}
    assert {f["drone"] for f in _flights_with_drone(again)
            if f["status"] == "approved"} == {other}
    # every old flight is kept (same reservation) or released; released ones are cancelled
    for rid in old:
        if rid in new:
            assert _status(api, rid) == "held"
        else:
            assert rid in res["released"] and _status(api, rid) == "cancelled"
    assert any(drone == d1 for rid, drone in old.items() if rid in res["released"])
    for rid in new:
        assert _status(api, rid) == "held"
    served = {s["task"] for d in again["drones"] for t in d["trips"] for s in t["stops"]}
    assert "late" in served
    # a refused re-plan changes nothing: the reservations stand
    before = _counts(net)
    r = api.post(f"/fleet/plans/{again['id']}/replan", headers=w, json={"dropped": ["D9"]})
    assert r.status_code == 422
    assert _counts(net) == before and all(_status(api, rid) == "held" for rid in new)


class Stream:
    """A text/event-stream read in a thread."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str, str | None, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}),
                                        daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with contextlib.suppress(httpx.HTTPError), \
                httpx.stream("GET", url, headers=headers, timeout=30) as r:
            kind = eid = None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("id: "):
                    eid = line[4:]
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.append((kind, eid, json.loads(line[6:])))
                    eid = None

    def wait_for(self, pred, timeout: float = 10.0) -> tuple[str, str | None, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in list(self.events):
                if pred(*e):
                    return e
            time.sleep(0.05)
        raise AssertionError(f"no such event in {self.events}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_an_emergency_pre_empts_a_lower_priority_flight_with_a_notice(api, auth, net,
                                                                     live_server):
    w = auth("operator")
    t0 = now() + timedelta(hours=12)
    body = _body(t0, "EMG", api, w, tasks=[])
    first = api.post("/fleet/plans", json=body, headers=w).json()
    assert first["reservation"]["status"] == "reserved"
    at = t0 + timedelta(minutes=2)
    # another operator's routine flight W -> E, priority 0, leaving W just then
    other = _register(api, w, f"EMG-other-{next(_serial)}")
    r = api.post("/airspace/network/flights", headers=w, json={
        "drone_id": next(iter(other.values())), "from_vertiport": net["ports"]["W"],
        "to_vertiport": net["ports"]["E"], "departure": at.isoformat(), "priority": 0})
    assert r.status_code == 201, r.text
    blocker = r.json()
    listening = Stream(live_server.url + "/drones-live/stream")
    try:
        time.sleep(1.0)  # past its opening snapshot
        r = api.post(f"/fleet/plans/{first['id']}/emergency", headers=w, json={
            "at": at.isoformat(),
            "task": {"id": "fire-1", "type": "fire", "position": HERE.ll(1005, -5),
                     "service_s": 120}})
        assert r.status_code == 201, r.text
        e = r.json()["emergency"]
        assert e["drone"] == body["drones"][0]["id"]  # the one at W, nearer
        pre = [p["reservation_id"] for p in e["preempted_flights"]]
        assert blocker["reservation_id"] in pre
        assert _status(api, blocker["reservation_id"]) == "cancelled"
        route = api.get(f"/drone-routes/{blocker['route_id']}").json()["properties"]
        assert route["status"] == "retired"
        # the emergency's own first flight left at once, on the slot the other one held
        mine = [f for d in r.json()["drones"] if d["drone"] == e["drone"]
                for t in d["trips"] for f in t["flights"]]
        assert mine[0]["status"] == "approved" and mine[0]["delay_s"] == 0
        assert datetime.fromisoformat(mine[0]["departure"]) == at
        _, eid, data = listening.wait_for(lambda k, i, d: k == "notice")
        assert data["task"] == "fire-1" and data["drone"] == e["drone"]
        assert data["type"] == "fire" and blocker["reservation_id"] in [
            p["reservation_id"] for p in data["preempted_flights"]]
        assert int(eid) == e["notice_seq"]
    finally:
        listening.close()
    # a client resuming from before the notice gets it too (another process may serve it)
    resumed = Stream(live_server.url + "/drones-live/stream",
                     {"Last-Event-ID": str(e["notice_seq"] - 1)})
    try:
        resumed.wait_for(lambda k, i, d: k == "notice" and d["task"] == "fire-1")
    finally:
        resumed.close()


def test_an_emergency_with_no_drone_available_is_answered_so(api, auth, net):
    w = auth("operator")
    t0 = now() + timedelta(hours=16)
    body = _body(t0, "NOD", api, w, tasks=[])
    first = api.post("/fleet/plans", json=body, headers=w).json()
    before = _counts(net)
    r = api.post(f"/fleet/plans/{first['id']}/emergency", headers=w, json={
        "at": (t0 + timedelta(minutes=1)).isoformat(),
        "task": {"id": "crane", "position": HERE.ll(1000, 0), "payload_kg": 40}})
    assert r.status_code == 409, r.text
    assert "no drone available" in r.json()["detail"]
    assert set(r.json()["refused"]) == {d["id"] for d in body["drones"]}
    assert _counts(net) == before
