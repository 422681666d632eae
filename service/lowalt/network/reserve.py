"""4D reservations: a flight on the network is approved by reserving its path's resources
at the times it is there.

The fastest path between the two vertiports (``Network.path``) gives a timeline: the climb
from the pad, each corridor edge at its speed, the layer changes at junctions, the descent.
Each place the flight is at gives a slot, an interval of time on a resource (``timeline``
says which and why they keep flights apart):

* ``e`` a directed edge, from entering it: 3600 / the edge's capacity;
* ``n`` a junction at one flight layer (``node_id * 16 + layer``): passing it in level
  flight, the network's headway around the time there; climbing or descending in its
  column, while within the vertical separation (plus the ground's slack there) of the
  layer. Flows that cross at a junction on different layers hold different keys.
  ``node_id * 16 + 8 + band``: a band of the column, held by climbing and descending drones
  only, so two in one column within the vertical separation share one;
* ``v`` a vertiport, at take-off and at landing: 3600 / its capacity.

The exclusion constraint on ``network_slots`` keeps any two slots of one resource apart, so
two flights are at one place at least a headway apart, an edge takes at most its capacity
per hour, and of two reservations racing for the same slot exactly one commits. The
generation keeps flights on different layers apart vertically wherever their corridors come
within the horizontal separation (``corridors.vertical_clashes``). The look-ups are index
scans on (resource, time), whatever the number of flights: no pairwise geometry between
flights on the network.

With ``max_delay_s`` the earliest departure at or after the one asked for is found from the
slots held on the path's resources (each held slot forbids an interval of departures), and
reserved. The flight is also a ``drone_routes`` row (approved, ``on_network``), so
off-network flights are checked against it geometrically as ever; off-network flights near
the path are read after taking shared advisory locks on the airspace cells that
off-network approvals lock exclusively, and checked against it geometrically. Zones active
in the flight's window are checked too (a temporary zone declared after the network was
built).

Round trips: an approval is two statements (``store.BEFORE`` reads, ``store.RESERVE``
writes the route, the reservation and every slot), plus the caller's BEGIN and COMMIT; a
zone or an off-network flight near the path adds the reads of the full check. The network,
each path's timeline and its geometry are cached per network version in the process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import numpy as np
import shapely
from sqlalchemy import bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import Conflict, NotFound, Unprocessable
from service.lowalt import store as lowalt_store
from service.lowalt.checks import validate_route
from service.lowalt.conflicts import candidates_from_rows, refine, search_params, time_reach
from service.lowalt.geo import corridor_polygon, frame
from service.lowalt.locks import cell_keys
from service.lowalt.network import store
from service.lowalt.network.graph import Network, capacity_per_hour
from service.lowalt.network.schemas import FlightIn
from service.lowalt.network.service import load_network
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings
from service.lowalt.validation import check_volume

LEVEL_KEYS = 16
# timestamps are kept to the microsecond
EPS_S = 1e-5
# keys LEVEL_KEYS * node + BAND0 + band: the bands of a node's column (layers below BAND0)
BAND0 = 8


@dataclass
class Timeline:
    """A flight's path from departure (offsets in seconds)."""

    xyz: list[np.ndarray] = field(default_factory=list)
    t: list[float] = field(default_factory=list)
    # (kind, ref, from, to): what the flight occupies, offsets in seconds
    slots: list[tuple[str, int, float, float]] = field(default_factory=list)
    edges: list[int] = field(default_factory=list)
    # derived once per path: the flight's geometry does not depend on its departure
    memo: dict = field(default_factory=dict)

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


def node_heights(net: Network, s: LowAltSettings) -> tuple[np.ndarray, np.ndarray]:
    """Per node: the ground the layers stand on there (under the ends of its edges; a
    vertiport's pad may be above it), and the slack: how far the ground under its edges,
    within the horizontal separation of it, differs from that (once per version)."""
    hit = net.memo.get("heights")
    if hit is not None:
        return hit
    hsep = s.separation_h_m + 2 * s.network_half_width_m
    n = len(net.node_ids)
    base = np.array(net.node_ground, float)
    slack = np.zeros(n)
    seen = np.zeros(n, bool)
    for k, xyz in enumerate(net.edge_xyz):
        ground = xyz[:, 2] - net.edge_agl[k]
        for node, end in ((int(net.edge_from[k]), 0), (int(net.edge_to[k]), -1)):
            if not seen[node]:
                base[node], seen[node] = ground[end], True
            near = np.hypot(xyz[:, 0] - xyz[end, 0], xyz[:, 1] - xyz[end, 1]) < hsep
            slack[node] = max(slack[node], float(np.abs(ground[near] - base[node]).max()))
    net.memo["heights"] = (base, slack)
    return base, slack


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
    """Positions, times and slots (kind, ref, from, to in s) along a path of states.
    ``pads``: vertiport id -> capacity per hour.

    Slots, and why they keep flights apart (hsep, vsep: the separation of volumes):

    * passing a node on layer k in level flight: ``n`` (node, k) for the node's headway
      centred on the time there (at least hsep / speed either side: the time within hsep
      of the node). Two flows on one layer pass a headway apart, as on an edge.
    * climbing or descending in a node's column: (node, k) for every layer k while within
      vsep + slack of the layer's height at the node, where slack is how far the ground
      under the node's edges near it differs from the node's (the generation bounds it by
      the step's margin). A level flight on layer k within hsep of the column holds (node,
      k) then, so the two never overlap. Two drones in one column within vsep of each
      other are in one band: the column is cut in bands of vsep, and a climbing drone
      holds (node, 8 + band) for every band whose centre is within vsep of it, so two
      within vsep share one.
    * ``e`` an edge, from entering it, for 3600 / its capacity; ``v`` a vertiport, at take-off
      and landing, for 3600 / its capacity.
    """
    lv = net.levels
    ground_level = lv - 1
    agl = net.layer_heights()
    base, slack = node_heights(net, s)
    hsep = s.separation_h_m + 2 * s.network_half_width_m
    vsep = s.separation_v_m + 2 * s.network_vertical_half_m
    hn = node_headway(s)
    half = max(hn / 2, hsep / s.network_speed_ms)
    bands = LEVEL_KEYS - BAND0
    tl = Timeline()
    held: dict[tuple[str, int], list[float]] = {}
    t = 0.0

    def hold(kind: str, ref: int, lo: float, hi: float) -> None:
        # one flight's slots on one resource are one interval (a slot may not overlap
        # another of the same resource, the flight's own included)
        cur = held.get((kind, ref))
        if cur is None:
            held[(kind, ref)] = [lo, hi]
        else:
            cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)

    def z_at(node: int, level: int) -> float:
        if level == ground_level:
            return float(net.node_ground[node])
        return float(base[node] + agl[level])

    def at_node(node: int, level: int, when: float) -> None:
        if level == ground_level:
            vid = int(net.node_vertiport[node])
            if vid >= 0:
                h = 3600.0 / pads.get(vid, 1)
                hold("v", vid, when - h / 2, when + h / 2)
            return
        hold("n", int(net.node_ids[node]) * LEVEL_KEYS + level, when - half, when + half)

    def column(node: int, za: float, zb: float, t0: float) -> None:
        """A vertical move from za to zb starting at t0: the layers and bands it is near."""
        lo, hi = min(za, zb), max(za, zb)

        def when(z: float) -> float:
            return t0 + abs(z - za) / net.climb_ms

        def near(centre: float, reach: float) -> tuple[float, float] | None:
            a, b = max(lo, centre - reach), min(hi, centre + reach)
            if b - a < 1e-3:  # touching, or a millimetre: nothing to hold
                return None
            ta, tb = when(a), when(b)
            return min(ta, tb), max(ta, tb)

        nid = int(net.node_ids[node])
        for k in range(ground_level):
            span = near(base[node] + agl[k], vsep + slack[node])
            if span:
                hold("n", nid * LEVEL_KEYS + k, *span)
        floor = base[node] - 2 * vsep
        for band in range(bands):
            span = near(floor + band * vsep, vsep)
            if span:
                hold("n", nid * LEVEL_KEYS + BAND0 + band, *span)
        if hi > floor + (bands - 1) * vsep + vsep or lo < floor - vsep:
            raise Unprocessable("a climb on the network leaves the heights its slots cover "
                                f"({lo - base[node]:.0f}-{hi - base[node]:.0f} m above the "
                                "ground at the node)")

    n0, l0 = states[0]
    tl.point(np.array([*net.node_xy[n0], z_at(n0, l0)]), t)
    at_node(n0, l0, t)
    for (na, la), (nb, lb) in pairwise(states):
        if na == nb:  # vertical
            za, zb = z_at(na, la), z_at(nb, lb)
            column(na, za, zb, t)
            t += abs(zb - za) / net.climb_ms
            tl.point(np.array([*net.node_xy[na], zb]), t)
            at_node(nb, lb, t)
            continue
        k = net.edge_between(na, nb, la)
        h = 3600.0 / net.edge_capacity[k]
        hold("e", int(net.edge_ids[k]), t - h / 2, t + h / 2)
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
    tl.slots = [(kind, ref, lo, hi) for (kind, ref), (lo, hi) in held.items()]
    return tl


def forbidden(tl: Timeline, held: list[tuple[str, int, float, float]]
              ) -> list[tuple[float, float]]:
    """Departure delays (s) that would make a slot overlap a held one (kind, ref, from,
    to: in s after the departure asked for)."""
    by_key: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for kind, ref, lo, hi in tl.slots:
        by_key.setdefault((kind, ref), []).append((lo, hi))
    out = []
    for kind, ref, a, b in held:
        for lo, hi in by_key.get((kind, ref), []):
            # mine is [d + lo, d + hi): it meets [a, b) for d in (a - hi, b - lo); widened
            # by EPS_S, so a departure at the end does not overlap by a rounding
            out.append((a - hi - EPS_S, b - lo + EPS_S))
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


def _volume(tl: Timeline, dep: datetime, s: LowAltSettings, priority: int) -> RouteVolume:
    fr = frame(s.metric_crs)
    xyz, lonlatz, corridor = _geometry(tl, s)
    return RouteVolume(lonlatz, xyz, s.network_half_width_m, s.network_vertical_half_m,
                       corridor, dep, dep + timedelta(seconds=max(tl.t[-1], 1.0)), priority, fr)


def _geometry(tl: Timeline, s: LowAltSettings) -> tuple[np.ndarray, np.ndarray, Any]:
    hit = tl.memo.get("geometry")
    if hit is None:
        fr = frame(s.metric_crs)
        xyz = np.array(tl.xyz)
        hit = tl.memo["geometry"] = (xyz, fr.lonlatz(xyz),
                                     corridor_polygon(xyz, s.network_half_width_m))
    return hit


def _static(tl: Timeline, s: LowAltSettings) -> dict[str, Any]:
    """What approving a flight on this path sends that does not depend on its departure:
    the route's geometry, the airspace cells, the search areas, the slot keys."""
    hit = tl.memo.get("static")
    if hit is not None:
        return hit
    vol = _volume(tl, datetime.now(UTC), s, 0)
    fr = vol.frame
    lo, hi = vol.alt_band
    order = sorted(range(len(tl.slots)), key=lambda i: tl.slots[i][:2])
    keys = sorted({(k, r) for k, r, _, _ in tl.slots})
    hit = tl.memo["static"] = {
        # from an array: a LineString from a list of rows took 12 ms for 400 points
        "geom": shapely.to_wkb(shapely.linestrings(np.asarray(vol.lonlatz, float)),
                               output_dimension=3),
        "corridor": shapely.to_wkb(vol.corridor_ll), "lo": lo, "hi": hi,
        "length": vol.length_m, "cells": cell_keys(vol, s),
        "zone_area": shapely.to_wkb(fr.geom_to_lonlat(vol.tube_m(s.sample_step_m))),
        "search_area": shapely.to_wkb(fr.geom_to_lonlat(
            vol.tube_m(s.separation_h_m + s.conflict_step_m / 2))),
        "kinds": [k for k, _ in keys], "refs": [r for _, r in keys],
        "slot_kinds": [tl.slots[i][0] for i in order], "slot_refs": [tl.slots[i][1] for i in order],
        "slot_lo": [tl.slots[i][2] for i in order], "slot_hi": [tl.slots[i][3] for i in order],
        "first": min(x[2] for x in tl.slots), "last": max(x[3] for x in tl.slots),
        "path_edges": tl.edges, "times_s": [round(x, 2) for x in tl.t]}
    return hit


def _vertiport_node(net: Network, vid: int, what: str) -> int:
    hit = np.flatnonzero(net.node_vertiport == vid)
    if hit.size == 0:
        raise Unprocessable(f"{what} vertiport {vid} is not on the current network "
                            "(unknown, or not joined to it: generate the network again)",
                            vertiport=vid)
    return int(hit[0])


def _path(net: Network, body: FlightIn, s: LowAltSettings,
          nodes: tuple[int, int] | None = None) -> Timeline:
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
    return tl


async def reserve_flight(conn: AsyncConnection, body: FlightIn, s: LowAltSettings, by: str,
                         nodes: tuple[int, int] | None = None) -> dict[str, Any]:
    """Approve an on-network flight by reserving its slots, inside the caller's
    transaction. Raises Conflict when a slot is taken (none free within max_delay_s) or an
    off-network flight or a zone is in the way; Unprocessable for a flight that is not one.
    A refusal leaves nothing behind and the caller's transaction usable.
    ``nodes``: the path's ends as network node ids, in place of the body's vertiports (a
    fleet plan's legs between the junctions nearest its tasks).

    Two round trips in the common case (``store.BEFORE``, ``store.RESERVE``): the network
    and each path's timeline and geometry are cached per network version in the process,
    and the version is read in the first statement (a newer one: the network is loaded
    again and the statement repeated)."""
    if body.departure.tzinfo is None:
        raise Unprocessable("departure needs a time zone (e.g. 2026-05-01T10:00:00+08:00)")
    if nodes is None and body.from_vertiport == body.to_vertiport:
        raise Unprocessable("from_vertiport and to_vertiport are the same")
    net = await load_network(conn, s, cached=True)
    tl = _path(net, body, s, nodes)
    span = tl.t[-1]
    now = datetime.now(UTC)
    bad = check_volume(SimpleNamespace(start=body.departure,
                                       end=body.departure + timedelta(seconds=span)), s, now)
    if bad:
        raise Unprocessable(bad[0]["message"], violations=bad)
    for _attempt in range(3):
        st = _static(tl, s)
        ask = body.departure
        row = (await conn.execute(store.BEFORE, {
            "drone": body.drone_id, "cells": st["cells"],
            "z0": ask, "z1": ask + timedelta(seconds=span + body.max_delay_s + 1.0),
            "area": st["zone_area"], "kinds": st["kinds"], "refs": st["refs"],
            # every held slot one of ours could meet at any departure allowed
            "t0": ask + timedelta(seconds=st["first"]),
            "t1": ask + timedelta(seconds=body.max_delay_s + st["last"])})).one()
        if row.version is None:
            raise NotFound("no route network yet: POST /airspace/network/generate")
        if row.version != net.version:  # the network changed since it was cached
            net = await load_network(conn, s, version=row.version)
            tl = _path(net, body, s, nodes)
            span = tl.t[-1]
            continue
        if row.klass is None:
            raise Unprocessable(f"unknown drone {body.drone_id}: register it at POST /drones "
                                "first", drone_id=body.drone_id)
        base = ask.timestamp()
        held = [(k, r, a - base, b - base) for k, r, a, b in (row.held or [])]
        d = earliest(forbidden(tl, held), body.max_delay_s)
        if d is None:
            raise Conflict(
                "the network is full on this path at the time asked for"
                + (f" and for {body.max_delay_s:g} s after" if body.max_delay_s else "")
                + ": no slot free on every edge, junction and vertiport",
                held_slots=len(held))
        dep = ask + timedelta(seconds=d)
        if row.zones:
            await _zones(conn, tl, dep, row.klass, s, body.priority)
        out = await _commit(conn, body, tl, st, dep, net, s, by)
        if out is not None:
            out["departure_delay_s"] = round(d, 3)
            return out
    raise Conflict("the slots on this path were taken by other flights while reserving; "
                   "try again")


async def _zones(conn: AsyncConnection, tl: Timeline, dep: datetime, klass: str,
                 s: LowAltSettings, priority: int) -> None:
    """A zone active near the path in the window (declared after the network was built):
    the flight is validated as a filed route would be."""
    vol = _volume(tl, dep, s, priority)
    result = await validate_route(conn, vol, klass, s)
    refused = [v for v in result["violations"] if v["severity"] != "notice"]
    if refused:
        raise Conflict("the network path enters an airspace zone active then: "
                       + "; ".join(v["message"] for v in refused[:3]), violations=refused)


async def _commit(conn: AsyncConnection, body: FlightIn, tl: Timeline, st: dict[str, Any],
                  dep: datetime, net: Network, s: LowAltSettings, by: str
                  ) -> dict[str, Any] | None:
    """The route, reservation and slots in one statement; None when a racer took a slot
    first (nothing is left: look again)."""
    arr = dep + timedelta(seconds=max(tl.t[-1], 1.0))
    window = {"start": dep.isoformat(), "end": arr.isoformat()}
    result = {"verdict": "accepted", "violations": [],
              "checked": {"network": {"version": net.version, "edges": len(tl.edges),
                                      "slots": len(tl.slots)}, "window": window}}
    path = {"version": net.version, "edges": st["path_edges"], "times_s": st["times_s"]}
    margin = time_reach(s)
    row = (await conn.execute(store.RESERVE, {
        "name": body.name, "drone": body.drone_id, "priority": body.priority, "by": by,
        "geom": st["geom"], "corridor": st["corridor"], "hw": s.network_half_width_m,
        "vh": s.network_vertical_half_m, "lo": st["lo"], "hi": st["hi"], "dep": dep,
        "arr": arr, "length": st["length"], "validation": json.dumps(result),
        "version": net.version, "path": json.dumps(path),
        "kinds": st["slot_kinds"], "refs": st["slot_refs"],
        "los": [dep + timedelta(seconds=x) for x in st["slot_lo"]],
        "his": [dep + timedelta(seconds=x) for x in st["slot_hi"]],
        "c0": dep - margin, "c1": arr + margin, "clo": st["lo"] - s.separation_v_m,
        "chi": st["hi"] + s.separation_v_m, "area": st["search_area"]})).one()
    if row.route_id is None:
        raise Conflict(f"drone {body.drone_id} already holds an approved or active route in "
                       "that time window")
    undo = {"reservation": row.reservation_id, "route": row.route_id}
    if row.slots < len(tl.slots):  # a racer took a slot since we looked
        await conn.execute(store.UNDO, undo)
        return None
    if row.offnet:
        vol = _volume(tl, dep, s, body.priority)
        rows = (await conn.execute(store.OFFNET_CANDIDATES.where(
            store.drone_routes.c.id == func.any(bindparam("ids", type_=ARRAY(BIGINT)))),
            {**search_params(vol, s, None), "ids": row.offnet})).all()
        blocking = [c for c in refine(vol, candidates_from_rows(rows, vol.frame), s)
                    if c["blocking"]]
        if blocking:
            await conn.execute(store.UNDO, undo)
            raise Conflict(f"the network path conflicts with {len(blocking)} approved "
                           "off-network flight(s)", conflicts=blocking)
    return {"reservation_id": row.reservation_id, "route_id": row.route_id,
            "status": "approved", "departure": dep, "arrival": arr,
            "network_version": net.version, "edges": tl.edges, "slots": len(tl.slots),
            "duration_s": round(tl.t[-1], 1), "length_m": round(st["length"], 1)}


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

