"""Corridor edges from a plan of parts, each validated by the service's own route validation.

Every directed edge is a route volume (its centre line at its layer, ``network_half_width_m``
and ``network_vertical_half_m``) checked by ``service.lowalt.validation.validate`` against
the buildings with their clearances, the airspace zones and the 120 m true height over the
ground, exactly as a filed route is. Only edges the validation accepts (no violation other
than notices) are kept; the others are dropped with the violations' messages as the reason.
The centre line follows the ground: a vertex at least every ``VERTEX_STEP_M`` at the
layer's height above the ground model there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely

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
        e = kept[i]
        a, b = fr.to_lonlat(e.xyz[[0, -1], 0], e.xyz[[0, -1], 1])
        dropped.append({
            "from": [round(float(a[0]), 7), round(float(b[0]), 7)],
            "to": [round(float(a[1]), 7), round(float(b[1]), 7)],
            "layer": e.layer, "layer_agl_m": e.agl, "source": e.source, "guide": e.guide,
            "verdict": "accepted", "rules": ["network_separation"], "reason": why})
    return [e for i, e in enumerate(kept) if i not in close], dropped
