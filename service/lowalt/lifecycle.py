"""A route's status: approval (validated again, its airspace locked, checked for conflicts)
and the other changes (activate, suspend, retire, re-plan)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from service.lowalt import store
from service.lowalt.checks import drone_class, find_conflicts, validate_route
from service.lowalt.locks import lock_airspace
from service.lowalt.settings import LowAltSettings

# which status a route may move to from which
TRANSITIONS = {
    "active": {"approved"},
    "suspended": {"approved", "active"},
    "retired": {"planned", "approved", "active", "suspended"},
    "planned": {"suspended"},
}


async def approve(conn: AsyncConnection, route_id: int, s: LowAltSettings, by: str,
                  role: str, authorisation: str | None) -> dict[str, Any]:
    """Approve inside the caller's transaction: lock the route and its airspace cells,
    validate it again against the city model and zones of now (a zone declared or a
    building surveyed since filing counts), check conflicts, then mark it approved with
    that validation. Raises Conflict with the violations or conflicts listed."""
    row, vol = await store.load_volume(conn, route_id, s, for_update=True)
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
            await conn.execute(store.approved(route_id, by, authorisation, result))
    except exc.IntegrityError as e:
        if "drone_routes_drone_id_time_window_excl" in str(e.orig) or "exclu" in str(e.orig):
            raise Conflict(f"drone {row.drone_id} already holds an approved or active route "
                           "in that time window") from e
        raise
    return {"route_id": route_id, "status": "approved", "locked_cells": cells,
            "yielding": [c for c in conflicts if not c["blocking"]], "validation": result}


async def set_status(conn: AsyncConnection, route_id: int, status: str) -> str:
    row = (await conn.execute(store.status_for_update(route_id))).first()
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
    await conn.execute(store.new_status(route_id, status))
    return row.status
