"""The route network as geometry and a graph: no database, no web (numpy, shapely, scipy).

Building (``plan_corridors``): the guide lines (road or river centre lines, metric) are
noded where they cross (``shapely.union_all``) and merged through points where only two
meet (``shapely.line_merge``), so every part runs from junction to junction and no two parts
cross between nodes. Each vertiport is joined to its nearest guide by a straight connector
to the nearest point on it (the guide is split there, a new junction). Every part becomes
two directed edges, one each way. Junctions closer than the separation (``gap``:
separation_h + 2 x half-width, 50 m by default) are merged first, and a vertiport whose
nearest guide point is that close to a junction joins the junction; ``crowded`` then names
the edges that still pass closer than ``gap`` to a corridor of their layer, or to a junction
they do not meet, with no shared node whose slots would keep the flights apart.

Layers by heading: a directed edge's heading is the bearing of its chord, clockwise from
grid north of the metric CRS. The sector is ``floor(((heading + 45) mod 360) / 90)``:
0 northbound, 1 eastbound, 2 southbound, 3 westbound. An edge flies at
``base_agl + sector * step`` above the ground (defaults 30, 55, 80, 105 m; the top of the
volume, 110 m, stays under the 120 m limit). Eastbound and westbound are 50 m apart. Edges
only meet at nodes, so crossing flows are edges of different sectors through one junction:
their layers are ``step`` apart, both vertical half-heights plus the vertical separation
(20 m = 5 + 5 + 10 by default) plus a margin of 5 m for the ground under two corridors
near each other differing (``corridors.vertical_clashes`` holds the network to it).
Same-sector flows merge at a node on one layer; the outgoing edge's capacity bounds the
merged flow.

Capacity (flights per hour) of an edge, from the separation minima and the speed: two
drones in trail on one corridor keep the horizontal separation between their volumes, so
their centres are ``separation_h + 2 * half_width`` apart, plus a time buffer for timing
uncertainty:

    headway_s = (separation_h_m + 2 * half_width_m) / speed_ms + buffer_s
    capacity_per_hour = floor(3600 / headway_s)

(30 m, 10 m, 15 m/s and 10 s give 270 per hour.)

Routing (``Network``): Dijkstra (scipy's, in C) over states (node, level): one level per
flight layer and a ground level at every node. Flying an edge costs its length over its
speed; changing layers at a node, or climbing from and descending to the ground, costs the
height difference over the climb rate. ``Network.travel_times`` is the matrix of seconds
between nodes (ground to ground) that task assignment reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree
from shapely.ops import substring

SECTORS = ("north", "east", "south", "west")
KEY_M = 0.01  # node positions equal to a centimetre are one node


def heading_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Bearing from a to b, degrees clockwise from grid north (x east, y north)."""
    return float(math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0)


def sector(heading: float) -> int:
    return int(((heading + 45.0) % 360.0) // 90.0)


def layer_agl(layer: int, base_agl_m: float, step_m: float) -> float:
    return base_agl_m + layer * step_m


def capacity_per_hour(speed_ms: float, separation_h_m: float, half_width_m: float,
                      buffer_s: float) -> int:
    headway = (separation_h_m + 2 * half_width_m) / speed_ms + buffer_s
    return max(1, math.floor(3600.0 / headway))


@dataclass
class Part:
    """An undirected corridor between two nodes (indices into the node list)."""

    u: int
    v: int
    coords: np.ndarray  # (n, 2) metric, from u to v
    source: str  # guide | connector
    guide: str | None


@dataclass
class Plan:
    nodes: np.ndarray  # (k, 2) metric
    vertiport_of: np.ndarray  # (k,) index into the vertiports given, -1 for a junction
    parts: list[Part]
    unconnected: list[int]  # vertiports farther than the connector limit from any guide


class _Nodes:
    def __init__(self) -> None:
        self.index: dict[tuple[int, int], int] = {}
        self.xy: list[tuple[float, float]] = []
        self.vertiport: list[int] = []

    def at(self, p: np.ndarray, vertiport: int = -1) -> int:
        key = (round(float(p[0]) / KEY_M), round(float(p[1]) / KEY_M))
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.xy)
            self.xy.append((float(p[0]), float(p[1])))
            self.vertiport.append(vertiport)
        elif vertiport >= 0:
            self.vertiport[i] = vertiport
        return i


def _split_loops(lines: list[shapely.LineString]) -> list[shapely.LineString]:
    """A part that starts where it ends has no heading: cut it in two."""
    out = []
    for g in lines:
        c = shapely.get_coordinates(g)
        if len(c) >= 3 and np.allclose(c[0], c[-1], atol=KEY_M):
            m = len(c) // 2
            out += [shapely.LineString(c[:m + 1]), shapely.LineString(c[m:])]
        elif len(c) >= 2:
            out.append(g)
    return out


def _consolidate(parts: list[shapely.LineString], guide: list[str | None], gap: float
                 ) -> tuple[list[shapely.LineString], list[str | None]]:
    """Junctions closer than ``gap`` become one, at their centroid: the ends of the parts
    move there, and parts that then start and end at one junction and are short go."""
    if gap <= 0 or not parts:
        return parts, guide
    coords = [shapely.get_coordinates(g) for g in parts]
    ends = np.array([c[i] for c in coords for i in (0, -1)])
    pairs = cKDTree(ends).query_pairs(gap, output_type="ndarray")
    n = len(ends)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) \
        if len(pairs) else coo_matrix((n, n))
    _, label = connected_components(graph, directed=False)
    sums = np.zeros((label.max() + 1, 2))
    np.add.at(sums, label, ends)
    centre = sums / np.bincount(label)[:, None]
    out, names = [], []
    for k, (c, name) in enumerate(zip(coords, guide, strict=True)):
        a, b = label[2 * k], label[2 * k + 1]
        c = c.copy()
        c[0], c[-1] = centre[a], centre[b]
        if a == b and shapely.LineString(c).length < 3 * gap:
            continue
        out.append(shapely.LineString(c))
        names.append(name)
    return out, names


def crowded(edges: list[tuple[int, int, int, np.ndarray]], node_xy: np.ndarray, gap: float
            ) -> dict[int, str]:
    """Edges (u, v, layer, xy) that come closer than ``gap`` to a corridor of their layer
    or to a junction without meeting it there: flights on them would not be kept apart by
    the slots of a shared node. The shorter of two such edges goes, and an edge passing a
    junction it does not end at (a junction's column is where flights change layers)."""
    if not edges or gap <= 0:
        return {}
    lines = np.array([shapely.LineString(xy) for *_, xy in edges], dtype=object)
    length = shapely.length(lines)
    tree = shapely.STRtree(lines)
    out: dict[int, str] = {}
    a, b = tree.query(lines, predicate="dwithin", distance=gap)
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        if i >= j or i in out or j in out:
            continue
        (ui, vi, li, _), (uj, vj, lj, _) = edges[i], edges[j]
        if li != lj or {ui, vi} & {uj, vj}:
            continue
        k, other = (i, j) if length[i] <= length[j] else (j, i)
        out[k] = (f"within {gap:g} m of another corridor on its layer (edge {other} of the "
                  "plan) with no junction between them")
    pts = shapely.points(node_xy)
    ni, ei = tree.query(pts, predicate="dwithin", distance=gap)
    for n, e in zip(ni.tolist(), ei.tolist(), strict=True):
        u, v, _, _ = edges[e]
        if e not in out and n not in (u, v):
            out[e] = f"passes within {gap:g} m of a junction it does not meet"
    return out


def plan_corridors(lines: list[shapely.LineString], names: list[str | None],
                   vertiports: np.ndarray, max_connector_m: float,
                   min_part_m: float = 1.0, gap: float = 0.0) -> Plan:
    """Nodes and undirected parts from metric guide lines and vertiport positions (k, 2).
    Junctions closer than ``gap`` are merged, and a vertiport whose nearest point on a
    guide is within ``gap`` of a junction joins that junction."""
    if not lines:
        return Plan(np.empty((0, 2)), np.empty(0, np.int64), [], list(range(len(vertiports))))
    src = np.asarray(lines, dtype=object)
    noded = shapely.line_merge(shapely.union_all(src))
    parts = [g for g in shapely.get_parts(noded) if g.length >= min_part_m]
    parts = _split_loops(parts)
    # which guide each part came from: the one nearest its middle
    tree = shapely.STRtree(src)
    mids = shapely.line_interpolate_point(np.asarray(parts, dtype=object), 0.5,
                                          normalized=True)
    near = tree.query_nearest(mids, all_matches=False)[1]
    guide = [names[int(i)] for i in near]
    parts, guide = _consolidate(parts, guide, gap)
    sources = ["guide"] * len(parts)
    unconnected: list[int] = []
    connectors: list[tuple[int, shapely.LineString]] = []
    for k, (x, y) in enumerate(np.asarray(vertiports, float).reshape(-1, 2)):
        p = shapely.Point(x, y)
        arr = np.asarray(parts, dtype=object)
        d = shapely.distance(arr, p)
        i = int(np.argmin(d))
        if d[i] > max_connector_m:
            unconnected.append(k)
            continue
        line = parts[i]
        at = line.project(p)
        if at < max(gap, KEY_M):
            at = 0.0
        elif at > line.length - max(gap, KEY_M):
            at = line.length
        q = line.interpolate(at)
        if KEY_M < at < line.length - KEY_M:
            a = substring(line, 0, at)
            b = substring(line, at, line.length)
            parts[i:i + 1] = [a, b]
            guide[i:i + 1] = [guide[i], guide[i]]
            sources[i:i + 1] = ["guide", "guide"]
        connectors.append((k, shapely.LineString([(x, y), (q.x, q.y)])))
    nodes = _Nodes()
    out: list[Part] = []
    for g, name, source in zip(parts, guide, sources, strict=True):
        c = shapely.get_coordinates(g)
        out.append(Part(nodes.at(c[0]), nodes.at(c[-1]), c, source, name))
    for k, line in connectors:
        c = shapely.get_coordinates(line)
        v = nodes.at(c[0], vertiport=k)
        if line.length <= KEY_M:  # the vertiport lies on the guide: it is the junction
            continue
        out.append(Part(v, nodes.at(c[-1]), c, "connector", None))
    out = [p for p in out if p.u != p.v]
    return Plan(np.array(nodes.xy, float).reshape(-1, 2),
                np.array(nodes.vertiport, np.int64), out, unconnected)


@dataclass
class Network:
    """A network version's nodes and directed edges, ready for routing.

    Heights: ``node_ground`` (ellipsoidal ground, or the pad of a vertiport) and
    ``edge_agl`` (the layer above the ground); ``edge_xyz`` the centre lines (metric, Z
    ellipsoidal)."""

    node_ids: np.ndarray
    node_xy: np.ndarray
    node_ground: np.ndarray
    node_vertiport: np.ndarray  # vertiport id, -1 for a junction
    edge_ids: np.ndarray
    edge_from: np.ndarray  # node index
    edge_to: np.ndarray
    edge_layer: np.ndarray
    edge_agl: np.ndarray
    edge_length: np.ndarray
    edge_speed: np.ndarray
    edge_capacity: np.ndarray
    edge_xyz: list[np.ndarray]
    climb_ms: float
    version: int = 0
    _graph: object = field(default=None, repr=False)
    _tree: object = field(default=None, repr=False)
    # vertiport id -> capacity per hour (take-offs and landings)
    pads: dict = field(default_factory=dict)
    # predecessors of the shortest-path tree from each source state asked for so far, and
    # anything else derived once per version (timelines of paths, the edge index)
    _pred: dict = field(default_factory=dict, repr=False)
    memo: dict = field(default_factory=dict, repr=False)

    @property
    def levels(self) -> int:
        """Flight layers in use, plus the ground level (the last)."""
        top = int(self.edge_layer.max()) + 1 if len(self.edge_layer) else 0
        return max(top, len(SECTORS)) + 1

    def node_index(self, node_id: int) -> int:
        hit = np.flatnonzero(self.node_ids == node_id)
        if hit.size == 0:
            raise KeyError(node_id)
        return int(hit[0])

    def layer_heights(self) -> np.ndarray:
        """The AGL height of each layer (by the edges that use it), the ground level 0."""
        out = np.zeros(self.levels)
        for k in range(self.levels - 1):
            m = self.edge_layer == k
            if m.any():
                out[k] = float(np.median(self.edge_agl[m]))
        return out

    def graph(self):
        """The sparse state graph (node x level), weights in seconds."""
        if self._graph is not None:
            return self._graph
        n, lv = len(self.node_ids), self.levels
        ground = lv - 1
        agl = self.layer_heights()
        rows = [self.edge_from * lv + self.edge_layer]
        cols = [self.edge_to * lv + self.edge_layer]
        w = [self.edge_length / self.edge_speed]
        # levels present at each node: where an edge starts or ends
        present = np.zeros((n, lv), bool)
        present[self.edge_from, self.edge_layer] = True
        present[self.edge_to, self.edge_layer] = True
        present[:, ground] = True
        for a in range(lv):
            for b in range(lv):
                if a == b:
                    continue
                m = present[:, a] & present[:, b]
                idx = np.flatnonzero(m)
                rows.append(idx * lv + a)
                cols.append(idx * lv + b)
                w.append(np.full(idx.size, abs(agl[a] - agl[b]) / self.climb_ms))
        r, c, ww = np.concatenate(rows), np.concatenate(cols), np.concatenate(w)
        # a zero weight would read as "no arc" in a sparse matrix
        ww = np.maximum(ww, 1e-6)
        self._graph = coo_matrix((ww, (r, c)), shape=(n * lv, n * lv)).tocsr()
        return self._graph

    def travel_times(self, sources: np.ndarray, targets: np.ndarray | None = None
                     ) -> np.ndarray:
        """Seconds from each source node to each target node (indices), ground to ground:
        climb, the corridors at their speed, layer changes, descent; inf where no path."""
        lv = self.levels
        src = np.asarray(sources, np.int64) * lv + (lv - 1)
        d = dijkstra(self.graph(), directed=True, indices=src)
        d = d.reshape(len(src), len(self.node_ids), lv)[:, :, lv - 1]
        return d if targets is None else d[:, np.asarray(targets, np.int64)]

    def path(self, a: int, b: int) -> list[tuple[int, int]]:
        """The fastest path from node a to node b (indices) as states (node, level), from
        the ground at a to the ground at b; empty if there is none."""
        lv = self.levels
        g = self.graph()
        s, t = a * lv + lv - 1, b * lv + lv - 1
        if s not in self._pred:
            if len(self._pred) > 4096:
                self._pred.clear()
            self._pred[s] = dijkstra(g, directed=True, indices=s, return_predecessors=True)[1]
        pred = self._pred[s]
        if t != s and pred[t] < 0:
            return []
        out = [t]
        while out[-1] != s:
            out.append(int(pred[out[-1]]))
        return [(st // lv, st % lv) for st in reversed(out)]

    def edge_between(self, u: int, v: int, layer: int) -> int:
        """Index of the fastest edge from node u to v on a layer."""
        index = self.memo.get("edges")
        if index is None:
            index = {}
            for k in np.argsort(-self.edge_length).tolist():  # the shortest one wins
                index[(int(self.edge_from[k]), int(self.edge_to[k]),
                       int(self.edge_layer[k]))] = k
            self.memo["edges"] = index
        return index[(u, v, layer)]

    def nearest_nodes(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest node (index) of each metric point, and its distance."""
        if self._tree is None:
            self._tree = cKDTree(self.node_xy)
        d, i = self._tree.query(np.asarray(xy, float).reshape(-1, 2))
        return np.asarray(i, np.int64), np.asarray(d)

    def vertiport_groups(self) -> dict[int, int]:
        """vertiport id -> strongly connected component of its node (ground level)."""
        if not len(self.node_ids):
            return {}
        _, labels = connected_components(self.graph(), directed=True, connection="strong")
        lv = self.levels
        return {int(self.node_vertiport[i]): int(labels[i * lv + lv - 1])
                for i in np.flatnonzero(self.node_vertiport >= 0)}


def disconnected_by(before: Network, after: Network) -> list[dict]:
    """Vertiports an edit cuts off: of each group of vertiports that reached each other
    both ways before, the largest part still joined after stays, and every vertiport
    outside it is cut off, with the vertiports it lost."""
    gb, ga = before.vertiport_groups(), after.vertiport_groups()
    out = []
    for comp in sorted(set(gb.values())):
        members = sorted(v for v, c in gb.items() if c == comp)
        parts: dict[int, list[int]] = {}
        for v in members:
            parts.setdefault(ga.get(v, -1 - v), []).append(v)
        if len(parts) < 2:
            continue
        keep = max(parts.values(), key=lambda p: (len(p), -p[0]))
        for v in members:
            if v not in keep:
                mine = parts[ga.get(v, -1 - v)]
                out.append({"vertiport": v, "lost": [w for w in members if w not in mine]})
    return out
