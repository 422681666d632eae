"""Network Remote ID display endpoints shaped as ASTM F3411-22a's USS interface
(``searchFlights`` and ``getFlightDetails``), so a display client written for that API can
read the district's drones.

A *flight* here is a drone whose newest report is stamped within the near-real-time period
(60 s, ``NetMaxNearRealTimeDataPeriodSeconds``); its id is the drone's id. A view wider than 7 km
on its diagonal (``NetMaxDisplayAreaDiagonalKm``) is refused with 413, as the standard
has it. Positions are WGS 84 ellipsoidal (``alt``, as F3411 wants), and the height above
ground is reported with the ``GroundLevel`` reference where it is known.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pyproj import Geod
from sqlalchemy import func, select

from service.core.auth import Reader
from service.core.errors import BadRequest, NotFound, PayloadTooLarge
from service.core.ids import Id
from service.lowalt.tables import drone_routes, drone_state, drone_telemetry, drones

router = APIRouter(prefix="/rid/uss", tags=["low altitude"])

#: F3411-22a constants (interuss/uas_standards astm/f3411/v22a/constants.py)
MAX_DISPLAY_DIAGONAL_KM = 7.0
NEAR_REAL_TIME_S = 60
GEOD = Geod(ellps="WGS84")
RECENT_LIMIT = 60  # positions per flight at most (1 Hz over the near-real-time period)


def _view(view: str) -> tuple[float, float, float, float]:
    """``lat1,lng1,lat2,lng2`` (two opposite corners) -> (west, south, east, north)."""
    try:
        lat1, lng1, lat2, lng2 = (float(v) for v in view.split(","))
    except ValueError as exc:
        raise BadRequest("view must be lat1,lng1,lat2,lng2 (two opposite corners in "
                         f"degrees), got {view!r}") from exc
    if not (-90 <= lat1 <= 90 and -90 <= lat2 <= 90 and -180 <= lng1 <= 180
            and -180 <= lng2 <= 180):
        raise BadRequest(f"view {view!r} is outside latitude [-90, 90] or longitude "
                         "[-180, 180]")
    diagonal_km = GEOD.inv(lng1, lat1, lng2, lat2)[2] / 1000
    if diagonal_km > MAX_DISPLAY_DIAGONAL_KM:
        raise PayloadTooLarge(
            f"the view's diagonal is {diagonal_km:.1f} km; at most "
            f"{MAX_DISPLAY_DIAGONAL_KM:g} km is served (F3411 NetMaxDisplayAreaDiagonalKm): "
            "zoom in, or use /drones-live for the whole district")
    return min(lng1, lng2), min(lat1, lat2), max(lng1, lng2), max(lat1, lat2)


def _time(t: datetime) -> dict[str, str]:
    return {"value": t.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "format": "RFC3339"}


def _position(lon: float, lat: float, h: float, agl: float | None) -> dict[str, Any]:
    pos: dict[str, Any] = {"lat": round(lat, 7), "lng": round(lon, 7), "alt": round(h, 1),
                           "accuracy_h": "HAUnknown", "accuracy_v": "VAUnknown",
                           "extrapolated": False, "pressure_altitude": -1000}
    if agl is not None:
        pos["height"] = {"distance": round(agl, 1), "reference": "GroundLevel"}
    return pos


@router.get("/flights", summary="Flights in a view area (F3411-22a searchFlights)",
            responses={413: {"description": "the view's diagonal is over 7 km"}})
async def search_flights(
        request: Request, _: Reader,
        view: Annotated[str, Query(description="lat1,lng1,lat2,lng2: two opposite corners, "
                                               "diagonal at most 7 km")],
        recent_positions_duration: Annotated[int, Query(ge=0, le=NEAR_REAL_TIME_S)] = 0,
) -> dict[str, Any]:
    west, south, east, north = _view(view)
    box = func.ST_MakeEnvelope(west, south, east, north, 4326)
    now = datetime.now(UTC)
    since = now - timedelta(seconds=NEAR_REAL_TIME_S)
    st, d = drone_state.c, drones.c
    current = (select(st.drone_id, st.t.label("at"), func.ST_X(st.geom).label("lon"),
                      func.ST_Y(st.geom).label("lat"), func.ST_Z(st.geom).label("h"),
                      st.speed_ms, st.track_deg, st.height_agl_m, st.flags)
               .where(st.t >= since, func.ST_Intersects(st.geom, box)))
    recent: dict[int, list[dict[str, Any]]] = {}
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(current)).all()
        if recent_positions_duration:
            tl = drone_telemetry.c
            start = now - timedelta(seconds=recent_positions_duration)
            trail = (select(tl.drone_id, tl.t.label("at"), func.ST_X(tl.geom).label("lon"),
                            func.ST_Y(tl.geom).label("lat"), func.ST_Z(tl.geom).label("h"))
                     .where(tl.t >= start, tl.t <= now, func.ST_Intersects(tl.geom, box))
                     .order_by(tl.drone_id, tl.t.desc()))
            for r in (await conn.execute(trail)).all():
                mine = recent.setdefault(r.drone_id, [])
                if len(mine) < RECENT_LIMIT:
                    mine.append({"time": _time(r.at),
                                 "position": _position(r.lon, r.lat, r.h, None)})
        ids = sorted({r.drone_id for r in rows} | set(recent))
        known = {r.id for r in (await conn.execute(
            select(d.id).where(d.id.in_(ids)))).all()} if ids else set()
    flights = []
    by_id = {r.drone_id: r for r in rows}
    for drone_id in ids:
        if drone_id not in known:
            continue
        flight: dict[str, Any] = {"id": str(drone_id), "aircraft_type": "Helicopter",
                                  "simulated": False}
        r = by_id.get(drone_id)
        if r is not None:
            flight["current_state"] = {
                "timestamp": _time(r.at), "timestamp_accuracy": 0,
                "operational_status": "Airborne",
                "position": _position(r.lon, r.lat, r.h, r.height_agl_m),
                "track": round(r.track_deg % 360, 0) if r.track_deg is not None else 361,
                "speed": min(round(r.speed_ms * 4) / 4, 254.25)
                if r.speed_ms is not None else 255,
                "speed_accuracy": "SAUnknown", "vertical_speed": 63}
        if recent_positions_duration:
            flight["recent_positions"] = list(reversed(recent.get(drone_id, [])))
        flights.append(flight)
    return {"timestamp": _time(now), "flights": flights, "no_isas_present": False}


@router.get("/flights/{flight_id}/details",
            summary="Details of a flight (F3411-22a getFlightDetails)")
async def flight_details(flight_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    d, st, r = drones.c, drone_state.c, drone_routes.c
    since = datetime.now(UTC) - timedelta(seconds=NEAR_REAL_TIME_S)
    query = (select(d.id, d.serial, d.operator, d["class"].label("klass"), d.model,
                    st.t.label("at"), r.name.label("route_name"), r.id.label("route_id"))
             .select_from(drones.join(drone_state, st.drone_id == d.id)
                          .outerjoin(drone_routes, r.id == st.route_id))
             .where(d.id == flight_id))
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.at < since:
        raise NotFound(f"no flight {flight_id}: no drone of that id reported in the last "
                       f"{NEAR_REAL_TIME_S} s")
    description = (f"route {row.route_id}" + (f" ({row.route_name})" if row.route_name else "")
                   if row.route_id is not None else "no route on file")
    return {"details": {
        "id": str(row.id), "operator_id": row.operator,
        "uas_id": {"serial_number": row.serial, "registration_id": "", "utm_id": ""},
        "operation_description": f"{row.klass} drone {row.model or ''}".strip()
        + f"; {description}",
    }}
