"""Route validation: every violation of a route, with where it is.

Rules (margins from ``LowAltSettings``):

* ``volume``: the reservation starts no earlier than now (with a small grace), at most
  ``max_days_ahead`` ahead, and lasts at most ``max_window_hours``; refused otherwise.
  Approval checks the route again with every other rule, but of these only that its window
  has not ended: a suspended flight may be approved again while its window runs.
* ``height_limit``: the top of the volume (centre line + vertical half-height) is at most
  120 m above ground (50 m for micro drones). Above it the route is in controlled airspace:
  it needs approval, it is not refused.
* ``below_ground``: a centre line more than ``below_ground_m`` under the ground is refused.
* ``building_clearance``: within ``half_width + clearance_h`` horizontally of an obstacle's
  footprint, the volume must keep ``clearance_v`` above its top (or below its underside,
  for bridges). Obstacles are prisms from the city model (footprint, lowest and highest
  point), so a pitched roof counts as its ridge: conservative, never optimistic.
  Each segment is clipped to the footprint grown by the horizontal margin, and the heights
  along the clipped part are solved for analytically. The grown footprint's round corners
  are polygons around the true circles (32 segments a quarter, radius / cos(pi / 128)),
  never inside them: anything may count up to 0.03 % (7.5 mm at 25 m) nearer than it is,
  never farther.
* ``zone``: overlap in space, altitude and time with a prohibited zone is refused, with a
  needs-authorisation zone needs approval, with a conditional zone is a notice. The centre
  line is tested at samples at most ``sample_step_m`` apart, so the zone is grown by half a
  step (``zone_margin_m`` in the answer's margins, 2.5 m by default) beyond the half-width:
  a crossing between two samples is never missed, and a route that passes a zone closer than
  half-width + 2.5 m counts as entering it.

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
from service.lowalt.geo import fractions_of, grow, sample
from service.lowalt.ground import SEA_LEVEL_NOTE, SOURCES, GroundModel
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings

# segments per quarter circle of grown footprints and zones: the polygon is drawn around the
# circle (never optimistic), and its straight sides then lie 0.03 % beyond the true margin
FINE_QUAD_SEGS = 32
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


def check_volume(route: RouteVolume, s: LowAltSettings, now: datetime,
                 approving: bool = False) -> list[dict]:
    out = []

    def bad(msg: str) -> None:
        out.append({"rule": "volume", "severity": "refuse", "message": msg})

    if approving:
        if route.end <= now:
            bad(f"the time window ended at {route.end.isoformat()}")
        return out
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


def _clash_parts(xyz: np.ndarray, obs: Obstacles, reach: float, vh: float, cv: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parts of segments that break an obstacle's clearance: (segment, obstacle, t0, t1).

    Each segment is clipped to the footprint grown by ``reach``; along a clipped part the
    height is linear, so where the volume (centre +- vh) reaches into the obstacle's
    [lowest - cv, highest + cv] is solved for exactly. All of it vectorised in GEOS/numpy.
    """
    nseg = len(xyz) - 1
    a2, b2 = xyz[:-1, :2], xyz[1:, :2]
    segs = shapely.linestrings(np.stack([a2, b2], axis=1))
    empty = (np.empty(0, np.int64),) * 2 + (np.empty(0),) * 2
    seg_i, obs_i = shapely.STRtree(obs.footprints).query(segs, predicate="dwithin",
                                                         distance=reach)
    if seg_i.size == 0:
        return empty
    ub, inv = np.unique(obs_i, return_inverse=True)
    regions = grow(obs.footprints[ub], reach, quad_segs=FINE_QUAD_SEGS)[inv]
    d = b2 - a2
    l2 = (d * d).sum(1)
    flat = l2[seg_i] < 1e-12
    # vertical segments: inside the grown footprint or not, the whole segment
    pk, pt0, pt1 = [seg_i[flat]], [np.zeros(int(flat.sum()))], [np.ones(int(flat.sum()))]
    po = [obs_i[flat]]
    if (~flat).any():
        si, oi = seg_i[~flat], obs_i[~flat]
        inter = shapely.intersection(segs[si], regions[~flat])
        parts, pidx = shapely.get_parts(inter, return_index=True)
        keep = ~shapely.is_empty(parts)
        parts, pidx = parts[keep], pidx[keep]
        coords, cidx = shapely.get_coordinates(parts, return_index=True)
        k = si[pidx][cidx]
        t = ((coords - a2[k]) * d[k]).sum(1) / l2[k]
        lo = np.full(len(parts), np.inf)
        hi = np.full(len(parts), -np.inf)
        np.minimum.at(lo, cidx, t)
        np.maximum.at(hi, cidx, t)
        pk.append(si[pidx])
        po.append(oi[pidx])
        pt0.append(np.clip(lo, 0, 1))
        pt1.append(np.clip(hi, 0, 1))
    k, o = np.concatenate(pk), np.concatenate(po)
    t0, t1 = np.concatenate(pt0), np.concatenate(pt1)
    if k.size == 0 or nseg == 0:
        return empty
    za, dz = xyz[k, 2], xyz[k + 1, 2] - xyz[k, 2]
    zlo = obs.min_z[o] - cv - vh
    zhi = obs.max_z[o] + cv + vh
    level = np.abs(dz) < 1e-9
    dzs = np.where(level, 1.0, dz)
    ta, tb = (zlo - za) / dzs, (zhi - za) / dzs
    ta, tb = np.minimum(ta, tb), np.maximum(ta, tb)
    a = np.where(level, t0, np.maximum(t0, ta))
    c = np.where(level, t1, np.minimum(t1, tb))
    ok = np.where(level, (zlo < za) & (za < zhi), a <= c)
    return k[ok], o[ok], a[ok], c[ok]


def check_buildings(route: RouteVolume, obs: Obstacles, s: LowAltSettings) -> list[dict]:
    if not len(obs) or len(route.xyz) < 2:
        return []
    xyz, vh = route.xyz, route.vertical_half
    reach = route.half_width + s.clearance_h_m
    frac = fractions_of(xyz)
    k, o, a, c = _clash_parts(xyz, obs, reach, vh, s.clearance_v_m)
    if k.size == 0:
        return []
    p0 = xyz[k] + a[:, None] * (xyz[k + 1] - xyz[k])
    p1 = xyz[k] + c[:, None] * (xyz[k + 1] - xyz[k])
    hdist = shapely.distance(obs.footprints[o],
                             shapely.linestrings(np.stack([p0[:, :2], p1[:, :2]], axis=1)))
    f0 = frac[k] + a * (frac[k + 1] - frac[k])
    f1 = frac[k] + c * (frac[k + 1] - frac[k])
    bottom = np.minimum(p0[:, 2], p1[:, 2]) - vh
    found: dict[int, dict[str, Any]] = {}
    for i in np.argsort(f0, kind="stable").tolist():
        b = int(o[i])
        v = found.get(b)
        if v is None:
            found[b] = {"f0": f0[i], "f1": f1[i], "p": p0[i], "h": hdist[i],
                        "bottom": bottom[i]}
        else:
            v["f1"] = max(v["f1"], f1[i])
            v["h"] = min(v["h"], hdist[i])
            v["bottom"] = min(v["bottom"], bottom[i])
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
        region = grow(z.geom_m, route.half_width + step / 2, quad_segs=FINE_QUAD_SEGS)
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
             now: datetime, approving: bool = False) -> dict[str, Any]:
    """Every violation of one route, the verdict, and what it was checked against."""
    pts, fr = sample(route.xyz, s.sample_step_m)
    g, src = ground.at_xy(pts[:, 0], pts[:, 1])
    limit = height_limit(drone_class, s)
    violations = (check_volume(route, s, now, approving)
                  + check_height(route, pts, fr, g, limit, s)
                  + check_buildings(route, obstacles, s)
                  + check_zones(route, zones, pts, fr, g, s.sample_step_m))
    counts = np.bincount(src, minlength=len(SOURCES))
    agl = pts[:, 2] - g
    notes = {}
    if counts[2]:
        notes["ground_note"] = f"{int(counts[2])} of {len(pts)} samples: {SEA_LEVEL_NOTE}"
    return {
        "verdict": verdict(violations),
        "violations": violations,
        "checked": {
            "obstacles": len(obstacles), "zones": len(zones), "samples": len(pts),
            "height_limit_m": limit,
            "margins": {"clearance_h_m": s.clearance_h_m, "clearance_v_m": s.clearance_v_m,
                        "half_width_m": route.half_width,
                        "vertical_half_m": route.vertical_half,
                        "zone_margin_m": s.sample_step_m / 2},
            "height_agl_m": {"min": round(float(agl.min()), 2),
                             "max": round(float(agl.max()), 2)},
            "ground_source": {name: int(n) for name, n in zip(SOURCES, counts, strict=True)
                              if n},
            **notes,
            "checked_at": now.isoformat(),
        },
    }
