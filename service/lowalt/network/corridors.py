"""Corridor edges from a plan of parts, each validated by the service's own route validation.

Every directed edge is a route volume (its centre line at its layer, ``network_half_width_m``
and ``network_vertical_half_m``) checked by ``service.lowalt.validation.validate`` against
the buildings with their clearances, the airspace zones and the 120 m true height over the
ground, exactly as a filed route is. Only edges the validation accepts (no violation other
than notices) are kept; the others are dropped with the violations' messages as the reason.
The centre line follows the ground: a vertex at least every ``VERTEX_STEP_M`` at the
layer's height above the ground model there.

Layers follow the ground, so two corridors on adjacent layers are the layer step apart only
where the ground under both is the same height. The step is the vertical separation of
volumes plus a margin (25 m = 20 m + 5 m by default), and ``vertical_clashes`` holds the
network to it: two corridors on different layers that come within the horizontal
separation of each other must be at least the vertical separation apart there, and along a
corridor, within the horizontal separation of its end nodes, the ground may differ from
the node's by at most the margin (a drone changing layers in the node's column is then
kept apart from the flows on the layers by the slots of ``reserve.timeline``). An edge that
breaks either is dropped (``network_separation``), the shorter of a pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely
from scipy.spatial import cKDTree

from service.lowalt.citymodel import Obstacles, Zone
from service.lowalt.geo import Frame, corridor_polygon
from service.lowalt.ground import GroundModel
from service.lowalt.network.graph import (
    Plan,
    capacity_per_hour,
    crowded,
    heading_deg,
    layer_agl,
    sector,
)
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings
from service.lowalt.validation import validate

VERTEX_STEP_M = 25.0
# sampling of centre lines in the vertical separation check (the flights fly the straight
# segments between vertices: the samples are on them)
CLASH_STEP_M = 2.0
# the drone class the network is validated for: the 120 m limit (micro drones have 50 m)
NETWORK_CLASS = "light"


@dataclass
class Edge:
    u: int
    v: int
    xyz: np.ndarray  # metric, Z ellipsoidal
    heading: float
    layer: int
    agl: float
    length: float
    capacity: int
    source: str
    guide: str | None
    result: dict[str, Any]


def edge_volume(xy: np.ndarray, agl: float, ground: GroundModel, s: LowAltSettings,
                fr: Frame, now: datetime) -> RouteVolume:
    line = shapely.segmentize(shapely.LineString(xy), VERTEX_STEP_M)
    c = shapely.get_coordinates(line)
    g, _ = ground.at_xy(c[:, 0], c[:, 1])
    xyz = np.column_stack([c, g + agl])
    hw = s.network_half_width_m
    return RouteVolume(fr.lonlatz(xyz), xyz, hw, s.network_vertical_half_m,
                       corridor_polygon(xyz, hw), now, now + timedelta(hours=1), 0, fr)


class Checker:
    """Validation of many volumes against one area's city model: each call gets only the
    obstacles and zones near its volume (one STRtree query) so ``validate`` tests few."""

    def __init__(self, obstacles: Obstacles, zones: list[Zone], ground: GroundModel,
                 s: LowAltSettings) -> None:
        self.obs, self.zones, self.ground, self.s = obstacles, zones, ground, s
        self.tree = shapely.STRtree(obstacles.footprints) if len(obstacles) else None
        self.ztree = shapely.STRtree([z.geom_m for z in zones]) if zones else None

    def __call__(self, vol: RouteVolume, now: datetime, klass: str = NETWORK_CLASS
                 ) -> dict[str, Any]:
        s = self.s
        obs = Obstacles.empty()
        if self.tree is not None:
            idx = np.sort(self.tree.query(vol.tube_m(s.clearance_h_m + 1.0)))
            o = self.obs
            obs = Obstacles(o.ids[idx], [o.object_ids[i] for i in idx],
                            [o.types[i] for i in idx], o.footprints[idx], o.min_z[idx],
                            o.max_z[idx])
        zones = []
        if self.ztree is not None:
            zones = [self.zones[i] for i in
                     np.sort(self.ztree.query(vol.tube_m(s.sample_step_m)))]
        return validate(vol, obs, zones, self.ground, klass, s, now)


def _separation_drop(e: Edge, why: str, fr: Frame) -> dict[str, Any]:
    """The record of a valid edge dropped for coming too close to others."""
    a, b = fr.to_lonlat(e.xyz[[0, -1], 0], e.xyz[[0, -1], 1])
    return {"from": [round(float(a[0]), 7), round(float(b[0]), 7)],
            "to": [round(float(a[1]), 7), round(float(b[1]), 7)],
            "layer": e.layer, "layer_agl_m": e.agl, "source": e.source, "guide": e.guide,
            "verdict": "accepted", "rules": ["network_separation"], "reason": why}


def build_edges(plan: Plan, check: Checker, s: LowAltSettings, fr: Frame, now: datetime
                ) -> tuple[list[Edge], list[dict[str, Any]]]:
    """Both directions of every part, kept if valid; the dropped ones with the reason."""
    cap = capacity_per_hour(s.network_speed_ms, s.separation_h_m, s.network_half_width_m,
                            s.network_buffer_s)
    kept: list[Edge] = []
    dropped: list[dict[str, Any]] = []
    for part in plan.parts:
        for u, v, xy in ((part.u, part.v, part.coords), (part.v, part.u, part.coords[::-1])):
            h = heading_deg(xy[0], xy[-1])
            k = sector(h)
            agl = layer_agl(k, s.network_base_agl_m, s.network_layer_step_m)
            vol = edge_volume(xy, agl, check.ground, s, fr, now)
            result = check(vol, now)
            if result["verdict"] == "accepted":
                kept.append(Edge(u, v, vol.xyz, h, k, agl, vol.length_m, cap, part.source,
                                 part.guide, result))
                continue
            bad = [x for x in result["violations"] if x["severity"] != "notice"]
            a, b = fr.to_lonlat(np.array([xy[0, 0], xy[-1, 0]]),
                                np.array([xy[0, 1], xy[-1, 1]]))
            dropped.append({
                "from": [round(float(a[0]), 7), round(float(b[0]), 7)],
                "to": [round(float(a[1]), 7), round(float(b[1]), 7)],
                "layer": k, "layer_agl_m": agl, "source": part.source, "guide": part.guide,
                "verdict": result["verdict"],
                "rules": sorted({x["rule"] for x in bad}),
                "reason": "; ".join(x["message"] for x in bad[:3])})
    gap = s.separation_h_m + 2 * s.network_half_width_m
    close = crowded([(e.u, e.v, e.layer, e.xyz[:, :2]) for e in kept], plan.nodes, gap)
    for i, why in sorted(close.items()):
        dropped.append(_separation_drop(kept[i], why, fr))
    kept = [e for i, e in enumerate(kept) if i not in close]
    hsep = s.separation_h_m + 2 * s.network_half_width_m
    vsep = s.separation_v_m + 2 * s.network_vertical_half_m
    clash = vertical_clashes(kept, hsep, vsep, s.network_layer_step_m - vsep)
    for i, why in sorted(clash.items()):
        dropped.append(_separation_drop(kept[i], why, fr))
    return [e for i, e in enumerate(kept) if i not in clash], dropped


def _dense(xyz: np.ndarray, step: float) -> np.ndarray:
    """Points on the centre line's segments at most ``step`` apart (vertices included)."""
    seg = np.hypot(np.diff(xyz[:, 0]), np.diff(xyz[:, 1]))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.union1d(cum, np.linspace(0.0, cum[-1], max(2, int(np.ceil(cum[-1] / step)) + 1)))
    return np.column_stack([np.interp(at, cum, xyz[:, k]) for k in range(3)])


def vertical_clashes(edges: list[Edge], hsep: float, vsep: float, margin: float
                     ) -> dict[int, str]:
    """Edges that break the vertical separation of the layers (see the module's text):
    index -> reason. ``margin`` is the layer step less the vertical separation."""
    if not edges:
        return {}
    out: dict[int, str] = {}
    pts = [_dense(e.xyz, CLASH_STEP_M) for e in edges]
    # sampling may miss a closest pair by up to a step: look that much farther
    reach = hsep + CLASH_STEP_M
    for i, (e, p) in enumerate(zip(edges, pts, strict=True)):
        ground = p[:, 2] - e.agl
        for end in (0, -1):
            near = np.hypot(p[:, 0] - p[end, 0], p[:, 1] - p[end, 1]) < reach
            worst = float(np.abs(ground[near] - ground[end]).max())
            if worst > margin + 1e-6:
                out[i] = (f"the ground under it within {hsep:g} m of its node differs from "
                          f"the node's by {worst:.1f} m, more than the layers' vertical "
                          f"margin of {margin:g} m")
                break
    lines = np.array([shapely.LineString(e.xyz[:, :2]) for e in edges], dtype=object)
    length = shapely.length(lines)
    a, b = shapely.STRtree(lines).query(lines, predicate="dwithin", distance=reach)
    trees: dict[int, cKDTree] = {}
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        if i >= j or i in out or j in out or edges[i].layer == edges[j].layer:
            continue
        ti = trees.get(i) or trees.setdefault(i, cKDTree(pts[i][:, :2]))
        tj = trees.get(j) or trees.setdefault(j, cKDTree(pts[j][:, :2]))
        close = ti.sparse_distance_matrix(tj, reach, output_type="ndarray")
        if not len(close):
            continue
        dz = np.abs(pts[i][close["i"], 2] - pts[j][close["j"], 2])
        k = int(np.argmin(dz))
        if dz[k] < vsep - 1e-6:
            short, other = (i, j) if length[i] <= length[j] else (j, i)
            out[short] = (f"{float(close['v'][k]):.1f} m horizontally and only "
                          f"{float(dz[k]):.1f} m vertically from a corridor on layer "
                          f"{edges[other].layer} (the vertical separation is {vsep:g} m): "
                          "the ground under them differs too much")
    return out
