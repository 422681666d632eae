"""Telemetry ingest and conformance monitoring.

Each report is checked against the drone's route at that time: its active route, else an
approved route whose window (widened by the time margin) holds the report. Flags:

* ``outside_corridor``: outside the filed corridor polygon (what the operator promised to
  stay in), or farther from the centre line than the half-width;
* ``outside_altitude_band``: more than the vertical half-height above or below the centre
  line at the nearest point;
* ``outside_time_window``: flying on an active route outside its window;
* ``no_approved_route``: no active or approved route at all;
* ``above_height_limit``: higher above ground than the drone class's true-height limit
  (120 m, 50 m for micro drones), unless it flies, as filed, a route an authority approved
  (with an ``authorisation`` reference).

Height above ground comes from ``ground``; where no city model or survey gives the ground,
it is measured from sea level (the EGM96 geoid), and the answer and the live state say so
(``ground_reference``, ``ground_note``).

``silent`` is not stored: it is read-time (no report received for ``silent_after_s``).
A batch is all or nothing: one unknown drone and nothing is stored. A report stamped more than
``clock_ahead_s`` (5 s, the F3548 clock bound) ahead of the server clock is refused with
400: kept, it would stay the newest report while the real ones arrive, and hide them. A
state stamped that far ahead (stored before this check) is replaced by the next report.
Re-sent reports (same drone and time) replace the earlier ones. ``drone_state`` keeps the
newest report per drone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import shapely
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import BadRequest, Unprocessable
from service.core.partitions import ensure
from service.lowalt import store
from service.lowalt.geo import frame, grow, nearest_on_polyline, outer_radius
from service.lowalt.ground import SEA_LEVEL_NOTE, SOURCES, load_ground
from service.lowalt.schemas import TelemetryIn, check_in_area
from service.lowalt.settings import LowAltSettings
from service.lowalt.tables import TELEMETRY_PARTITIONS
from service.lowalt.validation import height_limit


def _route_for(routes: list[Any], t) -> tuple[Any | None, list[str]]:
    active = [r for r in routes if r.status == "active"]
    for r in active:
        if r.t0 <= t <= r.t1:
            return r, []
    # of a drone's successive flights (a fleet plan's), the widened windows overlap: the
    # one the report lies deepest inside is the one flown
    held = [r for r in routes if r.status == "approved" and r.t0 <= t <= r.t1]
    if held:
        return max(held, key=lambda r: min(t - r.t0, r.t1 - t)), []
    if active:
        return active[0], ["outside_time_window"]
    return None, ["no_approved_route"]


def conformance(points: list[TelemetryIn], routes: list[Any], s: LowAltSettings,
                margin: timedelta) -> list[tuple[int | None, list[str]]]:
    fr = frame(s.metric_crs)
    by_drone: dict[int, list[Any]] = {}
    for r in routes:
        by_drone.setdefault(r.drone_id, []).append(r)
    lines: dict[int, np.ndarray] = {}
    areas: dict[int, shapely.Geometry] = {}
    out = []
    for p in points:
        widened = [SimpleNamespace(**{**vars(r), "t0": r.t0 - margin, "t1": r.t1 + margin})
                   if r.status == "approved" else r for r in by_drone.get(p.drone_id, [])]
        route, flags = _route_for(widened, p.t)
        if route is not None:
            if route.id not in lines:
                ll = shapely.get_coordinates(shapely.from_wkb(route.wkb), include_z=True)
                lines[route.id] = fr.xyz(ll)
                # the default corridor's polygon lies inside the circle of its half-width by
                # up to 0.5 %: grown by as much, a point on the tube's edge is inside
                area = fr.geom_to_metric(shapely.from_wkb(route.corridor_wkb))
                areas[route.id] = grow(area, route.half_width_m * (
                    outer_radius(1.0, 8) - 1.0) + 0.01)
                shapely.prepare(areas[route.id])
            x, y = fr.to_metric(np.array([p.lon]), np.array([p.lat]))
            d, zc, _ = nearest_on_polyline(np.column_stack([x, y, [p.h]]), lines[route.id])
            if d[0] > route.half_width_m or not shapely.contains_xy(areas[route.id], x[0],
                                                                     y[0]):
                flags.append("outside_corridor")
            if abs(p.h - zc[0]) > route.vertical_half_m:
                flags.append("outside_altitude_band")
        out.append((route.id if route is not None else None, flags))
    return out


async def ingest(conn: AsyncConnection, points: list[TelemetryIn], s: LowAltSettings,
                 retention_days: int | None = None) -> dict[str, Any]:
    for i, p in enumerate(points):
        if p.t.tzinfo is None:
            raise Unprocessable(f"point {i}: t needs a time zone", point=i)
    now = datetime.now(UTC)
    ahead = [(i, (p.t - now).total_seconds()) for i, p in enumerate(points)
             if p.t > now + timedelta(seconds=s.clock_ahead_s)]
    if ahead:
        i, by = ahead[0]
        raise BadRequest(
            f"point {i}: t {points[i].t.isoformat()} is {by:.1f} s ahead of the server clock "
            f"({now.isoformat()}); at most {s.clock_ahead_s:g} s is accepted: check the "
            f"drone's or the ground station's clock; nothing was stored",
            point=i, ahead_s=round(by, 3), server_time=now.isoformat(),
            future_points=len(ahead))
    check_in_area(np.array([p.lon for p in points]), np.array([p.lat for p in points]),
                  s.metric_crs)
    ids = sorted({p.drone_id for p in points})
    classes = {r.id: r.klass for r in (await conn.execute(store.DRONE_CLASSES,
                                                          {"ids": ids})).all()}
    unknown = [i for i in ids if i not in classes]
    if unknown:
        raise Unprocessable(f"unknown drone(s) {unknown}: nothing was stored",
                            unknown_drones=unknown)
    # the day's partition exists almost always (made ahead): asked of the catalogue only
    # when a new day appears in this process
    await conn.run_sync(ensure, TELEMETRY_PARTITIONS, [p.t for p in points], retention_days)
    margin = timedelta(seconds=s.time_margin_s)
    tmin, tmax = min(p.t for p in points), max(p.t for p in points)
    routes = [SimpleNamespace(**r._mapping) for r in (await conn.execute(
        store.FLOWN_ROUTES, {"ids": ids, "t0": tmin - margin, "t1": tmax + margin})).all()]
    checked = conformance(points, routes, s, margin)
    # height above ground of every report, for the true-height limit and the state
    fr = frame(s.metric_crs)
    x, y = fr.to_metric(np.array([p.lon for p in points]), np.array([p.lat for p in points]))
    ground = await load_ground(conn, shapely.MultiPoint(np.column_stack([x, y])).buffer(1.0),
                               fr, s)
    g, src = ground.at_xy(x, y)
    permits = {r.id: r.authorisation for r in routes}
    rows = []
    for p, (rid, flags), gz, k in zip(points, checked, g, src, strict=True):
        agl = float(p.h - gz)
        limit = height_limit(classes[p.drone_id], s)
        # above the limit is allowed only on a route an authority approved, flown as filed
        authorised = rid is not None and permits.get(rid) and not flags
        if agl > limit and not authorised:
            flags.append("above_height_limit")
        rows.append({"drone_id": p.drone_id, "t": p.t, "lon": p.lon, "lat": p.lat, "h": p.h,
                     "speed_ms": p.speed_ms, "track_deg": p.track_deg,
                     "battery_pct": p.battery_pct, "route_id": rid, "flags": flags,
                     "height_agl_m": round(agl, 2), "ground_source": SOURCES[int(k)],
                     "ahead": timedelta(seconds=s.clock_ahead_s)})
    await conn.execute(store.RECORD_TELEMETRY, rows)
    # newest report per drone becomes its state, with its height above ground
    newest: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["drone_id"] not in newest or r["t"] >= newest[r["drone_id"]]["t"]:
            newest[r["drone_id"]] = r
    latest = list(newest.values())
    await conn.execute(store.RECORD_STATE, latest)
    flagged = [{"drone_id": r["drone_id"], "t": r["t"].isoformat(), "flags": r["flags"]}
               for r in rows if r["flags"]]
    heights = [{"drone_id": r["drone_id"], "t": r["t"].isoformat(),
                "height_agl_m": r["height_agl_m"], "ground_reference": r["ground_source"],
                **({"ground_note": SEA_LEVEL_NOTE} if r["ground_source"] == SOURCES[2]
                   else {})} for r in latest]
    return {"stored": len(rows), "drones": len(ids), "flagged": flagged, "latest": heights}
