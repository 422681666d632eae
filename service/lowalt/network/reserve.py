"""4D reservations: a flight on the network is approved by reserving its path's resources
at the times it is there.

The fastest path between the two vertiports (``Network.path``) gives a timeline: the climb
from the pad, each corridor edge at its speed, the layer changes at junctions, the descent.
Each place the flight is at gives a slot, the resource's headway centred on the time it is
there:

* ``e`` a directed edge, when the flight enters it: headway 3600 / the edge's capacity;
* ``n`` a junction at one flight layer (``node_id * 16 + layer``), when the flight passes
  it on that layer, in level flight or climbing or descending through it: the network's
  headway. Flows that cross at a junction on different layers hold different keys; a
  drone changing layers holds the key of every layer it passes;
* ``v`` a vertiport, at take-off and at landing: 3600 / its capacity.

The exclusion constraint on ``network_slots`` keeps any two slots of one resource apart, so
two flights are at one place at least a headway apart, an edge takes at most its capacity
per hour, and of two reservations racing for the same slot exactly one commits. Every slot
of a flight is inserted in one statement; a refusal leaves nothing. The look-ups are index
scans on (resource, time), whatever the number of flights: no pairwise geometry between
flights on the network.

With ``max_delay_s`` the earliest departure at or after the one asked for is found from the
slots held on the path's resources (each held slot forbids an interval of departures), and
reserved. The flight is also a ``drone_routes`` row (approved, ``on_network``), so
off-network flights are checked against it geometrically as ever; before reserving, the
off-network flights near the path are checked against it geometrically (the partial index
over those only), under shared advisory locks on the airspace cells that off-network
approvals lock exclusively. Zones active in the flight's window are checked too (a
temporary zone declared after the network was built).

Open point: the brute-force 4D check of ``benchmarks/airspace.py`` found a few pairs of
approved flights closer than the separation (benchmarks/RESULTS.md): every one on layers
20 m apart, 19.9-20.0 m apart vertically near a junction. Layers follow the ground, so
corridors leaving one junction on adjacent layers lose a few centimetres of the 20 m where
the ground under them differs; a layer step with a margin over the 20 m minimum is the fix
to make and measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Text, bindparam, cast, exc, func, select
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import Conflict, NotFound, Unprocessable
from service.lowalt import store as lowalt_store
from service.lowalt.checks import drone_class, validate_route
from service.lowalt.conflicts import candidates_from_rows, refine, search_params
from service.lowalt.geo import corridor_polygon, frame
from service.lowalt.locks import cell_keys
from service.lowalt.network import store
from service.lowalt.network.graph import Network, capacity_per_hour
from service.lowalt.network.schemas import FlightIn
from service.lowalt.network.service import load_network, plain
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings
from service.lowalt.validation import check_volume

LEVEL_KEYS = 16

# shared locks on the airspace cells: off-network approvals take them exclusively
_KEY = func.unnest(bindparam("keys", type_=ARRAY(BIGINT))).column_valued("k")
LOCK_SHARED = select(_KEY, cast(func.pg_advisory_xact_lock_shared(_KEY), Text).label("held"))


@dataclass
class Timeline:
    """A flight's path from departure (offsets in seconds)."""

    xyz: list[np.ndarray] = field(default_factory=list)
    t: list[float] = field(default_factory=list)
    slots: list[tuple[str, int, float, float]] = field(default_factory=list)
    edges: list[int] = field(default_factory=list)

    def point(self, p: np.ndarray, t: float) -> None:
        if self.t and abs(self.t[-1] - t) < 1e-9:
            last = self.xyz[-1]
            if abs(last[0] - p[0]) + abs(last[1] - p[1]) + abs(last[2] - p[2]) < 1e-6:
                return
        self.xyz.append(np.asarray(p, float))
        self.t.append(t)


def node_headway(s: LowAltSettings) -> float:
    return 3600.0 / capacity_per_hour(s.network_speed_ms, s.separation_h_m,
                                      s.network_half_width_m, s.network_buffer_s)


def path_timeline(net: Network, a: int, b: int, s: LowAltSettings) -> Timeline | None:
    """The timeline of the fastest path from node a to node b, once per network version
    (offsets do not depend on the departure)."""
    key = ("timeline", a, b)
    if key not in net.memo:
        states = net.path(a, b)
        net.memo[key] = timeline(net, states, net.pads, s) if states else None
    return net.memo[key]


def timeline(net: Network, states: list[tuple[int, int]], pads: dict[int, float],
             s: LowAltSettings) -> Timeline:
    """Positions, times and slots (kind, ref, offset s, headway s) along a path of states.
    ``pads``: vertiport id -> capacity per hour."""
    lv = net.levels
    ground_level = lv - 1
    agl = net.layer_heights()
    hn = node_headway(s)
    tl = Timeline()
    t = 0.0

    def z_at(node: int, level: int) -> float:
        return float(net.node_ground[node] + (agl[level] if level != ground_level else 0.0))

    def at_node(node: int, level: int, when: float) -> None:
        if level == ground_level:
            vid = int(net.node_vertiport[node])
            if vid >= 0:
                tl.slots.append(("v", vid, when, 3600.0 / pads.get(vid, 1)))
            return
        tl.slots.append(("n", int(net.node_ids[node]) * LEVEL_KEYS + level, when, hn))

    n0, l0 = states[0]
    tl.point(np.array([*net.node_xy[n0], z_at(n0, l0)]), t)
    at_node(n0, l0, t)
    for (na, la), (nb, lb) in pairwise(states):
        if na == nb:  # vertical: pass the layers in between
            za, zb = z_at(na, la), z_at(nb, lb)
            between = [k for k in range(ground_level)
                       if min(za, zb) < z_at(na, k) < max(za, zb)]
            for k in sorted(between, key=lambda k: abs(z_at(na, k) - za)):
                at_node(na, k, t + abs(z_at(na, k) - za) / net.climb_ms)
            t += abs(zb - za) / net.climb_ms
            tl.point(np.array([*net.node_xy[na], zb]), t)
            at_node(nb, lb, t)
            continue
        k = net.edge_between(na, nb, la)
        tl.slots.append(("e", int(net.edge_ids[k]), t, 3600.0 / net.edge_capacity[k]))
        tl.edges.append(int(net.edge_ids[k]))
        xyz = net.edge_xyz[k]
        seg = np.hypot(np.diff(xyz[:, 0]), np.diff(xyz[:, 1]))
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        total = cum[-1]
        dur = net.edge_length[k] / net.edge_speed[k]
        for p, c in zip(xyz, cum, strict=True):
            tl.point(p, t + (dur * c / total if total > 0 else 0.0))
        t += dur
        at_node(nb, lb, t)
    return tl


def _forbidden(tl: Timeline, held: list[Any], t0: datetime) -> list[tuple[float, float]]:
    """Departure offsets (s after t0) that would overlap a held slot."""
    by_key: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for kind, ref, off, h in tl.slots:
        by_key.setdefault((kind, ref), []).append((off, h))
    out = []
    for r in held:
        a = (r.a - t0).total_seconds()
        b = (r.b - t0).total_seconds()
        for off, h in by_key.get((r.kind, r.ref_id), []):
            # mine is [d + off - h/2, d + off + h/2): it meets [a, b) for d in (lo, hi)
            out.append((a - off - h / 2, b - off + h / 2))
    return sorted(out)


def earliest(forbidden: list[tuple[float, float]], max_delay: float) -> float | None:
    d = 0.0
    for lo, hi in forbidden:
        if hi <= d:
            continue
        if lo >= d:
            break
        d = hi
    return d if d <= max_delay + 1e-9 else None


async def _held(conn: AsyncConnection, tl: Timeline, t0: datetime, span: float) -> list[Any]:
    keys = sorted({(k, r) for k, r, _, _ in tl.slots})
    pad = max(h for *_, h in tl.slots)
    return (await conn.execute(store.SLOTS_ON, {
        "kinds": [k for k, _ in keys], "refs": [r for _, r in keys],
        "t0": t0 - timedelta(seconds=pad), "t1": t0 + timedelta(seconds=span + pad)})).all()


def _volume(tl: Timeline, dep: datetime, s: LowAltSettings, priority: int) -> RouteVolume:
    fr = frame(s.metric_crs)
    xyz = np.array(tl.xyz)
    hw = s.network_half_width_m
    return RouteVolume(fr.lonlatz(xyz), xyz, hw, s.network_vertical_half_m,
                       corridor_polygon(xyz, hw), dep,
                       dep + timedelta(seconds=max(tl.t[-1], 1.0)), priority, fr)


def _vertiport_node(net: Network, vid: int, what: str) -> int:
    hit = np.flatnonzero(net.node_vertiport == vid)
    if hit.size == 0:
        raise Unprocessable(f"{what} vertiport {vid} is not on the current network "
                            "(unknown, or not joined to it: generate the network again)",
                            vertiport=vid)
    return int(hit[0])


async def reserve_flight(conn: AsyncConnection, body: FlightIn, s: LowAltSettings, by: str,
                         nodes: tuple[int, int] | None = None) -> dict[str, Any]:
    """Approve an on-network flight by reserving its slots, inside the caller's
    transaction. Raises Conflict when a slot is taken (none free within max_delay_s) or an
    off-network flight or a zone is in the way; Unprocessable for a flight that is not one.
    ``nodes``: the path's ends as network node ids, in place of the body's vertiports (a
    fleet plan's legs between the junctions nearest its tasks)."""
    if body.departure.tzinfo is None:
        raise Unprocessable("departure needs a time zone (e.g. 2026-05-01T10:00:00+08:00)")
    if nodes is None and body.from_vertiport == body.to_vertiport:
        raise Unprocessable("from_vertiport and to_vertiport are the same")
    klass = await drone_class(conn, body.drone_id)
    net = await load_network(conn, s)
    if nodes is None:
        a = _vertiport_node(net, body.from_vertiport, "from")
        b = _vertiport_node(net, body.to_vertiport, "to")
    else:
        try:
            a, b = net.node_index(nodes[0]), net.node_index(nodes[1])
        except KeyError as e:
            raise Unprocessable(f"network node {e.args[0]} is not on the current network")\
                from e
    tl = path_timeline(net, a, b, s)
    if tl is None:
        raise Conflict(f"the network has no path from vertiport {body.from_vertiport} to "
                       f"{body.to_vertiport} (a corridor closed?)")
    span = tl.t[-1]
    now = datetime.now(UTC)
    bad = check_volume(SimpleNamespace(start=body.departure,
                                       end=body.departure + timedelta(seconds=span)), s, now)
    if bad:
        raise Unprocessable(bad[0]["message"], violations=bad)
    for _attempt in range(3):
        held = await _held(conn, tl, body.departure, span + body.max_delay_s)
        d = earliest(_forbidden(tl, held, body.departure), body.max_delay_s)
        if d is None:
            raise Conflict(
                "the network is full on this path at the time asked for"
                + (f" and for {body.max_delay_s:g} s after" if body.max_delay_s else "")
                + ": no slot free on every edge, junction and vertiport",
                held_slots=len(held))
        dep = body.departure + timedelta(seconds=d)
        vol = _volume(tl, dep, s, body.priority)
        try:
            async with conn.begin_nested():
                out = await _commit(conn, body, vol, tl, dep, net, klass, s, by)
            out["departure_delay_s"] = round(d, 3)
            return out
        except exc.IntegrityError as e:
            text = str(e.orig)
            if "network_slots" in text:
                continue  # a racer took a slot since we looked: look again
            if "drone_routes_drone_id_time_window_excl" in text or "exclu" in text:
                raise Conflict(f"drone {body.drone_id} already holds an approved or active "
                               "route in that time window") from e
            raise
    raise Conflict("the slots on this path were taken by other flights while reserving; "
                   "try again")


async def _commit(conn: AsyncConnection, body: FlightIn, vol: RouteVolume, tl: Timeline,
                  dep: datetime, net: Network, klass: str, s: LowAltSettings, by: str
                  ) -> dict[str, Any]:
    fr = vol.frame
    # a zone active in the window (declared after the network was built) and off-network
    # flights: the first is rare, the second reads only off-network flights near the path
    zones = (await conn.execute(lowalt_store.ZONES_IN, {
        "area": shapely.to_wkb(fr.geom_to_lonlat(vol.tube_m(s.sample_step_m))),
        "t0": vol.start, "t1": vol.end})).all()
    if zones:
        result = await validate_route(conn, vol, klass, s)
        refused = [v for v in result["violations"] if v["severity"] != "notice"]
        if refused:
            raise Conflict("the network path enters an airspace zone active then: "
                           + "; ".join(v["message"] for v in refused[:3]),
                           violations=refused)
    (await conn.execute(LOCK_SHARED, {"keys": cell_keys(vol, s)})).all()
    rows = (await conn.execute(store.OFFNET_CANDIDATES, search_params(vol, s, None))).all()
    if rows:
        blocking = [c for c in refine(vol, candidates_from_rows(rows, fr), s)
                    if c["blocking"]]
        if blocking:
            raise Conflict(f"the network path conflicts with {len(blocking)} approved "
                           "off-network flight(s)", conflicts=blocking)
    window = {"start": dep.isoformat(), "end": vol.end.isoformat()}
    path = {"version": net.version, "edges": tl.edges,
            "times_s": [round(t, 2) for t in tl.t]}
    result = {"verdict": "accepted", "violations": [],
              "checked": {"network": {"version": net.version, "edges": len(tl.edges),
                                      "slots": len(tl.slots)}, "window": window}}
    # filed, approved and on the network in one statement
    route_id = (await conn.execute(
        lowalt_store.new_route(vol, body.drone_id, body.name, result, by).values(
            status="approved", approved_by=by, approved_at=func.now(), on_network=True))
    ).scalar_one()
    rid = (await conn.execute(
        store.rs.insert().values(
            route_id=route_id, drone_id=body.drone_id, version_id=net.version,
            status="held", created_by=by, path=plain(path),
            time_window=func.tstzrange(dep, vol.end)).returning(store.rs.c.id))).scalar_one()
    slots = sorted(
        ({"reservation_id": rid, "kind": k, "ref_id": r,
          "a": dep + timedelta(seconds=off - h / 2), "b": dep + timedelta(seconds=off + h / 2)}
         for k, r, off, h in tl.slots), key=lambda x: (x["kind"], x["ref_id"], x["a"]))
    await conn.execute(store.NEW_SLOTS, slots)
    return {"reservation_id": rid, "route_id": route_id, "status": "approved",
            "departure": dep, "arrival": vol.end, "network_version": net.version,
            "edges": tl.edges, "slots": len(slots),
            "duration_s": round(tl.t[-1], 1), "length_m": round(vol.length_m, 1)}


async def cancel(conn: AsyncConnection, reservation_id: int) -> dict[str, Any]:
    row = (await conn.execute(store.RESERVATION.with_for_update(),
                              {"id": reservation_id})).first()
    if row is None:
        raise NotFound(f"no network reservation {reservation_id}")
    if row.status == "cancelled":
        raise Conflict(f"reservation {reservation_id} is cancelled already")
    freed = (await conn.execute(store.sl.delete().where(
        store.sl.c.reservation_id == reservation_id))).rowcount
    await conn.execute(store.rs.update().where(store.rs.c.id == reservation_id)
                       .values(status="cancelled", cancelled_at=func.now()))
    if row.route_id is not None:
        await conn.execute(lowalt_store.new_status(row.route_id, "retired"))
    return {"reservation_id": reservation_id, "status": "cancelled", "slots_freed": freed,
            "route_id": row.route_id}


async def get_reservation(conn: AsyncConnection, reservation_id: int) -> dict[str, Any]:
    row = (await conn.execute(store.RESERVATION, {"id": reservation_id})).first()
    if row is None:
        raise NotFound(f"no network reservation {reservation_id}")
    slots = (await conn.execute(store.SLOT_ROWS, {"id": reservation_id})).all()
    return {**dict(row._mapping),
            "slots": [{"kind": r.kind, "ref_id": r.ref_id, "from": r.a, "to": r.b}
                      for r in slots]}

