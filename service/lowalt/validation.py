"""Route validation: every violation of a route, with where it is.

Rules (margins from ``LowAltSettings``):

* ``volume``: the reservation starts no earlier than now (with a small grace), at most
  ``max_days_ahead`` ahead, and lasts at most ``max_window_hours``; refused otherwise.
* ``height_limit``: the top of the volume (centre line + vertical half-height) is at most
  120 m above ground (50 m for micro drones). Above it the route is in controlled airspace:
  it needs approval, it is not refused.
* ``below_ground``: a centre line more than ``below_ground_m`` under the ground is refused.
* ``building_clearance``: within ``half_width + clearance_h`` horizontally of an obstacle's
  footprint, the volume must keep ``clearance_v`` above its top (or below its underside,
  for bridges). Obstacles are prisms from the city model (footprint, lowest and highest
  point), so a pitched roof counts as its ridge: conservative, never optimistic.
  This test is exact per segment: each segment is clipped to the footprint grown by the
  horizontal margin, and the heights along the clipped part are solved for analytically.
* ``zone``: overlap in space, altitude and time with a prohibited zone is refused, with a
  needs-authorisation zone needs approval, with a conditional zone is a notice.

Each violation has ``rule``, ``severity`` (refuse | needs_approval | notice), ``message``,
``from_fraction``/``to_fraction`` along the route (horizontal length), ``point`` (lon, lat,
h of the first offending place) and the offending ``city_object``/``zone`` where there is one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely

from service.lowalt.citymodel import Obstacles, Zone
from service.lowalt.geo import fractions_of, sample
from service.lowalt.ground import SOURCES, GroundModel
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings

SEVERITY_ORDER = {"notice": 0, "needs_approval": 1, "refuse": 2}
ZONE_SEVERITY = {"prohibited": "refuse", "needs_authorisation": "needs_approval",
                 "conditional": "notice"}


def verdict(violations: list[dict[str, Any]]) -> str:
    worst = max((SEVERITY_ORDER[v["severity"]] for v in violations), default=0)
    return {0: "accepted", 1: "needs_approval", 2: "refused"}[worst]


def height_limit(drone_class: str, s: LowAltSettings) -> float:
    return s.micro_height_limit_m if drone_class == "micro" else s.height_limit_m


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [i0, i1] of consecutive True values."""
    if not mask.any():
        return []
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _point(route: RouteVolume, xyz: np.ndarray) -> list[float]:
    lon, lat = route.frame.to_lonlat(xyz[0:1], xyz[1:2])
    return [round(float(lon[0]), 7), round(float(lat[0]), 7), round(float(xyz[2]), 2)]


def check_volume(route: RouteVolume, s: LowAltSettings, now: datetime) -> list[dict]:
    out = []

    def bad(msg: str) -> None:
        out.append({"rule": "volume", "severity": "refuse", "message": msg})

    if route.end <= route.start:
        bad("the time window ends before it starts")
    if route.start < now - timedelta(seconds=s.past_grace_s):
        bad(f"the time window starts in the past ({route.start.isoformat()})")
    if route.start > now + timedelta(days=s.max_days_ahead):
        bad(f"the time window starts more than {s.max_days_ahead:g} days ahead")
    if route.end - route.start > timedelta(hours=s.max_window_hours):
        bad(f"the time window is longer than {s.max_window_hours:g} hours")
    return out


def check_height(route: RouteVolume, pts: np.ndarray, fr: np.ndarray, ground: np.ndarray,
                 limit: float, s: LowAltSettings) -> list[dict]:
    out = []
    agl_top = pts[:, 2] + route.vertical_half - ground
    for i0, i1 in _runs(agl_top > limit + 1e-6):
        k = i0 + int(np.argmax(agl_top[i0:i1 + 1]))
        out.append({
            "rule": "height_limit", "severity": "needs_approval",
            "message": f"{agl_top[k]:.1f} m above ground (top of the volume) is over the "
                       f"{limit:g} m limit: controlled airspace, approval needed",
            "from_fraction": round(float(fr[i0]), 5), "to_fraction": round(float(fr[i1]), 5),
            "point": _point(route, pts[k]), "height_agl_m": round(float(agl_top[k]), 2),
            "limit_m": limit})
    agl = pts[:, 2] - ground
    for i0, i1 in _runs(agl < -s.below_ground_m):
        k = i0 + int(np.argmin(agl[i0:i1 + 1]))
        out.append({
            "rule": "below_ground", "severity": "refuse",
            "message": f"the centre line is {-agl[k]:.1f} m below the ground",
            "from_fraction": round(float(fr[i0]), 5), "to_fraction": round(float(fr[i1]), 5),
            "point": _point(route, pts[k]), "height_agl_m": round(float(agl[k]), 2)})
    return out


def _t_ranges(seg: shapely.Geometry, region: shapely.Geometry) -> list[tuple[float, float]]:
    """Parameter ranges (0..1) of a segment that lie inside a region."""
    if seg.length < 1e-6:
        return [(0.0, 1.0)] if region.intersects(seg) else []
    out = []
    for part in shapely.get_parts(seg.intersection(region)):
        if part.is_empty:
            continue
        ts = [seg.project(shapely.Point(c), normalized=True)
              for c in shapely.get_coordinates(part)]
        out.append((min(ts), max(ts)))
    return out


def check_buildings(route: RouteVolume, obs: Obstacles, s: LowAltSettings) -> list[dict]:
    if not len(obs):
        return []
    xyz, vh = route.xyz, route.vertical_half
    reach = route.half_width + s.clearance_h_m
    frac = fractions_of(xyz)
    segs = np.array([shapely.LineString(xyz[k:k + 2, :2]) for k in range(len(xyz) - 1)])
    tree = shapely.STRtree(obs.footprints)
    seg_i, obs_i = tree.query(segs, predicate="dwithin", distance=reach)
    found: dict[int, dict[str, Any]] = {}
    regions: dict[int, shapely.Geometry] = {}
    for k, b in zip(seg_i.tolist(), obs_i.tolist(), strict=True):
        if b not in regions:
            regions[b] = obs.footprints[b].buffer(reach, quad_segs=8)
        za, dz = xyz[k, 2], xyz[k + 1, 2] - xyz[k, 2]
        # the volume at t spans z(t) +- vh; it clashes where z(t) lies in (lo, hi)
        lo = obs.min_z[b] - s.clearance_v_m - vh
        hi = obs.max_z[b] + s.clearance_v_m + vh
        for t0, t1 in _t_ranges(segs[k], regions[b]):
            if abs(dz) < 1e-9:
                if not lo < za < hi:
                    continue
                a, c = t0, t1
            else:
                ta, tb = sorted(((lo - za) / dz, (hi - za) / dz))
                a, c = max(t0, ta), min(t1, tb)
                if a > c:
                    continue
            f0 = frac[k] + a * (frac[k + 1] - frac[k])
            f1 = frac[k] + c * (frac[k + 1] - frac[k])
            p = xyz[k] + a * (xyz[k + 1] - xyz[k])
            piece = shapely.LineString([p[:2], (xyz[k] + c * (xyz[k + 1] - xyz[k]))[:2]])
            hdist = float(obs.footprints[b].distance(piece))
            bottom = float(min(za + a * dz, za + c * dz) - vh)
            v = found.get(b)
            if v is None:
                found[b] = {"f0": f0, "f1": f1, "p": p, "h": hdist, "bottom": bottom}
            else:
                if f0 < v["f0"]:
                    v["f0"], v["p"] = f0, p
                v["f1"] = max(v["f1"], f1)
                v["h"] = min(v["h"], hdist)
                v["bottom"] = min(v["bottom"], bottom)
    out = []
    for b, v in sorted(found.items(), key=lambda kv: kv[1]["f0"]):
        top = float(obs.max_z[b])
        out.append({
            "rule": "building_clearance", "severity": "refuse",
            "message": f"{obs.types[b]} {obs.object_ids[b]!r} is {v['h']:.1f} m from the "
                       f"corridor's centre line (needs {reach:g} m) and reaches {top:.1f} m; "
                       f"the route's volume goes down to {v['bottom']:.1f} m (needs "
                       f"{s.clearance_v_m:g} m above it)",
            "from_fraction": round(float(v["f0"]), 5), "to_fraction": round(float(v["f1"]), 5),
            "point": _point(route, v["p"]), "city_object": obs.object_ids[b],
            "city_object_row": int(obs.ids[b]), "city_object_type": obs.types[b],
            "horizontal_m": round(v["h"], 2), "obstacle_top_m": round(top, 2),
            "route_bottom_m": round(v["bottom"], 2)})
    return out


def check_zones(route: RouteVolume, zones: list[Zone], pts: np.ndarray, fr: np.ndarray,
                ground: np.ndarray, step: float) -> list[dict]:
    out = []
    vh = route.vertical_half
    for z in zones:
        region = z.geom_m.buffer(route.half_width + step / 2, quad_segs=4)
        inside = shapely.contains_xy(region, pts[:, 0], pts[:, 1])
        base = ground if z.height_reference == "agl" else 0.0
        floor, ceiling = z.floor_m + base, z.ceiling_m + base
        clash = inside & (pts[:, 2] - vh < ceiling) & (pts[:, 2] + vh > floor)
        runs = _runs(clash)
        if not runs:
            continue
        i0, i1 = runs[0][0], runs[-1][1]
        severity = ZONE_SEVERITY[z.zone_type]
        what = {"refuse": "enters the prohibited zone",
                "needs_approval": "enters a zone that needs authorisation:",
                "notice": "crosses the conditional zone"}[severity]
        out.append({
            "rule": "zone", "severity": severity,
            "message": f"the route {what} {z.name!r} ({z.floor_m:g}-{z.ceiling_m:g} m "
                       f"{'above ground' if z.height_reference == 'agl' else 'WGS 84'})",
            "from_fraction": round(float(fr[i0]), 5), "to_fraction": round(float(fr[i1]), 5),
            "point": _point(route, pts[i0]), "zone": z.id, "zone_code": z.code,
            "zone_type": z.zone_type, "passes": len(runs)})
    return out


def validate(route: RouteVolume, obstacles: Obstacles, zones: list[Zone],
             ground: GroundModel, drone_class: str, s: LowAltSettings,
             now: datetime) -> dict[str, Any]:
    """Every violation of one route, the verdict, and what it was checked against."""
    pts, fr = sample(route.xyz, s.sample_step_m)
    g, src = ground.at_xy(pts[:, 0], pts[:, 1])
    limit = height_limit(drone_class, s)
    violations = (check_volume(route, s, now)
                  + check_height(route, pts, fr, g, limit, s)
                  + check_buildings(route, obstacles, s)
                  + check_zones(route, zones, pts, fr, g, s.sample_step_m))
    counts = np.bincount(src, minlength=len(SOURCES))
    agl = pts[:, 2] - g
    return {
        "verdict": verdict(violations),
        "violations": violations,
        "checked": {
            "obstacles": len(obstacles), "zones": len(zones), "samples": len(pts),
            "height_limit_m": limit,
            "margins": {"clearance_h_m": s.clearance_h_m, "clearance_v_m": s.clearance_v_m,
                        "half_width_m": route.half_width,
                        "vertical_half_m": route.vertical_half},
            "height_agl_m": {"min": round(float(agl.min()), 2),
                             "max": round(float(agl.max()), 2)},
            "ground_source": {name: int(n) for name, n in zip(SOURCES, counts, strict=True)
                              if n},
            "checked_at": now.isoformat(),
        },
    }
