"""Routes in the database: insert, update, read as GeoJSON, approve, change status."""

from __future__ import annotations

import json
from typing import Any

import shapely
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from service.lowalt.checks import drone_class, find_conflicts, validate_route
from service.lowalt.geo import frame
from service.lowalt.locks import lock_airspace
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings

_COLUMNS = (
    "r.id, r.name, r.drone_id, r.status, r.priority, r.half_width_m, r.vertical_half_m,"
    " lower(r.alt_band)::float8 AS alt_lower_m, upper(r.alt_band)::float8 AS alt_upper_m,"
    " lower(r.time_window) AS start_time, upper(r.time_window) AS end_time, r.length_m,"
    " r.verdict, r.validation, r.city_model_version, r.validated_at, r.authorisation,"
    " r.approved_by, r.approved_at, r.created_by, r.created_at, r.updated_at,"
    " ST_AsGeoJSON(r.geom, 8) AS geometry, ST_AsGeoJSON(r.corridor, 8) AS corridor"
)
_VALUES = (
    "ST_GeomFromWKB(:geom, 4326), ST_GeomFromWKB(:corridor, 4326), :hw, :vh,"
    " numrange(CAST(:lo AS float8)::numeric, CAST(:hi AS float8)::numeric, '[]'),"
    " tstzrange(:t0, :t1, '[)'), :length, :verdict, CAST(:validation AS jsonb), :version"
)
_INSERT = text(
    "INSERT INTO drone_routes (name, drone_id, priority, geom, corridor, half_width_m,"
    " vertical_half_m, alt_band, time_window, length_m, verdict, validation,"
    f" city_model_version, validated_at, created_by) VALUES (:name, :drone_id, :priority,"
    f" {_VALUES}, now(), :by) RETURNING id"
)
_UPDATE = text(
    "UPDATE drone_routes SET (name, drone_id, priority, geom, corridor, half_width_m,"
    " vertical_half_m, alt_band, time_window, length_m, verdict, validation,"
    " city_model_version, validated_at, status, approved_by, approved_at, authorisation,"
    f" updated_at) = (:name, :drone_id, :priority, {_VALUES}, now(), 'planned', NULL, NULL,"
    " NULL, now()) WHERE id = :id"
)
# which status a route may move to from which
TRANSITIONS = {
    "active": {"approved"},
    "suspended": {"approved", "active"},
    "retired": {"planned", "approved", "active", "suspended"},
    "planned": {"suspended"},
}


def _params(route: RouteVolume, result: dict[str, Any]) -> dict[str, Any]:
    lo, hi = route.alt_band
    return {
        "geom": shapely.to_wkb(shapely.LineString(route.lonlatz), output_dimension=3),
        "corridor": shapely.to_wkb(route.corridor_ll), "hw": route.half_width,
        "vh": route.vertical_half, "lo": lo, "hi": hi, "t0": route.start, "t1": route.end,
        "length": route.length_m, "verdict": result["verdict"],
        "validation": json.dumps(result, default=str),
        "version": result["checked"].get("city_model_version"),
    }


async def insert_route(conn: AsyncConnection, route: RouteVolume, drone_id: int,
                       name: str | None, result: dict[str, Any], by: str) -> int:
    return (await conn.execute(_INSERT, {**_params(route, result), "name": name,
                                         "drone_id": drone_id, "priority": route.priority,
                                         "by": by})).scalar_one()


async def update_route(conn: AsyncConnection, route_id: int, route: RouteVolume,
                       drone_id: int, name: str | None, result: dict[str, Any]) -> None:
    row = (await conn.execute(text("SELECT status FROM drone_routes WHERE id = :id FOR UPDATE"),
                              {"id": route_id})).first()
    if row is None:
        raise NotFound(f"no drone route {route_id}")
    if row.status in ("active", "retired"):
        raise Conflict(f"route {route_id} is {row.status}: suspend it before changing it",
                       route_status=row.status)
    await conn.execute(_UPDATE, {**_params(route, result), "name": name, "id": route_id,
                                 "drone_id": drone_id, "priority": route.priority})


def route_feature(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    geometry = json.loads(m.pop("geometry"))
    corridor = json.loads(m.pop("corridor"))
    rid = m.pop("id")
    return {"type": "Feature", "id": rid, "geometry": geometry,
            "properties": {**m, "corridor": corridor},
            "links": [{"rel": "self", "href": f"/drone-routes/{rid}"},
                      {"rel": "conflicts", "href": f"/drone-routes/{rid}/conflicts"}]}


async def get_route(conn: AsyncConnection, route_id: int) -> dict[str, Any]:
    row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM drone_routes r WHERE r.id = :id"),
                              {"id": route_id})).first()
    if row is None:
        raise NotFound(f"no drone route {route_id}")
    return route_feature(row)


async def list_routes(conn: AsyncConnection, status: str | None, drone_id: int | None,
                      limit: int) -> list[dict[str, Any]]:
    rows = (await conn.execute(text(
        f"SELECT {_COLUMNS} FROM drone_routes r"
        " WHERE (CAST(:status AS text) IS NULL OR r.status = :status)"
        " AND (CAST(:drone AS bigint) IS NULL OR r.drone_id = :drone)"
        " ORDER BY r.id DESC LIMIT :limit"),
        {"status": status, "drone": drone_id, "limit": limit})).all()
    return [route_feature(r) for r in rows]


def volume_of_row(row: Any, s: LowAltSettings) -> RouteVolume:
    """The stored volume of a route (its corridor is rebuilt from the stored polygon)."""
    fr = frame(s.metric_crs)
    ll = shapely.get_coordinates(shapely.from_wkb(row.wkb), include_z=True)
    return RouteVolume(ll, fr.xyz(ll), row.half_width_m, row.vertical_half_m,
                       fr.geom_to_metric(shapely.from_wkb(row.corridor_wkb)), row.t0, row.t1,
                       row.priority, fr)


async def load_volume(conn: AsyncConnection, route_id: int, s: LowAltSettings,
                      for_update: bool = False) -> tuple[Any, RouteVolume]:
    row = (await conn.execute(text(
        "SELECT id, drone_id, status, verdict, priority, half_width_m, vertical_half_m,"
        " ST_AsBinary(geom) AS wkb, ST_AsBinary(corridor) AS corridor_wkb,"
        " lower(time_window) AS t0, upper(time_window) AS t1 FROM drone_routes"
        " WHERE id = :id" + (" FOR UPDATE" if for_update else "")), {"id": route_id})).first()
    if row is None:
        raise NotFound(f"no drone route {route_id}")
    return row, volume_of_row(row, s)


async def approve(conn: AsyncConnection, route_id: int, s: LowAltSettings, by: str,
                  role: str, authorisation: str | None) -> dict[str, Any]:
    """Approve inside the caller's transaction: lock the route and its airspace cells,
    validate it again against the city model and zones of now (a zone declared or a
    building surveyed since filing counts), check conflicts, then mark it approved with
    that validation. Raises Conflict with the violations or conflicts listed."""
    row, vol = await load_volume(conn, route_id, s, for_update=True)
    if row.status not in ("planned", "suspended"):
        raise Conflict(f"route {route_id} is {row.status}; only planned or suspended routes "
                       "can be approved", route_status=row.status)
    cells = await lock_airspace(conn, vol, s)
    klass = await drone_class(conn, row.drone_id)
    result = await validate_route(conn, vol, klass, s, approving=True)
    if result["verdict"] == "refused":
        refused = [v for v in result["violations"] if v["severity"] == "refuse"]
        raise Conflict(
            f"route {route_id} fails validation against the current city model and airspace "
            f"zones ({'; '.join(v['message'] for v in refused[:3])}); change it and file it "
            "again", violations=refused)
    if result["verdict"] == "needs_approval" and (role != "admin" or not authorisation):
        raise Forbidden(
            f"route {route_id} needs an authority's approval (controlled airspace or an "
            "authorisation zone): an admin key and an 'authorisation' reference",
            violations=[v for v in result["violations"] if v["severity"] == "needs_approval"])
    conflicts = await find_conflicts(conn, vol, s, self_id=route_id)
    result["conflicts"] = conflicts
    blocking = [c for c in conflicts if c["blocking"]]
    if blocking:
        raise Conflict(
            f"route {route_id} conflicts with {len(blocking)} approved or active route(s) of "
            "equal or higher priority", conflicts=blocking)
    try:
        async with conn.begin_nested():
            await conn.execute(text(
                "UPDATE drone_routes SET status = 'approved', approved_by = :by,"
                " approved_at = now(), authorisation = :auth, updated_at = now(),"
                " verdict = :verdict, validation = CAST(:validation AS jsonb),"
                " city_model_version = :version, validated_at = now()"
                " WHERE id = :id"),
                {"by": by, "auth": authorisation, "id": route_id,
                 "verdict": result["verdict"],
                 "validation": json.dumps(result, default=str),
                 "version": result["checked"].get("city_model_version")})
    except exc.IntegrityError as e:
        if "drone_routes_drone_id_time_window_excl" in str(e.orig) or "exclu" in str(e.orig):
            raise Conflict(f"drone {row.drone_id} already holds an approved or active route "
                           "in that time window") from e
        raise
    return {"route_id": route_id, "status": "approved", "locked_cells": cells,
            "yielding": [c for c in conflicts if not c["blocking"]], "validation": result}


async def set_status(conn: AsyncConnection, route_id: int, status: str) -> str:
    row = (await conn.execute(text("SELECT status FROM drone_routes WHERE id = :id FOR UPDATE"),
                              {"id": route_id})).first()
    if row is None:
        raise NotFound(f"no drone route {route_id}")
    if status == "approved":
        raise Unprocessable("use POST /drone-routes/{id}/approve to approve a route")
    allowed = TRANSITIONS.get(status)
    if allowed is None:
        raise Unprocessable(f"unknown status {status!r}")
    if row.status not in allowed:
        raise Conflict(f"route {route_id} is {row.status}; it cannot become {status}",
                       route_status=row.status)
    await conn.execute(text("UPDATE drone_routes SET status = :s, updated_at = now()"
                            " WHERE id = :id"), {"s": status, "id": route_id})
    return row.status
