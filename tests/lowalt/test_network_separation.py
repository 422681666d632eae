"""Separation of flights reserved on the network over sloping ground, without a database.

A junction of a north-south road, an east-west road and a diagonal, with a vertiport at
each of the six ends, over ground rising along one direction. The corridors are built and
validated as the service builds them, flights are reserved with the service's own timeline
and earliest-departure logic against slots held in memory (the exclusion constraint's
rule: no two slots of one resource overlap), and then every pair of accepted flights is
checked by brute force (positions every 0.25 s): closer than the horizontal separation
between volumes (separation_h + 2 x half-width) and, at the same time, closer than the
vertical one (separation_v + 2 x vertical half) is a conflict the reservations let through.

Known truth: on flat or gently sloping ground none may pass. The layers follow the ground,
so two layers meeting at a junction are the layer step apart only where the ground under
them is the same height; a slope of 6 % makes a 3 m difference over the 50 m of horizontal
separation, which a step of exactly the vertical separation (20 m) cannot absorb.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import combinations

import numpy as np
import pytest
import shapely

from service.lowalt.citymodel import Obstacles
from service.lowalt.geo import frame
from service.lowalt.ground import GroundModel
from service.lowalt.network.corridors import Checker, build_edges
from service.lowalt.network.graph import Network, plan_corridors
from service.lowalt.network.reserve import earliest, forbidden, path_timeline
from service.lowalt.settings import LowAltSettings

ARM = 700.0


def _ground(fr, ox: float, oy: float, slope: float, bearing_deg: float) -> GroundModel:
    """Ground rising by ``slope`` towards a bearing (points every 20 m, interpolated)."""
    g = np.arange(-ARM - 400, ARM + 401, 20.0)
    gx, gy = np.meshgrid(g, g)
    b = math.radians(bearing_deg)
    z = 40.0 + slope * (gx * math.sin(b) + gy * math.cos(b))
    return GroundModel(fr, 300.0, np.column_stack([gx.ravel() + ox, gy.ravel() + oy]),
                       z.ravel())


def _network(slope: float, bearing: float, s: LowAltSettings):
    fr = frame(s.metric_crs)
    x, y = fr.to_metric(np.array([114.25]), np.array([22.68]))
    ox, oy = float(x[0]), float(y[0])
    d = ARM / math.sqrt(2)
    lines = [shapely.LineString([(ox, oy - ARM), (ox, oy + ARM)]),
             shapely.LineString([(ox - ARM, oy), (ox + ARM, oy)]),
             shapely.LineString([(ox - d, oy - d), (ox + d, oy + d)])]
    ends = [(0, -ARM), (0, ARM), (-ARM, 0), (ARM, 0), (-d, -d), (d, d)]
    # each vertiport 80 m off the end of its road, sideways
    ports = []
    for ex, ey in ends:
        n = np.array([ey, -ex]) / math.hypot(ex, ey)
        ports.append((ox + ex * 0.95 + 80 * n[0], oy + ey * 0.95 + 80 * n[1]))
    gap = s.separation_h_m + 2 * s.network_half_width_m
    plan = plan_corridors(lines, ["ns", "ew", "diag"], np.array(ports),
                          s.network_max_connector_m, gap=gap)
    ground = _ground(fr, ox, oy, slope, bearing)
    now = datetime.now(UTC)
    check = Checker(Obstacles.empty(), [], ground, s)
    kept, dropped = build_edges(plan, check, s, fr, now)
    g, _ = ground.at_xy(plan.nodes[:, 0], plan.nodes[:, 1])
    n = len(plan.nodes)
    net = Network(
        node_ids=np.arange(n) + 1, node_xy=plan.nodes, node_ground=g,
        node_vertiport=np.where(plan.vertiport_of >= 0, plan.vertiport_of + 1, -1),
        edge_ids=np.arange(len(kept)) + 1,
        edge_from=np.array([e.u for e in kept]), edge_to=np.array([e.v for e in kept]),
        edge_layer=np.array([e.layer for e in kept]),
        edge_agl=np.array([e.agl for e in kept], float),
        edge_length=np.array([e.length for e in kept], float),
        edge_speed=np.full(len(kept), s.network_speed_ms),
        edge_capacity=np.array([e.capacity for e in kept]),
        edge_xyz=[e.xyz for e in kept], climb_ms=s.network_climb_ms)
    net.pads = {k + 1: 360 for k in range(len(ports))}
    return net, kept, dropped


def _reserve_many(net: Network, s: LowAltSettings, flights: int, seed: int):
    """Flights between random vertiports with departures crowded into 15 minutes (up to
    5 min of delay), each at the earliest departure whose slots are all free."""
    rng = np.random.default_rng(seed)
    ports = [i for i in range(len(net.node_ids)) if net.node_vertiport[i] >= 0]
    held: list[tuple[str, int, float, float]] = []  # offsets from T0
    out = []
    for _ in range(flights):
        a, b = rng.choice(ports, 2, replace=False).tolist()
        tl = path_timeline(net, a, b, s)
        if tl is None:  # cut off by corridors dropped on steep ground
            continue
        ask = float(rng.uniform(0, 900))
        d = earliest(forbidden(tl, [(k, r, a - ask, b - ask) for k, r, a, b in held]), 300.0)
        if d is None:
            continue
        dep = ask + d
        mine = [(k, r, dep + lo, dep + hi) for k, r, lo, hi in tl.slots]
        for k, r, a, b in mine:  # the exclusion constraint
            assert not any(hk == k and hr == r and ha < b and a < hb
                           for hk, hr, ha, hb in held)
        held += mine
        out.append((np.asarray(tl.t) + dep, np.asarray(tl.xyz)))
    return out


def _conflicts(flights, s: LowAltSettings) -> list[tuple[float, float]]:
    hsep = s.separation_h_m + 2 * s.network_half_width_m
    vsep = s.separation_v_m + 2 * s.network_vertical_half_m
    found = []
    for (ta, pa), (tb, pb) in combinations(flights, 2):
        lo, hi = max(ta[0], tb[0]), min(ta[-1], tb[-1])
        if lo >= hi:
            continue
        ts = np.arange(lo, hi, 0.25)
        qa = np.column_stack([np.interp(ts, ta, pa[:, k]) for k in range(3)])
        qb = np.column_stack([np.interp(ts, tb, pb[:, k]) for k in range(3)])
        h = np.hypot(qa[:, 0] - qb[:, 0], qa[:, 1] - qb[:, 1])
        v = np.abs(qa[:, 2] - qb[:, 2])
        bad = (h < hsep - 1e-6) & (v < vsep - 1e-6)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            found.append((float(h[k]), float(v[k])))
    return found


@pytest.mark.parametrize("slope,bearing", [(0.0, 0.0), (0.06, 30.0), (0.06, 200.0)])
def test_no_two_reserved_flights_come_closer_than_the_separation(slope, bearing):
    s = LowAltSettings()
    net, _kept, dropped = _network(slope, bearing, s)
    # every corridor is kept at these slopes: the network is whole, not thinned out
    assert dropped == [], dropped
    assert len(net.node_vertiport[net.node_vertiport >= 0]) == 6
    flights = _reserve_many(net, s, 150, seed=int(slope * 1000 + bearing))
    assert len(flights) >= 60
    assert _conflicts(flights, s) == []


def test_steep_ground_drops_corridors_that_would_come_too_close_vertically():
    """At 9 % a corridor leaving the junction on one layer comes within the vertical
    separation of another layer's corridor near it (4.5 m of ground over 50 m eats more
    than the step's 5 m margin on the diagonal): such edges are dropped, with the reason,
    and the flights on what is left still keep their separation."""
    s = LowAltSettings()
    net, kept, dropped = _network(0.09, 30.0, s)
    assert dropped and len(kept) > len(dropped)
    assert all(d["rules"] == ["network_separation"] for d in dropped)
    assert all("vertical" in d["reason"] for d in dropped)
    flights = _reserve_many(net, s, 80, seed=7)
    assert len(flights) >= 20
    assert _conflicts(flights, s) == []
