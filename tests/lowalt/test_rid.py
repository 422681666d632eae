"""Network Remote ID display endpoints shaped as ASTM F3411-22a (searchFlights and
getFlightDetails): flights in a view, recent positions, the 7 km view limit, details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from helpers_lowalt import GROUND, Local, drone


def _point(here, d, x, y, t):
    lon, lat = here.ll(x, y)
    return {"drone_id": d, "t": t.isoformat(), "lon": lon, "lat": lat, "h": GROUND + 60,
            "speed_ms": 12.3, "track_deg": 90.4, "battery_pct": 80}


def _view(here, x0, y0, x1, y1) -> str:
    (lon0, lat0), (lon1, lat1) = here.ll(x0, y0), here.ll(x1, y1)
    return f"{lat0},{lon0},{lat1},{lon1}"


def test_flights_in_a_view_with_recent_positions_and_details(api, auth):
    w = auth("operator")
    here = Local(9)
    inside, outside = drone(api, w), drone(api, w)
    now = datetime.now(UTC)
    trail = [_point(here, inside, 10 * k, 0, now - timedelta(seconds=10 - k)) for k in range(10)]
    far = _point(here, outside, 3000, 3000, now)
    r = api.post("/telemetry", json={"points": [*trail, far]}, headers=w)
    assert r.status_code == 201, r.text

    view = _view(here, -200, -200, 400, 400)
    got = api.get("/rid/uss/flights", params={"view": view}).json()
    ids = [f["id"] for f in got["flights"]]
    assert str(inside) in ids and str(outside) not in ids
    flight = next(f for f in got["flights"] if f["id"] == str(inside))
    state = flight["current_state"]
    lon, lat = here.ll(90, 0)
    assert abs(state["position"]["lng"] - lon) < 1e-6 and abs(state["position"]["lat"] - lat) < 1e-6
    assert state["position"]["alt"] == round(GROUND + 60, 1)  # WGS 84 ellipsoidal
    assert state["track"] == 90 and state["speed"] == 12.25  # 1 degree, 0.25 m/s steps
    assert "recent_positions" not in flight
    assert got["timestamp"]["value"].endswith("Z")

    with_trail = api.get("/rid/uss/flights", params={
        "view": view, "recent_positions_duration": 60}).json()
    flight = next(f for f in with_trail["flights"] if f["id"] == str(inside))
    times = [p["time"]["value"] for p in flight["recent_positions"]]
    assert len(times) == 10 and times == sorted(times)  # oldest first

    details = api.get(f"/rid/uss/flights/{inside}/details").json()["details"]
    assert details["id"] == str(inside) and details["uas_id"]["serial_number"].startswith("SN-")
    assert details["operator_id"] == "Longgang test ops"


def test_bad_views_and_unknown_flights(api, auth):
    here = Local(9)
    # 10 km across: over F3411's 7 km display diagonal
    r = api.get("/rid/uss/flights", params={"view": _view(here, 0, 0, 8000, 6000)})
    assert r.status_code == 413 and "7 km" in r.json()["detail"], r.text
    for bad in ("1,2,3", "a,b,c,d", "95,114,22.7,114.1"):
        r = api.get("/rid/uss/flights", params={"view": bad})
        assert r.status_code == 400, (bad, r.text)
    assert api.get("/rid/uss/flights", params={
        "view": _view(here, 0, 0, 10, 10), "recent_positions_duration": 61}).status_code == 422
    assert api.get("/rid/uss/flights/999999/details").status_code == 404
    # a drone with no report in the near-real-time period is no flight
    w = auth("operator")
    quiet = drone(api, w)
    r = api.post("/telemetry", json={"points": [
        _point(here, quiet, 0, 0, datetime.now(UTC) - timedelta(minutes=5))]}, headers=w)
    assert r.status_code == 201
    assert api.get(f"/rid/uss/flights/{quiet}/details").status_code == 404
