"""Planning as a service: load the area's city model, zones, ground and the approved flights
of the window, search, validate, check conflicts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import anyio
import numpy as np
import shapely
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import Unprocessable
from service.lowalt.checks import drone_class, find_conflicts
from service.lowalt.citymodel import city_model_version, load_obstacles, load_zones
from service.lowalt.conflicts import load_flights, time_reach
from service.lowalt.geo import corridor_polygon, frame
from service.lowalt.ground import load_ground
from service.lowalt.planning import NoPath, PlanProblem, plan
from service.lowalt.schemas import PlanIn, RouteVolume, check_in_area, check_window
from service.lowalt.settings import LowAltSettings
from service.lowalt.validation import check_volume, height_limit, validate


def _position(p: list[float], what: str) -> np.ndarray:
    if len(p) not in (2, 3):
        raise Unprocessable(f"{what} must be [lon, lat] or [lon, lat, h], got {len(p)} numbers")
    return np.array([*p, np.nan][:3], float)


def volume_from_path(path_m: np.ndarray, body: PlanIn, hw: float, vh: float,
                     s: LowAltSettings, window: Any = None) -> RouteVolume:
    fr = frame(s.metric_crs)
    w = window or body
    return RouteVolume(fr.lonlatz(path_m), path_m, hw, vh, corridor_polygon(path_m, hw),
                       w.start_time, w.end_time, body.priority, fr)


def _search(problem: PlanProblem, body: PlanIn, window: Any, klass: str, now: datetime,
            s: LowAltSettings) -> tuple[list[tuple[RouteVolume, dict[str, Any]]],
                                        dict[str, Any]]:
    """Plan, then validate the smoothed and the raw path: those that pass, best first."""
    path, raw, stats = plan(problem)
    result, passed = None, []
    for candidate in (path, raw):
        vol = volume_from_path(candidate, body, problem.half_width, problem.vertical_half, s,
                               window)
        result = validate(vol, problem.obstacles, problem.zones, problem.ground, klass, s,
                          now)
        if result["verdict"] == "accepted":
            passed.append((vol, result))
    if not passed:
        raise NoPath("no path: the planned path did not pass validation",
                     violations=result["violations"] if result else [])
    return passed, stats


async def plan_route(conn: AsyncConnection, body: PlanIn, s: LowAltSettings
                     ) -> dict[str, Any]:
    t0 = time.perf_counter()
    check_window(body.start_time, body.end_time)
    now = datetime.now(UTC)
    bad = check_volume(SimpleNamespace(start=body.start_time, end=body.end_time), s, now)
    if bad:
        raise Unprocessable(bad[0]["message"], violations=bad)
    klass = await drone_class(conn, body.drone_id)
    start, goal = _position(body.start, "start"), _position(body.goal, "goal")
    check_in_area(np.array([start[0], goal[0]]), np.array([start[1], goal[1]]),
                  s.metric_crs)
    fr = frame(s.metric_crs)
    sx, sy = fr.to_metric(np.array([start[0], goal[0]]), np.array([start[1], goal[1]]))
    hw = body.half_width_m or s.default_half_width_m
    vh = body.vertical_half_m or s.default_vertical_half_m
    pad = s.plan_margin_m + hw + s.clearance_h_m + 50
    box = shapely.box(sx.min() - pad, sy.min() - pad, sx.max() + pad, sy.max() + pad)
    ground = await load_ground(conn, box, fr, s)
    g, _ = ground.at_xy(sx, sy)
    for p, gz, k in ((start, g[0], 0), (goal, g[1], 1)):
        if np.isnan(p[2]):
            p[2] = gz + s.plan_default_agl_m
        if not -500 <= p[2] <= 10_000:
            raise Unprocessable(f"{('start', 'goal')[k]} height {p[2]:g} m is absurd")
    obstacles = await load_obstacles(conn, box, fr, s.obstacle_types)
    version = await city_model_version(conn)
    limit = height_limit(klass, s)
    duration = body.end_time - body.start_time
    latest = now + timedelta(days=s.max_days_ahead)
    depart = body.start_time
    for attempt in range(s.plan_max_shifts + 1):
        window = SimpleNamespace(start_time=depart, end_time=depart + duration)
        zones = await load_zones(conn, box, fr, window.start_time, window.end_time)
        # flights this one would have to yield to: equal or higher priority (what approval
        # refuses); lower ones are listed as yielding, as /validate does
        flights = [c for c in await load_flights(conn, box, fr, window.start_time,
                                                  window.end_time, s)
                   if c.priority >= body.priority]
        if attempt == 0:
            problem = PlanProblem(np.array([sx[0], sy[0], start[2]]),
                                  np.array([sx[1], sy[1], goal[2]]), hw, vh, limit,
                                  obstacles, zones, ground, s, flights)
        else:  # the grid of buildings and ground is kept; zones and flights change
            problem.zones, problem.flights = zones, flights
        try:
            passed, stats = await anyio.to_thread.run_sync(
                _search, problem, body, window, klass, now, s)
            for vol, result in passed:
                result["conflicts"] = await find_conflicts(conn, vol, s)
                if not any(c["blocking"] for c in result["conflicts"]):
                    break
            else:
                raise NoPath("no path: the planned path conflicts with approved flights",
                             conflicts=[c for c in result["conflicts"] if c["blocking"]])
            break
        except NoPath as e:
            # Approved flights may block every way in this window: depart when the first of
            # them (with both margins) is gone, as long as the caller allows the delay.
            later = min((c.end for c in flights), default=None)
            if later is not None:
                later += time_reach(s)
            if (later is None or attempt == s.plan_max_shifts or later > latest
                    or (later - body.start_time).total_seconds() > body.max_delay_s):
                extra = {**e.extra, "flights_in_the_way": len(flights)} if flights \
                    else e.extra
                raise Unprocessable(e.reason, **extra) from e
            depart = max(later, depart + timedelta(seconds=1))
    shift = (depart - body.start_time).total_seconds()
    stats["flights_avoided"] = len(flights)
    stats["departure_delay_s"] = round(shift, 1)
    if shift > 0:
        stats["note"] = (f"departs {shift:.0f} s after the start_time asked for: approved "
                         "flights blocked every way in that window")
    result["checked"]["city_model_version"] = version
    coords = [[round(float(x), 8), round(float(y), 8), round(float(z), 2)]
              for x, y, z in vol.lonlatz]
    filing = {"drone_id": body.drone_id, "name": body.name,
              "geometry": {"type": "LineString", "coordinates": coords},
              "half_width_m": hw, "vertical_half_m": vh,
              "start_time": window.start_time.isoformat(),
              "end_time": window.end_time.isoformat(),
              "priority": body.priority}
    stats["length_m"] = round(vol.length_m, 1)
    stats["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return {"route": filing, "validation": result, "plan": stats,
            "links": [{"rel": "file", "href": "/drone-routes", "method": "POST"}]}
