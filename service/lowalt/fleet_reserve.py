"""A fleet plan's flights reserved and approved on the route network, in one transaction.

Design. A trip flies vertiport -> task -> ... -> vertiport. Each site (a vertiport or a task)
joins the network at its nearest node, by a straight access hop at the network's speed
(the same model the plan's travel times come from, ``NetworkTravel``). Every hop from one
site to the next whose two nodes differ is a **network flight**: reserved with the
network's 4D reservations (``reserve.reserve_flight`` between the two nodes: every edge,
junction layer and vertiport slot on the fastest path), which also files and approves it
as a ``drone_routes`` row, so conformance monitoring and off-network approvals see it. Two
sites at one node need no network flight. The access hops themselves are not reserved: they
are short, below the flight layers, at the ends of a reserved column; the answer gives
each flight's ``access_m`` so a planner sees how far off the network a task lies.

Timing. The planner does not know the network's load, so several drones leaving one
vertiport at once would ask for one slot. Each flight is reserved at the first departure
at or after the planned one with every slot free (the reservation's earliest-departure
search, up to ``max_delay_s``); the drone waits on the pad or at the task, and everything
later on its schedule moves by as much. The re-timed schedule is checked again: a stop must
still start inside its window, a trip (waits included) must fit one battery. If a flight
cannot be reserved, or its delay breaks the schedule, the whole request is refused with the
flight named and the reason, and nothing is stored (the caller's transaction rolls back).
The plan stored is the re-timed one.

Re-planning keeps a flight whose drone, ends and departure are unchanged (its reservation
carries over), cancels the parent's flights that the new plan no longer has and that have
not departed, and reserves the new ones. An emergency flight that finds its slots taken by
lower-priority flights cancels those reservations (pre-emption) and takes the slots; the
pre-empted flights are listed in the answer and in the notice on the live stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch import Plan, Problem
from service.core.errors import Conflict, TwinbaseError, Unprocessable
from service.lowalt.network import reserve
from service.lowalt.network.graph import Network
from service.lowalt.network.schemas import FlightIn
from service.lowalt.settings import LowAltSettings

_DRONES = text("SELECT id, serial FROM drones WHERE serial = ANY(CAST(:s AS text[]))")

# held reservations of priority below P holding a slot of one of the resources
# (kinds[i], refs[i]) that meets [a[i], b[i])
_BLOCKERS = text(
    "SELECT DISTINCT r.id, r.drone_id, r.route_id, d.priority"
    " FROM unnest(CAST(:kinds AS text[]), CAST(:refs AS bigint[]),"
    "             CAST(:a AS timestamptz[]), CAST(:b AS timestamptz[])) AS k(kind, ref, a, b)"
    " JOIN network_slots s ON s.kind = k.kind AND s.ref_id = k.ref"
    "  AND s.during && tstzrange(k.a, k.b, '[)')"
    " JOIN network_reservations r ON r.id = s.reservation_id AND r.status = 'held'"
    " JOIN drone_routes d ON d.id = r.route_id"
    " WHERE d.priority < :p ORDER BY r.id")


@dataclass
class Leg:
    drone: str
    trip: int
    leg: int
    origin: str
    to: str
    a: int  # node index
    b: int
    access: tuple[float, float]  # metres from each site to its node
    leave: float  # seconds from epoch the drone leaves ``origin`` (planned)
    arrive: float  # and reaches ``to`` (planned)
    priority: int

    def key(self) -> str:
        return f"{self.drone}|{self.origin}|{self.to}|{self.leave:.1f}"

    def name(self) -> str:
        return f"{self.drone} trip {self.trip + 1} {self.origin} -> {self.to}"


def _iso(epoch: datetime, s: float) -> str:
    return (epoch + timedelta(seconds=s)).isoformat()


async def registered(conn: AsyncConnection, ids: list[str]) -> dict[str, int]:
    """Fleet drone id -> registered drone id (its serial); a 422 naming the unregistered."""
    rows = (await conn.execute(_DRONES, {"s": ids})).all()
    found = {r.serial: r.id for r in rows}
    missing = [d for d in ids if d not in found]
    if missing:
        errors = [f"drone {d!r} is not registered (POST /drones with serial {d!r}): its "
                  "flights cannot be reserved on the route network" for d in missing]
        raise Unprocessable("; ".join(errors[:5]) + "; nothing was stored", errors=errors)
    return found


class Reserver:
    """Reserves one plan's flights inside the caller's transaction (see the module)."""

    def __init__(self, conn: AsyncConnection, net: Network, problem: Problem,
                 epoch: datetime, s: LowAltSettings, by: str, plan_id: int,
                 max_delay_s: float) -> None:
        self.conn, self.net, self.problem, self.epoch = conn, net, problem, epoch
        self.s, self.by, self.plan_id, self.max_delay_s = s, by, plan_id, max_delay_s
        self.sites: dict[str, tuple[float, float]] = {
            **{v.id: (v.x, v.y) for v in problem.vertiports},
            **{t.id: (t.x, t.y) for t in problem.tasks}}
        self.tasks = {t.id: t for t in problem.tasks}
        ids = list(self.sites)
        idx, dist = net.nearest_nodes(np.array([self.sites[k] for k in ids], float))
        self.node = {k: int(i) for k, i in zip(ids, idx, strict=True)}
        self.access = {k: float(d) for k, d in zip(ids, dist, strict=True)}
        self.speed = s.network_speed_ms
        self.preempted: list[dict[str, Any]] = []

    def _legs(self, drone: str, k: int, trip: Any) -> list[Leg]:
        sites = [trip.origin, *(st.task for st in trip.stops), trip.destination]
        leave = [trip.departure, *(st.departure for st in trip.stops)]
        arrive = [*(st.arrival for st in trip.stops), trip.arrival]
        prio = max((self.tasks[st.task].priority for st in trip.stops
                    if st.task in self.tasks), default=0)
        return [Leg(drone, k, i, sites[i], sites[i + 1], self.node[sites[i]],
                    self.node[sites[i + 1]],
                    (self.access[sites[i]], self.access[sites[i + 1]]), leave[i], arrive[i],
                    prio)
                for i in range(len(sites) - 1)]

    async def _preempt(self, leg: Leg, dep: float) -> list[dict[str, Any]]:
        """Cancel the lower-priority reservations holding a slot this flight needs."""
        tl = reserve.path_timeline(self.net, leg.a, leg.b, self.s)
        if tl is None:
            return []
        t0 = self.epoch + timedelta(seconds=dep)
        rows = (await self.conn.execute(_BLOCKERS, {
            "kinds": [k for k, *_ in tl.slots], "refs": [r for _, r, *_ in tl.slots],
            "a": [t0 + timedelta(seconds=a) for *_, a, _b in tl.slots],
            "b": [t0 + timedelta(seconds=b) for *_, b in tl.slots],
            "p": leg.priority})).all()
        out = []
        for r in rows:
            await reserve.cancel(self.conn, r.id)
            out.append({"reservation_id": r.id, "route_id": r.route_id,
                        "drone_id": r.drone_id, "priority": r.priority,
                        "by_flight": leg.name()})
        return out

    async def _reserve(self, leg: Leg, dep: float, drone_id: int, preempt: bool
                       ) -> dict[str, Any]:
        if not self.net.path(leg.a, leg.b):
            raise Conflict(f"flight {leg.name()}: the route network has no path between the "
                           "nodes nearest its two ends (a corridor closed?); nothing was "
                           "stored", flight=leg.name())
        body = FlightIn(drone_id=drone_id, from_vertiport=0, to_vertiport=0,
                        departure=self.epoch + timedelta(seconds=dep),
                        max_delay_s=0 if preempt else self.max_delay_s,
                        priority=leg.priority,
                        name=f"fleet plan {self.plan_id}: {leg.name()}")
        nodes = (int(self.net.node_ids[leg.a]), int(self.net.node_ids[leg.b]))
        try:
            return await reserve.reserve_flight(self.conn, body, self.s, self.by, nodes)
        except Conflict:
            if not preempt:
                raise
        # an emergency: take the slots of lower-priority flights, else wait like any other
        gone = await self._preempt(leg, dep)
        self.preempted += gone
        body = body.model_copy(update={"max_delay_s": 0 if gone else self.max_delay_s})
        try:
            return await reserve.reserve_flight(self.conn, body, self.s, self.by, nodes)
        except Conflict:
            if not gone:
                raise
        body = body.model_copy(update={"max_delay_s": self.max_delay_s})
        return await reserve.reserve_flight(self.conn, body, self.s, self.by, nodes)

    async def run(self, result: Plan, drone_ids: dict[str, int], now_s: float,
                  carried: dict[str, dict[str, Any]], urgent: str | None = None
                  ) -> list[dict[str, Any]]:
        """Reserve every flight of ``result`` (re-timing it in place); flights whose key is
        in ``carried`` keep that reservation; flights leaving before ``now_s`` are not
        reserved (flown). ``urgent``: the emergency task, whose trip may pre-empt."""
        flights: list[dict[str, Any]] = []
        for dp in result.drones:
            drone = self.problem.drone(dp.drone)
            busy_until = -math.inf
            for k, trip in enumerate(dp.trips):
                legs = self._legs(dp.drone, k, trip)
                shift = max(0.0, busy_until - trip.departure)
                urgent_trip = urgent is not None and any(st.task == urgent
                                                         for st in trip.stops)
                at = None  # the stop the drone is at
                for leg, stop in zip(legs, [*trip.stops, None], strict=True):
                    rec, arrive, left = await self._leg(leg, shift, drone_ids, now_s,
                                                        carried, urgent_trip)
                    # a flight that waited for its slots leaves its pad or stop later
                    if at is None:
                        trip.departure = left
                    else:
                        at.departure = max(at.departure, left)
                    rec["key"] = f"{leg.drone}|{leg.origin}|{leg.to}|{left:.1f}"
                    flights.append(rec)
                    if stop is None:
                        trip.arrival = arrive
                        break
                    task = self.tasks[stop.task]
                    begin = max(arrive, task.tw_early)
                    if begin > task.tw_late + 1e-6:
                        raise Conflict(
                            f"flight {leg.name()}: its reserved slot on the route network "
                            f"({rec.get('delay_s', 0):g} s after the planned time) brings the "
                            "drone "
                            f"at {_iso(self.epoch, arrive)}, after task {task.id}'s window "
                            f"closes ({_iso(self.epoch, task.tw_late)}); nothing was stored",
                            flight=rec)
                    planned_leave = stop.departure
                    stop.arrival, stop.start = arrive, begin
                    stop.departure = begin + task.service_s
                    shift = stop.departure - planned_leave
                    at = stop
                if trip.arrival - trip.departure > drone.endurance_s + 1e-6:
                    raise Conflict(
                        f"drone {drone.id} trip {k + 1}: waiting for free slots on the route "
                        f"network makes it {trip.arrival - trip.departure:.0f} s long, more "
                        f"than one battery ({drone.endurance_s:.0f} s); nothing was stored",
                        drone=drone.id, trip=k + 1)
                swap = self.problem.vertiport(trip.destination).swap_s
                busy_until = trip.arrival + swap
        gone = {p["reservation_id"] for p in self.preempted}
        for f in flights:
            if f.get("reservation_id") in gone:
                f["status"] = "preempted"
        return flights

    async def _leg(self, leg: Leg, shift: float, drone_ids: dict[str, int], now_s: float,
                   carried: dict[str, dict[str, Any]], urgent: bool
                   ) -> tuple[dict[str, Any], float, float]:
        """The flight's record, when the drone reaches ``leg.to``, and when it left
        ``leg.origin``."""
        hop_out, hop_in = leg.access[0] / self.speed, leg.access[1] / self.speed
        base = {"drone": leg.drone, "trip": leg.trip + 1, "leg": leg.leg + 1,
                "from": leg.origin, "to": leg.to, "key": leg.key(),
                "from_node": int(self.net.node_ids[leg.a]),
                "to_node": int(self.net.node_ids[leg.b]),
                "access_m": [round(leg.access[0], 1), round(leg.access[1], 1)],
                "priority": leg.priority}
        old = carried.pop(leg.key(), None)
        if old is not None and shift <= 1e-3:  # ready no later than it was: kept
            return ({**old, "status": "carried"}, old["arrival_s"] + hop_in,
                    old["departure_s"] - hop_out)
        if old is not None:  # the same flight, moved by a delay before it: reserved again
            await _cancel_held(self.conn, old["reservation_id"])
        leave = leg.leave + shift
        if leave < now_s:
            return ({**base, "status": "flown", "departure_s": leave},
                    leg.arrive + shift, leave)
        if leg.a == leg.b:  # both ends at one node: no flight on the network
            arrive = leave + hop_out + hop_in
            return ({**base, "status": "at_node", "departure_s": leave,
                     "arrival_s": arrive}, arrive, leave)
        want = leave + hop_out
        try:
            out = await self._reserve(leg, want, drone_ids[leg.drone], urgent)
        except TwinbaseError as e:
            raise type(e)(f"flight {leg.name()} (leaving {_iso(self.epoch, want)}) could not "
                          f"be reserved: {e.detail}; nothing was stored",
                          flight={**base, "departure": _iso(self.epoch, want)},
                          **e.extra) from e
        dep = (out["departure"] - self.epoch).total_seconds()
        arr = (out["arrival"] - self.epoch).total_seconds()
        rec = {**base, "status": "approved", "reservation_id": out["reservation_id"],
               "route_id": out["route_id"], "network_version": out["network_version"],
               "departure": out["departure"].isoformat(),
               "arrival": out["arrival"].isoformat(), "departure_s": dep, "arrival_s": arr,
               "delay_s": max(0.0, round(dep - want, 3)), "edges": len(out["edges"])}
        return rec, arr + hop_in, dep - hop_out


async def release(conn: AsyncConnection, previous: dict[str, Any] | None,
                  keep: set[str], now_s: float) -> list[int]:
    """Cancel the parent plan's reservations the new plan does not keep and that have not
    departed by ``now_s``."""
    out = []
    for f in (previous or {}).get("flights", []):
        rid = f.get("reservation_id")
        if rid is None or f.get("status") not in ("approved", "carried") or f["key"] in keep:
            continue
        if f["departure_s"] < now_s:
            continue  # flown or under way: history
        if await _cancel_held(conn, rid):
            out.append(rid)
    return out


async def _cancel_held(conn: AsyncConnection, rid: int) -> bool:
    state = (await conn.execute(text(
        "SELECT status FROM network_reservations WHERE id = :id FOR UPDATE"),
        {"id": rid})).scalar()
    if state == "held":
        await reserve.cancel(conn, rid)
        return True
    return False
