"""4D conflicts with approved and active routes, priorities, and racing approvals."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from threading import Barrier

from helpers_lowalt import Local, drone, file, route_body, window


def _approve(api, headers, route_id: int):
    return api.post(f"/drone-routes/{route_id}/approve", headers=headers)


def test_crossing_route_is_refused_with_the_conflict(api, auth):
    w = auth("operator")
    here = Local(30)
    a = file(api, w, route_body(drone(api, w), here.line([(0, 0, 60), (1000, 0, 60)])))
    assert _approve(api, w, a["id"]).status_code == 200
    # crosses A at x = 500 at the same height, same time
    b = file(api, w, route_body(drone(api, w), here.line([(500, -500, 60), (500, 500, 60)])))
    [c] = b["validation"]["conflicts"]
    assert c["route_id"] == a["id"] and c["blocking"]
    r = _approve(api, w, b["id"])
    assert r.status_code == 409
    problem = r.json()
    assert problem["type"].endswith("/conflict")
    [c] = problem["conflicts"]
    assert c["route_id"] == a["id"]
    # where: the first place within 30 m + both half-widths (50 m) of A's line, on B
    assert abs(c["from_fraction"] - 0.45) < 0.01 and abs(c["to_fraction"] - 0.55) < 0.01
    assert c["time_overlap"] is not None
    assert api.get(f"/drone-routes/{b['id']}").json()["properties"]["status"] == "planned"
    listed = api.get(f"/drone-routes/{b['id']}/conflicts").json()
    assert listed["blocking"] == 1


def test_separation_in_height_time_and_space(api, auth):
    w = auth("operator")
    here = Local(33)
    a = file(api, w, route_body(drone(api, w), here.line([(0, 0, 60), (1000, 0, 60)])))
    assert _approve(api, w, a["id"]).status_code == 200
    cross = [(500, -500), (500, 500)]
    # 5 + 5 m half-heights + 10 m separation: 20 m apart is enough, 19 m is not
    above = file(api, w, route_body(drone(api, w), here.line([(*p, 80) for p in cross])))
    assert above["validation"]["conflicts"] == []
    close = file(api, w, route_body(drone(api, w), here.line([(*p, 79) for p in cross])))
    assert len(close["validation"]["conflicts"]) == 1
    # both windows are widened by the 2-minute margin: 5 minutes after A is free, 1 is not
    after = window(start_min=10 + 30 + 5, minutes=20)
    later = file(api, w, {**route_body(drone(api, w), here.line([(*p, 60) for p in cross])),
                          **after})
    assert later["validation"]["conflicts"] == []
    margin = window(start_min=10 + 30 + 1, minutes=20)
    edge = file(api, w, {**route_body(drone(api, w), here.line([(*p, 60) for p in cross])),
                         **margin})
    assert len(edge["validation"]["conflicts"]) == 1
    # parallel corridors: 10 + 10 half-widths + 30 m: 51 m apart is clear, 49 m is not
    par_ok = file(api, w, route_body(drone(api, w), here.line([(0, 51, 60), (1000, 51, 60)])))
    assert par_ok["validation"]["conflicts"] == []
    par_bad = file(api, w, route_body(drone(api, w), here.line([(0, 49, 60), (1000, 49, 60)])))
    assert len(par_bad["validation"]["conflicts"]) == 1
    for ok in (above, later, par_ok):
        assert _approve(api, w, ok["id"]).status_code == 200, ok["id"]


def test_priority_decides(api, auth):
    w = auth("operator")
    here = Local(36)
    a = file(api, w, route_body(drone(api, w), here.line([(0, 0, 60), (1000, 0, 60)]),
                                priority=3))
    assert _approve(api, w, a["id"]).status_code == 200
    cross = here.line([(500, -500, 60), (500, 500, 60)])
    equal = file(api, w, route_body(drone(api, w), cross, priority=3))
    assert _approve(api, w, equal["id"]).status_code == 409
    # an emergency flight of higher priority is approved; A is listed as having to yield
    urgent = file(api, w, route_body(drone(api, w), cross, priority=9))
    r = _approve(api, w, urgent["id"])
    assert r.status_code == 200, r.text
    assert [y["route_id"] for y in r.json()["yielding"]] == [a["id"]]


def test_retired_and_suspended_routes_free_the_airspace(api, auth):
    w = auth("operator")
    here = Local(39)
    a = file(api, w, route_body(drone(api, w), here.line([(0, 0, 60), (1000, 0, 60)])))
    assert _approve(api, w, a["id"]).status_code == 200
    assert api.post(f"/drone-routes/{a['id']}/status", json={"status": "active"},
                    headers=w).status_code == 200
    b = file(api, w, route_body(drone(api, w), here.line([(500, -500, 60), (500, 500, 60)])))
    assert _approve(api, w, b["id"]).status_code == 409
    assert api.post(f"/drone-routes/{a['id']}/status", json={"status": "retired"},
                    headers=w).status_code == 200
    assert _approve(api, w, b["id"]).status_code == 200
    # a retired route stays retired
    r = api.post(f"/drone-routes/{a['id']}/status", json={"status": "active"}, headers=w)
    assert r.status_code == 409


def test_one_drone_cannot_hold_two_routes_at_once(api, auth):
    w = auth("operator")
    here = Local(42)
    d = drone(api, w)
    a = file(api, w, route_body(d, here.line([(0, 0, 60), (300, 0, 60)])))
    b = file(api, w, route_body(d, here.line([(0, 3000, 60), (300, 3000, 60)])))
    assert _approve(api, w, a["id"]).status_code == 200
    r = _approve(api, w, b["id"])
    assert r.status_code == 409 and "already holds" in r.json()["detail"]


def test_racing_approvals_for_the_same_airspace(api, auth):
    """Eight crossing routes approved at the same moment: exactly one may win, every time."""
    w = auth("operator")
    for round_ in range(3):
        here = Local(50 + 3 * round_)
        ids = []
        for k in range(8):
            # eight lines through one point, at one height, in one time window
            ang = math.pi * k / 8
            dx, dy = 500 * math.cos(ang), 500 * math.sin(ang)
            out = file(api, w, route_body(drone(api, w), here.line(
                [(-dx, -dy, 60), (dx, dy, 60)])))
            ids.append(out["id"])
        barrier = Barrier(len(ids))

        def go(route_id: int, barrier: Barrier = barrier) -> int:
            barrier.wait()  # all requests leave together
            return _approve(api, w, route_id).status_code

        with ThreadPoolExecutor(len(ids)) as pool:
            codes = list(pool.map(go, ids))
        assert sorted(codes) == [200] + [409] * 7, codes
        approved = api.get("/drone-routes", params={"status": "approved"}).json()["features"]
        assert len([f for f in approved if f["id"] in ids]) == 1


def test_far_apart_routes_approve_in_parallel(api, auth):
    w = auth("operator")
    outs = [file(api, w, route_body(drone(api, w), Local(70 + 5 * k).line(
        [(0, 0, 60), (500, 0, 60)]))) for k in range(4)]
    barrier = Barrier(len(outs))

    def go(route_id: int) -> int:
        barrier.wait()
        return _approve(api, w, route_id).status_code

    with ThreadPoolExecutor(len(outs)) as pool:
        assert list(pool.map(go, [o["id"] for o in outs])) == [200] * 4


def test_route_inside_an_approved_corridor_conflicts(api, auth):
    w = auth("operator")
    here = Local(90)
    ring = [here.ll(x, y) for x, y in ((-20, 10), (300, -330), (620, 10), (-20, 10))]
    a = file(api, w, route_body(drone(api, w), here.line(
        [(0, 0, 60), (300, -300, 60), (600, 0, 60)]),
        corridor={"type": "Polygon", "coordinates": [ring]}))
    assert _approve(api, w, a["id"]).status_code == 200
    # entirely inside A's triangle, 170 m and more from A's centre line, same height and time
    b = file(api, w, route_body(drone(api, w), here.line([(250, -20, 60), (350, -20, 60)])))
    assert [c["route_id"] for c in b["validation"]["conflicts"]] == [a["id"]]
    assert _approve(api, w, b["id"]).status_code == 409


def test_time_margin_widens_both_windows(api, auth):
    """120 s on each window: flights 132 s and 216 s apart conflict, 250 s apart do not."""
    w = auth("operator")
    here = Local(95)
    a = file(api, w, route_body(drone(api, w), here.line([(0, 0, 60), (1000, 0, 60)])))
    assert _approve(api, w, a["id"]).status_code == 200
    a_end = datetime.fromisoformat(a["properties"]["end_time"])
    cross = here.line([(500, -500, 60), (500, 500, 60)])
    for gap, conflicts in ((132, True), (216, True), (250, False)):
        t0 = a_end + timedelta(seconds=gap)
        b = file(api, w, {**route_body(drone(api, w), cross), "start_time": t0.isoformat(),
                          "end_time": (t0 + timedelta(minutes=10)).isoformat()})
        found = [c["route_id"] for c in b["validation"]["conflicts"]]
        assert found == ([a["id"]] if conflicts else []), (gap, found)
        assert _approve(api, w, b["id"]).status_code == (409 if conflicts else 200), gap
