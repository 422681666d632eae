"""Drone routes: file, validate, check conflicts, approve, change status, plan."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.auth import PLAN_ROLES, Principal, Reader, Writer, require
from service.core.errors import Unprocessable
from service.core.ids import Id
from service.lowalt import lifecycle, store
from service.lowalt.checks import drone_class, find_conflicts, validate_route
from service.lowalt.ground import load_ground
from service.lowalt.plan_service import plan_route
from service.lowalt.schemas import PlanIn, RouteIn, RouteVolume, Strict, route_volume
from service.lowalt.settings import LowAltSettings, lowalt_settings

router = APIRouter(prefix="/drone-routes", tags=["low altitude"])
Planner = Annotated[Principal, Depends(require(PLAN_ROLES, "checking and planning routes"))]
Settings = Annotated[LowAltSettings, Depends(lowalt_settings)]


_VALIDATION_DOC = (
    "The answer: `verdict` (accepted, needs_approval, refused), `violations` (rule, severity, "
    "message, from_fraction/to_fraction, point, and the city object or zone), `conflicts` "
    "with approved and active flights (each window widened by `time_margin_s`, 120 s: "
    "flights less than 240 s apart conflict), and `checked`: what was checked, with "
    "`margins` (clearance_h_m, clearance_v_m, half_width_m: the tube that holds the filed "
    "corridor, vertical_half_m, zone_margin_m: zones count from half-width + half the "
    "sampling step), `height_agl_m`, `ground_source` (samples per ground: city_model, "
    "lidar_survey, egm96_sea_level) and `ground_note` where sea level stood in for the "
    "ground.")
_ROUTE_422 = {422: {"description": "not a flight: too few points, absurd heights, a window "
                                   "in the past or too long, a corridor that is not a "
                                   "valid polygon around the line or reaches farther than "
                                   "half_width_m or 500 m (with corridor_reach_m), an "
                                   "unknown drone; nothing was stored"}}


class ApproveIn(Strict):
    authorisation: str | None = Field(
        None, max_length=200,
        description="permit reference; required (with an admin key) when validation said "
                    "the route needs approval")


class StatusIn(Strict):
    status: Literal["active", "suspended", "retired", "planned"]


async def _volume(conn: AsyncConnection, body: RouteIn, s: LowAltSettings
                  ) -> tuple[RouteVolume, str]:
    klass = await drone_class(conn, body.drone_id)
    ground_fn = None
    if body.height_reference == "agl":
        # a first pass without heights gives the area whose ground the heights refer to
        flat = body.model_copy(update={"height_reference": "wgs84", "geometry": body.geometry
                                       .model_copy(update={"coordinates": [
                                           [*c[:2], 0.0] for c in body.geometry.coordinates]})})
        area = route_volume(flat, s)
        ground = await load_ground(conn, area.tube_m(), area.frame, s)
        ground_fn = ground.at_lonlat
    return route_volume(body, s, ground_fn), klass


async def _check(conn: AsyncConnection, body: RouteIn, s: LowAltSettings,
                 self_id: int | None = None) -> tuple[RouteVolume, dict[str, Any]]:
    vol, klass = await _volume(conn, body, s)
    result = await validate_route(conn, vol, klass, s)
    result["conflicts"] = await find_conflicts(conn, vol, s, self_id)
    return vol, result


def _reject_insane(result: dict[str, Any]) -> None:
    bad = [v for v in result["violations"] if v["rule"] == "volume"]
    if bad:
        raise Unprocessable("; ".join(v["message"] for v in bad) + "; nothing was stored",
                            violations=bad)


@router.post("/validate", summary="Check a route without filing it: every violation, "
             "where it is, and the conflicts it would have now",
             description=_VALIDATION_DOC, responses=_ROUTE_422)
async def validate(body: RouteIn, request: Request, _: Planner, s: Settings
                   ) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        _, result = await _check(conn, body, s)
    return result


@router.post("", status_code=201, summary="File a route (validated; status planned)",
             description="The route as GeoJSON with its `validation`. " + _VALIDATION_DOC,
             responses=_ROUTE_422)
async def file_route(body: RouteIn, request: Request, who: Writer, s: Settings
                     ) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        vol, result = await _check(conn, body, s)
        _reject_insane(result)
        route_id = await store.insert_route(conn, vol, body.drone_id, body.name, result,
                                            who.name)
        feature = await store.get_route(conn, route_id)
    request.state.audit_detail = {"route": route_id, "verdict": result["verdict"]}
    return {**feature, "validation": result}


@router.get("", summary="Routes as GeoJSON, newest first")
async def list_routes(request: Request, _: Reader,
                      status: str | None = Query(None, description="planned, approved, ..."),
                      drone_id: Id | None = None,
                      limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        feats = await store.list_routes(conn, status, drone_id, limit)
    return {"type": "FeatureCollection", "features": feats, "numberReturned": len(feats)}


@router.post("/plan", summary="Plan a 3D path from start to goal that avoids buildings, "
             "zones and approved flights of equal or higher priority in its window (4D) with "
             "the margins and stays under the height limit; the answer has the same "
             "validation and conflicts as /validate",
             description="`route` is a body to file as is, `validation` what /validate says "
                         "of it (" + _VALIDATION_DOC + "), `plan` the search figures "
                         "(flights_avoided: the approved flights it planned around; "
                         "departure_delay_s and a note when those flights blocked every way "
                         "and it departs later, at most max_delay_s).",
             responses={422: {"description": "no path: the start, the goal or every way is "
                                             "blocked (blocked_by names what), or the path "
                                             "would conflict with approved flights"}})
async def plan(body: PlanIn, request: Request, _: Planner, s: Settings) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        return await plan_route(conn, body, s)


@router.get("/{route_id}", summary="One route with its validation result")
async def get_route(route_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        return await store.get_route(conn, route_id)


@router.put("/{route_id}", summary="Change a route: validated again, back to planned")
async def change_route(route_id: Id, body: RouteIn, request: Request, _: Writer,
                       s: Settings) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        vol, result = await _check(conn, body, s, self_id=route_id)
        _reject_insane(result)
        await store.update_route(conn, route_id, vol, body.drone_id, body.name, result)
        feature = await store.get_route(conn, route_id)
    request.state.audit_detail = {"route": route_id, "verdict": result["verdict"]}
    return {**feature, "validation": result}


@router.get("/{route_id}/conflicts", summary="Approved and active routes this one conflicts "
            "with now")
async def conflicts(route_id: Id, request: Request, _: Reader, s: Settings
                    ) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        row, vol = await store.load_volume(conn, route_id, s)
        found = await find_conflicts(conn, vol, s, self_id=route_id)
    return {"route_id": route_id, "priority": row.priority, "conflicts": found,
            "blocking": sum(1 for c in found if c["blocking"])}


@router.post("/{route_id}/approve", summary="Approve: validated again against the city "
             "model and zones of now; refused with the violations or the conflicts listed",
             description="Inside one transaction holding the route's row and airspace cells: "
                         "the route is validated again (zones declared and buildings surveyed "
                         "since filing count), then checked for conflicts with approved and "
                         "active flights; the answer carries that `validation`, which is "
                         "stored with the route. " + _VALIDATION_DOC,
             responses={
                 403: {"description": "the route needs an authority's approval (height "
                                      "limit or an authorisation zone): an admin key and "
                                      "an `authorisation` reference"},
                 409: {"description": "not planned or suspended; fails validation now "
                                      "(`violations`); conflicts with an approved or "
                                      "active flight of equal or higher priority "
                                      "(`conflicts`); or the drone holds another route "
                                      "then"}})
async def approve(route_id: Id, request: Request, who: Writer, s: Settings,
                  body: ApproveIn | None = None) -> dict[str, Any]:
    auth = body.authorisation if body else None
    async with request.app.state.engine.begin() as conn:
        outcome = await lifecycle.approve(conn, route_id, s, who.name, who.role, auth)
    request.state.audit_detail = {"route": route_id, "approved": True}
    return outcome


@router.post("/{route_id}/status", summary="Activate, suspend, retire (or re-plan a "
             "suspended route)")
async def set_status(route_id: Id, body: StatusIn, request: Request, _: Writer
                     ) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        before = await lifecycle.set_status(conn, route_id, body.status)
    request.state.audit_detail = {"route": route_id, "from": before, "to": body.status}
    return {"route_id": route_id, "status": body.status, "was": before}
