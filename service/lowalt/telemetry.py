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

A batch costs two statements (:data:`store.TELEMETRY_CONTEXT`, then
:data:`store.RECORD_REPORTS` with one array per column) once this process has seen its
drones and their area: what does not change from one report to the next is kept per process
and per database, and that first statement says whether it is still true.

* a drone's live routes (centre line and corridor already in metres): kept while the
  identity of its routes (id, status and time of last change of each) is the same, so a
  route approved, activated, revised or ended is seen by the next report;
* the ground model of each :data:`GROUND_TILE_M` square tile (every ground source within
  ``ground_radius_m`` of the tile, so a point's ground is what a look-up around the point
  alone gives): kept while no city object is added or superseded, no dataset is added,
  changed or removed and no DTM is stored, and at most :data:`GROUND_TTL_S` (for a change
  none of these shows, such as objects ended without a successor).
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import BadRequest, Unprocessable
from service.core.partitions import ensure
from service.lowalt import store
from service.lowalt.geo import Frame, frame, grow, nearest_on_polyline, outer_radius
from service.lowalt.ground import SEA_LEVEL_NOTE, SOURCES, GroundModel, load_ground
from service.lowalt.schemas import TelemetryIn, check_in_area
from service.lowalt.settings import LowAltSettings
from service.lowalt.tables import TELEMETRY_PARTITIONS
from service.lowalt.validation import height_limit

#: side of the square tiles the ground model is kept by (metres of the metric CRS)
GROUND_TILE_M = 500.0
#: the longest a tile's ground model is kept, whatever the versions say (seconds); each tile
#: is kept between half of it and all of it, at random, so that tiles read together (a
#: fleet's first reports) are not all read again in the same second
GROUND_TTL_S = 120.0
# bounds on what one process keeps (least recently used out first)
_MAX_TILES = 512
_MAX_DRONES = 100_000


@dataclass(frozen=True)
class FlownRoute:
    """A live route as conformance reads it: centre line (x, y, h) and the corridor
    polygon, in metres, the polygon prepared."""

    id: int
    drone_id: int
    status: str
    t0: datetime
    t1: datetime
    half_width_m: float
    vertical_half_m: float
    authorisation: str | None
    line: np.ndarray
    area: shapely.Geometry


def _flown(row: Any, fr: Frame) -> FlownRoute:
    ll = shapely.get_coordinates(shapely.from_wkb(row.wkb), include_z=True)
    # the default corridor's polygon lies inside the circle of its half-width by up to
    # 0.5 %: grown by as much, a point on the tube's edge is inside
    area = grow(fr.geom_to_metric(shapely.from_wkb(row.corridor_wkb)),
                row.half_width_m * (outer_radius(1.0, 8) - 1.0) + 0.01)
    shapely.prepare(area)
    return FlownRoute(row.id, row.drone_id, row.status, row.t0, row.t1, row.half_width_m,
                      row.vertical_half_m, row.authorisation, fr.xyz(ll), area)


class _Kept:
    """What one process keeps for one database and one set of ground settings."""

    def __init__(self) -> None:
        self.routes: OrderedDict[int, tuple[Any, list[FlownRoute]]] = OrderedDict()
        # each tile's ground model and when it is to be read again
        self.tiles: OrderedDict[tuple[int, int], tuple[GroundModel, float]] = OrderedDict()
        self.ground_version: tuple[Any, ...] | None = None

    def ground_is(self, version: tuple[Any, ...]) -> None:
        """Forget the tiles when what the ground is made of changed."""
        if version != self.ground_version:
            self.tiles.clear()
            self.ground_version = version


_KEPT: dict[tuple[Any, ...], _Kept] = {}


def _kept(conn: AsyncConnection, s: LowAltSettings) -> _Kept:
    key = (str(conn.engine.url), s.metric_crs, s.ground_radius_m, tuple(s.ground_types))
    if key not in _KEPT:
        _KEPT[key] = _Kept()
    return _KEPT[key]


def _route_for(routes: list[FlownRoute], t: datetime, margin: timedelta
               ) -> tuple[FlownRoute | None, list[str]]:
    active = [r for r in routes if r.status == "active"]
    for r in active:
        if r.t0 <= t <= r.t1:
            return r, []
    # of a drone's successive flights (a fleet plan's), the widened windows overlap: the
    # one the report lies deepest inside is the one flown (an approved route's window is
    # widened by the time margin)
    held = [r for r in routes
            if r.status == "approved" and r.t0 - margin <= t <= r.t1 + margin]
    if held:
        return max(held, key=lambda r: min(t - r.t0, r.t1 - t)), []
    if active:
        return active[0], ["outside_time_window"]
    return None, ["no_approved_route"]


def conformance(points: list[TelemetryIn], routes: dict[int, list[FlownRoute]],
                x: np.ndarray, y: np.ndarray, margin: timedelta
                ) -> list[tuple[FlownRoute | None, list[str]]]:
    """Each report's route and flags; ``x``, ``y``: the reports' metric positions."""
    out = [_route_for(routes.get(p.drone_id, []), p.t, margin) for p in points]
    by_route: dict[int, list[int]] = {}
    for i, (route, _) in enumerate(out):
        if route is not None:
            by_route.setdefault(route.id, []).append(i)
    h = np.array([p.h for p in points])
    for idx in by_route.values():
        route = out[idx[0]][0]
        assert route is not None
        k = np.array(idx)
        # with heights: a climb or descent at one place is matched at the report's height
        d, zc, _ = nearest_on_polyline(np.column_stack([x[k], y[k], h[k]]), route.line)
        inside = shapely.contains_xy(route.area, x[k], y[k])
        for j, i in enumerate(idx):
            flags = out[i][1]
            if d[j] > route.half_width_m or not inside[j]:
                flags.append("outside_corridor")
            if abs(h[i] - zc[j]) > route.vertical_half_m:
                flags.append("outside_altitude_band")
    return out


async def _routes(conn: AsyncConnection, kept: _Kept, fingerprints: dict[int, Any],
                  fr: Frame) -> dict[int, list[FlownRoute]]:
    """The live routes of the drones, read again only for those whose routes changed."""
    stale = [d for d, fp in fingerprints.items()
             if d not in kept.routes or kept.routes[d][0] != fp]
    if stale:
        fresh: dict[int, list[FlownRoute]] = {d: [] for d in stale}
        for row in (await conn.execute(store.LIVE_ROUTES_OF, {"ids": stale})).all():
            fresh[row.drone_id].append(_flown(row, fr))
        for d, rs in fresh.items():
            kept.routes[d] = (fingerprints[d], rs)
    out = {}
    for d in fingerprints:
        kept.routes.move_to_end(d)
        out[d] = kept.routes[d][1]
    while len(kept.routes) > _MAX_DRONES:
        kept.routes.popitem(last=False)
    return out


def _empty(model: GroundModel) -> bool:
    return not len(model.xy) and not model.surveys and not model.dtms.grids


async def _ground(conn: AsyncConnection, kept: _Kept, x: np.ndarray, y: np.ndarray,
                  fr: Frame, s: LowAltSettings) -> tuple[np.ndarray, np.ndarray]:
    """Ground height and source index under each metric point, tile by tile."""
    tx, ty = np.floor(x / GROUND_TILE_M).astype(int), np.floor(y / GROUND_TILE_M).astype(int)
    g, src = np.empty(len(x)), np.empty(len(x), int)
    sea = np.zeros(len(x), bool)
    now = time.monotonic()
    for key in {(int(a), int(b)) for a, b in zip(tx, ty, strict=True)}:
        model, until = kept.tiles.get(key, (None, 0.0))
        if model is None or now > until:
            box = shapely.box(key[0] * GROUND_TILE_M, key[1] * GROUND_TILE_M,
                              (key[0] + 1) * GROUND_TILE_M, (key[1] + 1) * GROUND_TILE_M)
            model = await load_ground(conn, box, fr, s)
            kept.tiles[key] = (model, now + GROUND_TTL_S * random.uniform(0.5, 1.0))
        kept.tiles.move_to_end(key)
        here = (tx == key[0]) & (ty == key[1])
        if _empty(model):  # sea level: for all such tiles at once below (one geoid call)
            sea |= here
        else:
            g[here], src[here] = model.at_xy(x[here], y[here])
    if sea.any():
        g[sea], src[sea] = GroundModel(fr, s.ground_radius_m).at_xy(x[sea], y[sea])
    while len(kept.tiles) > _MAX_TILES:
        kept.tiles.popitem(last=False)
    return g, src


async def ingest(conn: AsyncConnection, points: list[TelemetryIn], s: LowAltSettings,
                 retention_days: int | None = None, autocommit: bool = False
                 ) -> dict[str, Any]:
    """Check and store a batch. ``conn`` may be in a transaction or in autocommit (say so:
    ``autocommit``); the batch is written by one statement either way."""
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
    lon, lat = np.array([p.lon for p in points]), np.array([p.lat for p in points])
    check_in_area(lon, lat, s.metric_crs)
    ids = sorted({p.drone_id for p in points})
    context = (await conn.execute(store.TELEMETRY_CONTEXT, {"ids": ids})).all()
    classes = {r.id: r.klass for r in context}
    unknown = [i for i in ids if i not in classes]
    if unknown:
        raise Unprocessable(f"unknown drone(s) {unknown}: nothing was stored",
                            unknown_drones=unknown)
    # the day's partition exists almost always (made ahead): asked of the catalogue only
    # when a new day appears in this process. In ``autocommit`` (the API's telemetry engine)
    # the lock ensure takes ends with its statement, so two writers can both try to make
    # the same partition: the loser looks again and finds it
    times = [p.t for p in points]
    try:
        await conn.run_sync(ensure, TELEMETRY_PARTITIONS, times, retention_days)
    except DBAPIError:
        if not autocommit:
            raise
        await conn.run_sync(ensure, TELEMETRY_PARTITIONS, times, retention_days)
    kept = _kept(conn, s)
    c = context[0]
    kept.ground_is((c.co_last_id, c.co_last_change, c.datasets, c.datasets_changed, c.dtms,
                    c.dtms_stored))
    fr = frame(s.metric_crs)
    x, y = fr.to_metric(lon, lat)
    routes = await _routes(conn, kept, {r.id: tuple(r.routes or ()) for r in context}, fr)
    checked = conformance(points, routes, x, y, timedelta(seconds=s.time_margin_s))
    # height above ground of every report, for the true-height limit and the state
    g, src = await _ground(conn, kept, x, y, fr, s)
    rows = []
    for p, (route, flags), gz, k in zip(points, checked, g, src, strict=True):
        agl = float(p.h - gz)
        limit = height_limit(classes[p.drone_id], s)
        # above the limit is allowed only on a route an authority approved, flown as filed
        authorised = route is not None and route.authorisation and not flags
        if agl > limit and not authorised:
            flags.append("above_height_limit")
        rows.append({"drone_id": p.drone_id, "t": p.t, "lon": p.lon, "lat": p.lat, "h": p.h,
                     "speed_ms": p.speed_ms, "track_deg": p.track_deg,
                     "battery_pct": p.battery_pct,
                     "route_id": route.id if route is not None else None, "flags": flags,
                     "height_agl_m": round(agl, 2), "ground_source": SOURCES[int(k)]})
    # a report sent twice in one batch: the later one is kept, as when sent again later;
    # the newest report per drone becomes its state, with its height above ground
    once = list({(r["drone_id"], r["t"]): r for r in rows}.values())
    newest: dict[int, dict[str, Any]] = {}
    for r in once:
        if r["drone_id"] not in newest or r["t"] >= newest[r["drone_id"]]["t"]:
            newest[r["drone_id"]] = r
    latest = list(newest.values())
    chosen = {id(r) for r in latest}
    arrays: dict[str, list[Any]] = {k: [r[k] for r in once] for k in once[0]}
    arrays["flags"] = [",".join(f) for f in arrays["flags"]]
    arrays["newest"] = [id(r) in chosen for r in once]
    await conn.execute(store.RECORD_REPORTS,
                       {**arrays, "ahead": timedelta(seconds=s.clock_ahead_s)})
    flagged = [{"drone_id": r["drone_id"], "t": r["t"].isoformat(), "flags": r["flags"]}
               for r in rows if r["flags"]]
    heights = [{"drone_id": r["drone_id"], "t": r["t"].isoformat(),
                "height_agl_m": r["height_agl_m"], "ground_reference": r["ground_source"],
                **({"ground_note": SEA_LEVEL_NOTE} if r["ground_source"] == SOURCES[2]
                   else {})} for r in latest]
    return {"stored": len(rows), "drones": len(ids), "flagged": flagged, "latest": heights}
