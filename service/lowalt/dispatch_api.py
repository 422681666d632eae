"""Fleet dispatch: ``POST /fleet/plans`` assigns and schedules drone tasks (the ``dispatch``
library, PyVRP), ``/fleet/plans/{id}/replan`` plans again while flying, and
``/fleet/plans/{id}/emergency`` sends a drone to an incident.

Travel times are the corridor network's shortest paths when a network has been generated,
else the straight line times a detour factor (``travel_for``; every answer says which in
``travel``). On a network, every planned flight is reserved and approved with the network's
4D reservations in the transaction that stores the plan (``fleet_reserve``: one flight per
hop between the nodes nearest two sites, re-timed to the first free slots within
``max_delay_s``); if one cannot be, the request is refused naming it and nothing is stored.
Each trip lists its ``flights`` (reservation and route ids, reserved times); ``reservation``
sums up. A re-plan releases the parent's flights it drops and reserves the new ones in one
transaction; an emergency may pre-empt lower-priority reservations, and posts a notice on
the live stream (``fleet_notices``). Without a network nothing is reserved, and
``reservation.status`` says ``not_reserved``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import (
    Plan,
    Problem,
    StraightLineWithDetour,
    TravelTimes,
    Unassigned,
    emergency,
    plan,
    replan,
    with_task,
)
from service.core.auth import Reader, Writer
from service.core.errors import Conflict, NotFound, Unprocessable
from service.core.ids import Id
from service.lowalt.dispatch_schemas import (
    EmergencyIn,
    FleetPlanIn,
    ReplanIn,
    problem_from,
    task_from,
)
from service.lowalt.dispatch_tables import fleet_notices, fleet_plans
from service.lowalt.fleet_reserve import Reserver, registered, release
from service.lowalt.geo import frame
from service.lowalt.network.graph import Network
from service.lowalt.network.service import load_network, plain
from service.lowalt.settings import LowAltSettings, lowalt_settings

router = APIRouter(prefix="/fleet/plans", tags=["fleet dispatch"])
Settings = Annotated[LowAltSettings, Depends(lowalt_settings)]

_422 = {422: {"description": "not a fleet problem (duplicate ids, a home that is no "
                             "vertiport, a window ending before it starts, a vertiport in a "
                             "prohibited zone, ...): every reason in `errors`; nothing was "
                             "stored"}}

# prohibited zones in force at some time of the plan holding a point; horizontal test: a
# drone must come down to its work, whatever the zone's floor
_IN_PROHIBITED = text(
    "SELECT p.id, z.name FROM unnest(CAST(:ids AS text[]), CAST(:lons AS float8[]),"
    " CAST(:lats AS float8[])) AS p(id, lon, lat)"
    " JOIN airspace_zones z ON z.zone_type = 'prohibited'"
    " AND ST_Intersects(z.geom, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326))"
    " AND z.valid && tstzrange(:t0, :t1)")


class NetworkTravel:
    """Shortest-path times over the corridor network (climb, corridors at their speed, layer
    changes, descent), each site joining its nearest network node by a straight hop at the
    network's speed; inf where the network has no path (the task is then unreachable)."""

    def __init__(self, net: Network, speed_ms: float) -> None:
        self.net = net
        self.speed_ms = speed_ms

    def matrix(self, sites: Any, drone: Any) -> np.ndarray:
        xy = np.array([[x, y] for _, x, y in sites], dtype=float)
        idx, access = self.net.nearest_nodes(xy)
        uniq, inv = np.unique(idx, return_inverse=True)
        seconds = self.net.travel_times(uniq, uniq)[np.ix_(inv, inv)]
        hop = access / self.speed_ms
        out = seconds + hop[:, None] + hop[None, :]
        np.fill_diagonal(out, 0.0)
        return out


async def travel_for(conn: AsyncConnection, detour: float, s: LowAltSettings
                     ) -> tuple[TravelTimes, str]:
    """The travel times plans are made with, and what they are: the corridor network's
    shortest paths when there is a network, else the straight line times ``detour``."""
    try:
        net = await load_network(conn, s)
    except NotFound:
        net = None
    if net is None or not len(net.node_ids):
        return StraightLineWithDetour(detour), f"straight line x {detour:g} (no route network)"
    return NetworkTravel(net, s.network_speed_ms), f"route network version {net.version}"


_HELD = text("SELECT id FROM network_reservations WHERE id = ANY(CAST(:ids AS bigint[]))"
             " AND status = 'held'")
NOT_RESERVED = {"status": "not_reserved",
                "detail": "no route network: the planned flights are not reserved or "
                          "approved; file each flight at /drone-routes for approval"}


async def reserve_flights(conn: AsyncConnection, plan_id: int, epoch: datetime,
                          problem: Problem, result: Plan, s: LowAltSettings, by: str, *,
                          max_delay_s: float, now_s: float = -math.inf,
                          parent: dict[str, Any] | None = None, urgent: str | None = None
                          ) -> dict[str, Any]:
    """Reserve and approve every flight of ``result`` on the route network, in ``conn``'s
    transaction, re-timing ``result`` to the slots got (``fleet_reserve``). ``parent``: the
    reservation record of the plan this one replaces (its flights kept, or released)."""
    try:
        net = await load_network(conn, s)
    except NotFound:
        net = None
    if net is None or not len(net.node_ids):
        return dict(NOT_RESERVED)
    drone_ids = await registered(conn, [d.id for d in problem.drones])
    r = Reserver(conn, net, problem, epoch, s, by, plan_id, max_delay_s)
    keys = {leg.key() for dp in result.drones for k, t in enumerate(dp.trips)
            for leg in r._legs(dp.drone, k, t)}
    released = await release(conn, parent, keys, now_s)
    kept = [f for f in (parent or {}).get("flights", [])
            if f["key"] in keys and f.get("reservation_id") is not None
            and f.get("status") in ("approved", "carried")]
    held = set((await conn.execute(_HELD, {"ids": [f["reservation_id"] for f in kept]})
                ).scalars()) if kept else set()
    carried = {f["key"]: f for f in kept if f["reservation_id"] in held}
    flights = await r.run(result, drone_ids, now_s, carried, urgent)
    approved = [f for f in flights if f["status"] in ("approved", "carried")]
    return {"status": "reserved", "network_version": net.version,
            "max_delay_s": max_delay_s, "flights": flights,
            "approved": len(approved), "released": released, "preempted": r.preempted,
            "delayed": sum(1 for f in flights if f.get("delay_s", 0) > 0)}


def _flight(f: dict[str, Any]) -> dict[str, Any]:
    keys = ("from", "to", "status", "reservation_id", "route_id", "departure", "arrival",
            "delay_s", "access_m")
    return {k: f[k] for k in keys if k in f}


def _iso(epoch: datetime, s: float) -> str | None:
    return None if not math.isfinite(s) else (epoch + timedelta(seconds=s)).isoformat()


def _answer(row_id: int, kind: str, parent: int | None, epoch: datetime, result: Plan,
            reservation: dict[str, Any] | None) -> dict[str, Any]:
    reservation = reservation or dict(NOT_RESERVED)
    by_trip: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for f in reservation.get("flights", []):
        by_trip.setdefault((f["drone"], f["trip"]), []).append(_flight(f))
    drones = [{"drone": dp.drone, "trips": [{
        "origin": t.origin, "destination": t.destination,
        "departure": _iso(epoch, t.departure), "arrival": _iso(epoch, t.arrival),
        "flight_s": round(t.flight_s, 1), "payload_kg": t.payload_kg,
        "stops": [{"task": s.task, "arrival": _iso(epoch, s.arrival),
                   "start": _iso(epoch, s.start), "departure": _iso(epoch, s.departure)}
                  for s in t.stops],
        "flights": by_trip.get((dp.drone, k + 1), [])} for k, t in enumerate(dp.trips)]}
        for dp in result.drones]
    reservation = {k: v for k, v in reservation.items() if k != "flights"}
    return {"id": row_id, "kind": kind, "parent_id": parent, "start": epoch.isoformat(),
            "planned": len(result.planned_tasks()), "drones": drones,
            "unassigned": [{"task": u.task, "reason": u.reason, "detail": u.detail}
                           for u in result.unassigned],
            "completed": result.completed, "reservation": reservation,
            "links": [{"rel": "self", "href": f"/fleet/plans/{row_id}"}]}


async def _zones(conn: AsyncConnection, points: list[tuple[str, list[float]]],
                 t0: datetime, t1: datetime) -> dict[str, str]:
    if not points:
        return {}
    rows = (await conn.execute(_IN_PROHIBITED, {
        "ids": [p[0] for p in points], "lons": [p[1][0] for p in points],
        "lats": [p[1][1] for p in points], "t0": t0, "t1": t1})).all()
    return {r.id: r.name for r in rows}


def _where(t: Any) -> list[float]:
    if t.position is not None:
        return t.position
    ring = np.asarray(t.area.coordinates[0] if t.area.type == "Polygon"
                      else t.area.coordinates[0][0], dtype=float)
    return [float(ring[:, 0].mean()), float(ring[:, 1].mean())]


async def _screen_zones(conn: AsyncConnection, body: FleetPlanIn, problem: Problem
                        ) -> tuple[Problem, list[Unassigned]]:
    """A vertiport in a prohibited zone refuses the request; a task in one is reported."""
    t1 = body.start + timedelta(days=2)
    ports = await _zones(conn, [(v.id, v.position) for v in body.vertiports], body.start, t1)
    if ports:
        errors = [f"vertiport {k} lies in prohibited zone {v!r}" for k, v in ports.items()]
        raise Unprocessable("; ".join(errors) + "; nothing was stored", errors=errors)
    tasks = await _zones(conn, [(t.id, _where(t)) for t in body.tasks], body.start, t1)
    out = [Unassigned(k, "in_prohibited_zone", f"inside prohibited zone {v!r}")
           for k, v in tasks.items()]
    kept = tuple(t for t in problem.tasks if t.id not in tasks)
    return Problem(problem.vertiports, problem.drones, kept), out


async def _store(conn: AsyncConnection, kind: str, parent: int | None, epoch: datetime,
                 body: dict[str, Any], result: Plan, who: str) -> int:
    return (await conn.execute(insert(fleet_plans).values(
        parent_id=parent, kind=kind, epoch=epoch, problem=body, plan=result.to_dict(),
        planned=len(result.planned_tasks()), unassigned=len(result.unassigned),
        created_by=who).returning(fleet_plans.c.id))).scalar_one()


async def _store_reserved(conn: AsyncConnection, row_id: int, result: Plan,
                          reservation: dict[str, Any]) -> None:
    """The plan as re-timed by its reservations, and what it holds."""
    await conn.execute(update(fleet_plans).where(fleet_plans.c.id == row_id).values(
        plan=result.to_dict(), reservation=plain(reservation)))


async def _load(conn: AsyncConnection, plan_id: int) -> Any:
    row = (await conn.execute(select(fleet_plans).where(fleet_plans.c.id == plan_id))).first()
    if row is None:
        raise NotFound(f"no fleet plan {plan_id}")
    return row


def _now_s(at: datetime | None, epoch: datetime) -> float:
    at = at or datetime.now(UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise Unprocessable("at needs a time zone (e.g. 2026-05-01T10:00:00+08:00)")
    return (at - epoch).total_seconds()


@router.post("", status_code=201, summary="Assign and schedule drone tasks over a fleet",
             responses=_422)
async def create_plan(body: FleetPlanIn, request: Request, who: Writer,
                      s: Settings) -> dict[str, Any]:
    """Multi-trip (battery swaps at any vertiport), time windows, payload, battery
    endurance; priorities as prizes, so tasks no drone can serve are left out, each with
    its reason in `unassigned` (`too_heavy`, `out_of_battery_range`, `infeasible_window`,
    `unreachable`, `in_prohibited_zone`, `not_planned`), and the rest is planned."""
    out = await make_plan(request.app.state.engine, body, s, who.name)
    request.state.audit_detail = {"fleet_plan": out["id"], "planned": out["planned"]}
    return out


async def make_plan(engine: Any, body: FleetPlanIn, s: LowAltSettings, by: str
                    ) -> dict[str, Any]:
    """Plan, store and reserve (``POST /fleet/plans``; the demo district calls it too)."""
    problem = problem_from(body, frame(s.metric_crs))
    async with engine.connect() as conn:
        problem, in_zones = await _screen_zones(conn, body, problem)
        travel, travel_label = await travel_for(conn, body.detour_factor, s)
    result = await run_in_threadpool(plan, problem, travel, time_limit_s=body.time_limit_s)
    result.unassigned = in_zones + result.unassigned
    async with engine.begin() as conn:
        row_id = await _store(conn, "plan", None, body.start, body.model_dump(mode="json"),
                              result, by)
        reservation = await reserve_flights(conn, row_id, body.start, problem, result, s,
                                            by, max_delay_s=body.max_delay_s)
        await _store_reserved(conn, row_id, result, reservation)
    return {**_answer(row_id, "plan", None, body.start, result, reservation),
            "travel": travel_label}


@router.get("/{plan_id}", summary="A stored fleet plan")
async def get_plan(plan_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        row = await _load(conn, plan_id)
    return _answer(row.id, row.kind, row.parent_id, row.epoch, Plan.from_dict(row.plan),
                   row.reservation)


@router.post("/{plan_id}/replan", status_code=201, responses=_422,
             summary="Plan again from now: a drone dropped out, tasks added or withdrawn")
async def replan_plan(plan_id: Id, body: ReplanIn, request: Request, who: Writer,
                      s: Settings) -> dict[str, Any]:
    """Trips flown or under way at `at` stay as they are; a dropped drone keeps only the
    stops it finished, and the rest of the work is planned again over the others. The
    answer is a new plan (`parent_id` names this one)."""
    async with request.app.state.engine.connect() as conn:
        row = await _load(conn, plan_id)
    stored = FleetPlanIn.model_validate(row.problem)
    drones = {d.id for d in stored.drones}
    errors = [f"no drone {d!r} in plan {plan_id}" for d in body.dropped if d not in drones]
    ids = {t.id for t in stored.tasks}
    errors += [f"no task {t!r} in plan {plan_id}" for t in body.remove_tasks if t not in ids]
    errors += [f"task id {t.id!r} is in plan {plan_id} already" for t in body.add_tasks
               if t.id in ids]
    if errors:
        raise Unprocessable("; ".join(errors) + "; nothing was stored", errors=errors)
    gone = set(body.remove_tasks)
    new_body = stored.model_copy(update={"tasks": [t for t in stored.tasks if t.id not in gone]
                                         + list(body.add_tasks)})
    problem = problem_from(new_body, frame(s.metric_crs))
    previous = Plan.from_dict(row.plan)
    dropped = sorted(set(previous.objective.get("dropped", [])) | set(body.dropped))
    now = _now_s(body.at, row.epoch)
    async with request.app.state.engine.connect() as conn:
        problem, in_zones = await _screen_zones(conn, new_body, problem)
        travel, travel_label = await travel_for(conn, stored.detour_factor, s)
    result = await run_in_threadpool(replan, problem, previous, now, travel, dropped=dropped,
                                     time_limit_s=body.time_limit_s)
    result.unassigned = in_zones + result.unassigned
    async with request.app.state.engine.begin() as conn:
        row_id = await _store(conn, "replan", plan_id, row.epoch,
                              new_body.model_dump(mode="json"), result, who.name)
        reservation = await reserve_flights(
            conn, row_id, row.epoch, problem, result, s, who.name,
            max_delay_s=stored.max_delay_s, now_s=now, parent=row.reservation)
        await _store_reserved(conn, row_id, result, reservation)
    request.state.audit_detail = {"fleet_plan": row_id, "parent": plan_id}
    return {**_answer(row_id, "replan", plan_id, row.epoch, result, reservation),
            "travel": travel_label}


@router.post("/{plan_id}/emergency", status_code=201,
             summary="Send the nearest suitable drone to an incident",
             responses={**_422, 409: {"description": "no drone can go: each drone's reason "
                                                      "in `refused`; nothing was stored"}})
async def post_emergency(plan_id: Id, body: EmergencyIn, request: Request, who: Writer,
                         s: Settings) -> dict[str, Any]:
    """The nearest suitable free drone goes; if none is free, the one whose diversion gives
    up the least work, all of it of lower priority than the incident. The answer is a new
    plan with `emergency` (drone, eta, pre-empted tasks, which are listed in `unassigned`
    too, to re-plan)."""
    async with request.app.state.engine.connect() as conn:
        row = await _load(conn, plan_id)
    stored = FleetPlanIn.model_validate(row.problem)
    if any(t.id == body.task.id for t in stored.tasks):
        raise Unprocessable(f"task id {body.task.id!r} is in plan {plan_id} already; "
                            "nothing was stored")
    fr = frame(s.metric_crs)
    problem = problem_from(stored, fr)
    errors: list[str] = []
    task = task_from(body.task, row.epoch, fr, errors, kind="emergency")
    if task is None:
        raise Unprocessable("; ".join(errors) + "; nothing was stored", errors=errors)
    async with request.app.state.engine.connect() as conn:
        zone = await _zones(conn, [(task.id, _where(body.task))], row.epoch,
                            row.epoch + timedelta(days=2))
        travel, travel_label = await travel_for(conn, stored.detour_factor, s)
    if zone:
        raise Unprocessable(f"the incident lies in prohibited zone {zone[task.id]!r}: no "
                            "drone may go; nothing was stored")
    previous = Plan.from_dict(row.plan)
    now = _now_s(body.at, row.epoch)
    answer = await run_in_threadpool(emergency, problem, previous, task, now, travel,
                                     previous.objective.get("dropped", []))
    if answer.drone is None:
        raise Conflict(f"no drone available for emergency {task.id}: "
                       + "; ".join(f"{k}: {v}" for k, v in answer.refused.items())
                       + "; nothing was stored", refused=answer.refused)
    new_body = stored.model_copy(update={"tasks": [*stored.tasks, body.task]})
    whole = with_task(problem, task)
    async with request.app.state.engine.begin() as conn:
        row_id = await _store(conn, "emergency", plan_id, row.epoch,
                              new_body.model_dump(mode="json"), answer.plan, who.name)
        reservation = await reserve_flights(
            conn, row_id, row.epoch, whole, answer.plan, s, who.name,
            max_delay_s=stored.max_delay_s, now_s=now, parent=row.reservation,
            urgent=task.id)
        await _store_reserved(conn, row_id, answer.plan, reservation)
        eta = next((st.arrival for dp in answer.plan.drones if dp.drone == answer.drone
                    for t in dp.trips for st in t.stops if st.task == task.id), answer.eta)
        emergency_out = {
            "task": task.id, "type": body.task.type, "priority": task.priority,
            "position": _where(body.task), "drone": answer.drone,
            "eta": _iso(row.epoch, eta or 0.0), "preempted": answer.preempted,
            "preempted_flights": reservation.get("preempted", []),
            "refused": answer.refused}
        notice = await conn.execute(insert(fleet_notices).values(
            kind="emergency", plan_id=row_id,
            body=plain({"plan_id": row_id, "parent_id": plan_id, **emergency_out}))
            .returning(fleet_notices.c.seq))
        emergency_out["notice_seq"] = notice.scalar_one()
    request.state.audit_detail = {"fleet_plan": row_id, "emergency": task.id,
                                  "drone": answer.drone}
    out = _answer(row_id, "emergency", plan_id, row.epoch, answer.plan, reservation)
    out["travel"] = travel_label
    out["emergency"] = emergency_out
    return out
