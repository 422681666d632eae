"""4D conflict check against routes that hold airspace (approved and active).

Two routes conflict when their reservations overlap in time with each window widened by
``time_margin_s`` (so windows less than twice the margin apart conflict) and somewhere their
tubes (centre line +- half-width, which hold the filed corridors) come closer than
``separation_h_m`` horizontally while their volumes are less than ``separation_v_m`` apart
vertically.

One index scan (the partial GiST index over corridor, time window and altitude band of
approved/active routes) finds the candidates: the time window widened by twice the margin
(its own and the candidate's), the altitude band widened by the vertical separation, this
route's tube grown by the horizontal separation against the stored corridors. The exact
test then runs on those few: the new route is sampled every ``conflict_step_m`` and, for
each sample and each segment of a candidate, the part of the segment within reach is solved
for (a quadratic), and the candidate's heights along it are compared. Sampling can only
make the test stricter: the reach is grown by half a step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely
from sqlalchemy.ext.asyncio import AsyncConnection

from service.lowalt import store
from service.lowalt.geo import Frame, sample
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings


@dataclass
class Candidate:
    id: int
    drone_id: int
    name: str | None
    status: str
    priority: int
    half_width: float
    vertical_half: float
    xyz: np.ndarray
    start: datetime
    end: datetime


def time_reach(s: LowAltSettings) -> timedelta:
    """How far apart two windows may start to conflict: both are widened by the margin."""
    return timedelta(seconds=2 * s.time_margin_s)


def search_params(route: RouteVolume, s: LowAltSettings, self_id: int | None
                  ) -> dict[str, Any]:
    margin = time_reach(s)
    lo, hi = route.alt_band
    # grown like the exact test's reach (half a sample step more), so both agree
    area = route.frame.geom_to_lonlat(route.tube_m(s.separation_h_m + s.conflict_step_m / 2))
    return {"self": self_id or 0, "t0": route.start - margin, "t1": route.end + margin,
            "lo": lo - s.separation_v_m, "hi": hi + s.separation_v_m,
            "area": shapely.to_wkb(area)}


def candidates_from_rows(rows, frame: Frame) -> list[Candidate]:
    out = []
    for r in rows:
        ll = shapely.get_coordinates(shapely.from_wkb(r.wkb), include_z=True)
        out.append(Candidate(r.id, r.drone_id, r.name, r.status, r.priority, r.half_width_m,
                             r.vertical_half_m, frame.xyz(ll), r.t0, r.t1))
    return out


async def load_flights(conn: AsyncConnection, area_m: shapely.Geometry, frame: Frame,
                       start: datetime, end: datetime, s: LowAltSettings
                       ) -> list[Candidate]:
    """Approved and active flights whose corridor meets an area at any height, and whose
    window meets [start, end] when both are widened by the margin (what planning avoids)."""
    margin = time_reach(s)
    rows = (await conn.execute(store.CONFLICT_CANDIDATES, {
        "self": 0, "t0": start - margin, "t1": end + margin, "lo": -1e9, "hi": 1e9,
        "area": shapely.to_wkb(frame.geom_to_lonlat(area_m))})).all()
    return candidates_from_rows(rows, frame)


async def load_candidates(conn: AsyncConnection, route: RouteVolume, s: LowAltSettings,
                          self_id: int | None = None) -> list[Candidate]:
    rows = (await conn.execute(store.CONFLICT_CANDIDATES, search_params(route, s, self_id))).all()
    return candidates_from_rows(rows, route.frame)


def _within_reach(pts: np.ndarray, line: np.ndarray, reach: float):
    """Per point (n, 2+) and segment of the polyline (m, 3): whether part of the segment is
    within ``reach`` horizontally, and the lowest and highest height of that part."""
    p = pts[:, None, :2]
    a, d = line[None, :-1, :2], line[None, 1:, :2] - line[None, :-1, :2]
    za, dz = line[None, :-1, 2], line[None, 1:, 2] - line[None, :-1, 2]
    l2 = (d * d).sum(-1)
    w = a - p
    b = (d * w).sum(-1)
    c = (w * w).sum(-1) - reach * reach
    flat = l2 < 1e-12  # a vertical segment: within reach everywhere or nowhere
    l2s = np.where(flat, 1.0, l2)
    disc = b * b - l2s * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    r0, r1 = (-b - sq) / l2s, (-b + sq) / l2s  # where the segment's line is within reach
    t0 = np.where(flat, 0.0, np.clip(r0, 0.0, 1.0))
    t1 = np.where(flat, 1.0, np.clip(r1, 0.0, 1.0))
    near = np.where(flat, c <= 0, (disc >= 0) & (r1 >= 0.0) & (r0 <= 1.0))
    z0, z1 = za + t0 * dz, za + t1 * dz
    return near, np.minimum(z0, z1), np.maximum(z0, z1), a, d, b, l2s, p


def heights_within_reach(pts: np.ndarray, line: np.ndarray, reach: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """For points (n, 2+): the lowest and highest height of the polyline's parts within
    ``reach`` horizontally (+inf, -inf where none is)."""
    near, zlo, zhi = _within_reach(pts, line, reach)[:3]
    return (np.where(near, zlo, np.inf).min(axis=1), np.where(near, zhi, -np.inf).max(axis=1))


def tube_clash(pts: np.ndarray, line: np.ndarray, reach: float, vsep: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sample points (n, 3) against a polyline (m, 3): whether each point has part of
    the line within ``reach`` horizontally and less than ``vsep`` away vertically there,
    with the horizontal distance and the vertical gap."""
    near, zlo, zhi, a, d, b, l2s, p = _within_reach(pts, line, reach)
    pz = pts[:, 2][:, None]
    gap = np.where(pz < zlo, zlo - pz, np.where(pz > zhi, pz - zhi, 0.0))
    gap = np.where(near, gap, np.inf)
    tc = np.clip(-b / l2s, 0.0, 1.0)
    q = a + tc[..., None] * d
    hdist = np.hypot(*(p - q).transpose(2, 0, 1))
    clash = near & (gap < vsep)
    return clash.any(axis=1), np.where(clash, hdist, np.inf).min(axis=1), gap.min(axis=1)


def refine(route: RouteVolume, cands: list[Candidate], s: LowAltSettings,
           self_priority: int | None = None) -> list[dict[str, Any]]:
    """The candidates that really conflict, each with where along the new route."""
    if not cands:
        return []
    pts, fr = sample(route.xyz, s.conflict_step_m)
    prio = route.priority if self_priority is None else self_priority
    out = []
    for c in cands:
        reach = route.half_width + c.half_width + s.separation_h_m + s.conflict_step_m / 2
        vsep = route.vertical_half + c.vertical_half + s.separation_v_m
        # only samples near the candidate's bounding box can clash
        lo, hi = c.xyz[:, :2].min(0) - reach, c.xyz[:, :2].max(0) + reach
        near = np.flatnonzero(np.all((pts[:, :2] >= lo) & (pts[:, :2] <= hi), axis=1))
        if near.size == 0:
            continue
        hit, hdist, _ = tube_clash(pts[near], c.xyz, reach, vsep)
        if not hit.any():
            continue
        idx = near[hit]
        i0 = int(idx[0])
        lon, lat = route.frame.to_lonlat(pts[i0:i0 + 1, 0], pts[i0:i0 + 1, 1])
        overlap0 = max(route.start, c.start)
        overlap1 = min(route.end, c.end)
        out.append({
            "route_id": c.id, "drone_id": c.drone_id, "name": c.name, "status": c.status,
            "priority": c.priority, "blocking": c.priority >= prio,
            "from_fraction": round(float(fr[i0]), 5),
            "to_fraction": round(float(fr[int(idx[-1])]), 5),
            "point": [round(float(lon[0]), 7), round(float(lat[0]), 7),
                      round(float(pts[i0, 2]), 2)],
            "horizontal_m": round(float(max(hdist[hit].min() - route.half_width
                                            - c.half_width, 0.0)), 2),
            "time_overlap": [overlap0.isoformat(), overlap1.isoformat()]
            if overlap0 < overlap1 else None,
            "message": f"closer than {s.separation_h_m:g} m horizontally and "
                       f"{s.separation_v_m:g} m vertically to route {c.id} "
                       f"(priority {c.priority}) while both hold the airspace"})
    return out


def brute_force(route: RouteVolume, all_routes: list[Candidate], s: LowAltSettings
                ) -> list[dict[str, Any]]:
    """The same answer without any index: time, altitude and the exact test on every route
    (the baseline the benchmark compares with)."""
    margin = time_reach(s)
    lo, hi = route.alt_band
    keep = [c for c in all_routes
            if c.start < route.end + margin and c.end > route.start - margin
            and c.xyz[:, 2].min() - c.vertical_half < hi + s.separation_v_m
            and c.xyz[:, 2].max() + c.vertical_half > lo - s.separation_v_m]
    return refine(route, keep, s)
