"""The network's geometry and routing without a database: noding, merged junctions,
vertiport joins, corridors too close to be kept apart by shared slots, travel times, and
the earliest free departure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from service.lowalt.network.graph import (
    Network,
    capacity_per_hour,
    crowded,
    heading_deg,
    plan_corridors,
    sector,
)
from service.lowalt.network.reserve import earliest


def _net(plan, speed: float = 15.0) -> Network:
    edges = []
    for p in plan.parts:
        for u, v, xy in ((p.u, p.v, p.coords), (p.v, p.u, p.coords[::-1])):
            edges.append((u, v, sector(heading_deg(xy[0], xy[-1])), xy))
    n = len(plan.nodes)
    layer = np.array([e[2] for e in edges])
    return Network(
        np.arange(n) + 100, plan.nodes, np.zeros(n), plan.vertiport_of,
        np.arange(len(edges)), np.array([e[0] for e in edges]),
        np.array([e[1] for e in edges]), layer, 30.0 + 20 * layer,
        np.array([shapely.LineString(e[3]).length for e in edges]),
        np.full(len(edges), speed), np.full(len(edges), 270),
        [np.column_stack([e[3], np.zeros(len(e[3]))]) for e in edges], 3.0)


def test_heading_sectors_and_capacity():
    o = np.zeros(2)
    assert [sector(heading_deg(o, np.array(d))) for d in
            ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1.01), (1, 0.99))] == [0, 1, 2, 3, 0, 1]
    assert capacity_per_hour(15, 30, 10, 10) == math.floor(3600 / (50 / 15 + 10)) == 270


def test_crossing_guides_are_noded_and_near_junctions_merged():
    lines = [shapely.LineString([(0, 0), (1000, 0)]), shapely.LineString([(500, -500), (500, 500)]),
             # crosses the first road 20 m from the junction at (500, 0)
             shapely.LineString([(520, -300), (520, 0.0), (800, 300)])]
    plan = plan_corridors(lines, ["a", "b", "c"], np.empty((0, 2)), 1000, gap=50)
    # one junction where three roads meet (the two crossings 20 m apart merged)
    deg = np.bincount([p.u for p in plan.parts] + [p.v for p in plan.parts])
    assert deg.max() == 6 and (deg == 6).sum() == 1
    j = plan.nodes[int(np.argmax(deg))]
    assert 500 <= j[0] <= 520 and abs(j[1]) < 1e-6
    # no two nodes closer than the gap
    d = np.hypot(*(plan.nodes[:, None] - plan.nodes[None]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(d), 1)].min() >= 50


def test_vertiports_join_the_nearest_guide_or_junction():
    lines = [shapely.LineString([(0, 0), (1000, 0)]), shapely.LineString([(500, -500), (500, 500)])]
    ports = np.array([[250, 80], [530, -40], [5000, 5000]])
    plan = plan_corridors(lines, ["a", "b"], ports, 1000, gap=50)
    assert plan.unconnected == [2]
    conn = [p for p in plan.parts if p.source == "connector"]
    ends = {int(plan.vertiport_of[p.u]): plan.nodes[p.v] for p in conn}
    assert np.allclose(ends[0], (250, 0))  # the guide split under it
    assert np.allclose(ends[1], (500, 0))  # 30 m from the junction: joins it


def test_a_corridor_too_close_to_another_of_its_layer_or_a_junction_is_named():
    a = (0, 1, 1, np.array([[0.0, 0.0], [1000.0, 0.0]]))
    b = (2, 3, 1, np.array([[100.0, 30.0], [600.0, 30.0]]))  # 30 m beside it, no junction
    c = (3, 2, 3, np.array([[600.0, 30.0], [100.0, 30.0]]))  # the same way back, 90 m up
    out = crowded([a, b, c], np.empty((0, 2)), 50)
    assert list(out) == [1] and "within 50 m" in out[1]  # the shorter one goes
    # a junction 30 m off a corridor that does not meet it
    nodes = np.array([[0, 0], [1000, 0], [400, 30]], float)
    out = crowded([a], nodes, 50)
    assert list(out) == [0] and "junction" in out[0]
    assert crowded([a], nodes[:2], 50) == {}


def test_travel_times_and_paths_on_a_grid():
    lines = [shapely.LineString([(-500, y), (2500, y)]) for y in (0, 1000)] + \
        [shapely.LineString([(x, -500), (x, 1500)]) for x in (0, 1000, 2000)]
    plan = plan_corridors(lines, list("abcde"), np.empty((0, 2)), 1000, gap=50)
    net = _net(plan)
    a = int(np.argmin(np.hypot(*(plan.nodes - (0, 0)).T)))
    b = int(np.argmin(np.hypot(*(plan.nodes - (2000, 1000)).T)))
    t = net.travel_times(np.array([a]), np.array([b]))[0, 0]
    # 3000 m at 15 m/s; up 50 m to the eastbound layer, 20 m down to the northbound one,
    # 30 m down to the ground, at 3 m/s
    assert t == pytest.approx(3000 / 15 + (50 + 20 + 30) / 3)
    states = net.path(a, b)
    assert states[0] == (a, net.levels - 1) and states[-1] == (b, net.levels - 1)
    assert net.travel_times(np.array([a]), np.array([a]))[0, 0] == 0


@pytest.mark.parametrize("held,max_delay,want", [
    ([], 0, 0.0), ([(-5, 5)], 0, None), ([(-5, 5)], 10, 5.0),
    ([(-5, 5), (4, 12), (20, 30)], 100, 12.0), ([(1, 3)], 0, 0.0)])
def test_earliest_free_departure(held, max_delay, want):
    assert earliest(sorted(held), max_delay) == want
