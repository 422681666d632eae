"""Telemetry simulators: drones flying loops over the district, or flying a fleet plan's
reserved routes, reporting at a fixed rate.

``FleetSimulator`` (the live-drones benchmark; the demo district until its route network and
plan are ready): each drone flies a circle of its own (centre, radius, speed, height and
direction drawn from a seeded generator) in the local metric frame, with no route, so the
conformance monitor flags it.

``PlanSimulator`` (the demo district): each drone flies its reserved flights exactly as
reserved, along the route's points at the times of the reservation's timeline, and stands
at the end of its last flight (on the pad, or at the task it works at) for a while after
landing and before taking off, within the time margin conformance allows around a route.
Between flights a drone parked longer reports nothing (a drone on the pad is off).

``reports`` gives every reporting drone's report at a time, as the ``/telemetry`` body
expects them (WGS 84 lon/lat, ellipsoidal height).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from service.lowalt.geo import frame


@dataclass
class FleetSimulator:
    drone_ids: list[int]
    centre_lon: float = 114.25
    centre_lat: float = 22.72
    spread_m: float = 2500.0
    metric_crs: str = "EPSG:4547"
    seed: int = 7

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        n = len(self.drone_ids)
        self._fr = frame(self.metric_crs)
        cx, cy = self._fr.to_metric(np.array([self.centre_lon]), np.array([self.centre_lat]))
        self._cx = cx[0] + rng.uniform(-self.spread_m, self.spread_m, n)
        self._cy = cy[0] + rng.uniform(-self.spread_m, self.spread_m, n)
        self._r = rng.uniform(150.0, 600.0, n)
        self._speed = rng.uniform(8.0, 15.0, n)
        self._h = rng.uniform(50.0, 100.0, n)  # ellipsoidal, m (the geoid is ~-2.5 m here)
        self._phase = rng.uniform(0, 2 * np.pi, n)
        self._dir = rng.choice([-1.0, 1.0], n)

    def reports(self, t: datetime, battery_pct: float = 80.0) -> list[dict[str, Any]]:
        """Every drone's report at ``t`` (time-zone aware)."""
        s = t.timestamp()
        angle = self._phase + self._dir * self._speed * s / self._r
        x = self._cx + self._r * np.cos(angle)
        y = self._cy + self._r * np.sin(angle)
        lon, lat = self._fr.to_lonlat(x, y)
        # the track is the tangent of the circle in the flying direction (grid north is
        # close enough to true north over the district)
        track = (np.degrees(np.arctan2(-np.sin(angle) * self._dir,
                                       np.cos(angle) * self._dir)) + 360) % 360
        stamp = t.isoformat()
        return [{"drone_id": d, "t": stamp, "lon": float(lon[i]), "lat": float(lat[i]),
                 "h": float(self._h[i]), "speed_ms": float(self._speed[i]),
                 "track_deg": float(track[i]), "battery_pct": battery_pct}
                for i, d in enumerate(self.drone_ids)]


@dataclass
class Flight:
    """One reserved flight: its drone, departure, the seconds after departure at which it is
    at each point, and the points ([lon, lat, h], WGS 84 ellipsoidal)."""

    drone_id: int
    departure: datetime
    times_s: np.ndarray
    lonlath: np.ndarray

    @property
    def arrival(self) -> datetime:
        return self.departure + timedelta(seconds=float(self.times_s[-1]))


@dataclass
class PlanSimulator:
    flights: list[Flight]
    #: how long a drone reports standing at the end of a flight, or before its next one
    linger_s: float = 60.0
    _by_drone: dict[int, list[Flight]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for f in sorted(self.flights, key=lambda f: f.departure):
            self._by_drone.setdefault(f.drone_id, []).append(f)

    def extended(self, other: PlanSimulator, since: datetime | None = None) -> PlanSimulator:
        """These flights and another plan's, without those landed before ``since``."""
        keep = [f for f in self.flights if since is None
                or f.arrival + timedelta(seconds=self.linger_s) >= since]
        return PlanSimulator([*keep, *other.flights], self.linger_s)

    @property
    def end(self) -> datetime | None:
        return max((f.arrival for f in self.flights), default=None)

    def _at(self, f: Flight, s: float) -> tuple[np.ndarray, float, float]:
        """Position, ground speed and track ``s`` seconds after the departure."""
        t = f.times_s
        k = min(max(bisect_right(t.tolist(), s) - 1, 0), len(t) - 2) if len(t) > 1 else 0
        if len(t) < 2:
            return f.lonlath[0], 0.0, 0.0
        span = t[k + 1] - t[k]
        u = 0.0 if span <= 0 else min(max((s - t[k]) / span, 0.0), 1.0)
        a, b = f.lonlath[k], f.lonlath[k + 1]
        p = a + u * (b - a)
        # metres per degree near the district: enough for a speed and a track
        dx = (b[0] - a[0]) * 111_320 * np.cos(np.radians(a[1]))
        dy = (b[1] - a[1]) * 110_574
        speed = float(np.hypot(dx, dy) / span) if span > 0 else 0.0
        track = float((np.degrees(np.arctan2(dx, dy)) + 360) % 360) if speed > 0 else 0.0
        return p, speed, track

    def reports(self, t: datetime, battery_pct: float = 80.0) -> list[dict[str, Any]]:
        out = []
        stamp = t.isoformat()
        for drone, flights in self._by_drone.items():
            where = None
            for f in flights:
                s = (t - f.departure).total_seconds()
                if 0 <= s <= f.times_s[-1]:
                    where = self._at(f, s)
                    break
                if -self.linger_s <= s < 0:
                    where = (f.lonlath[0], 0.0, 0.0)
                elif 0 < s - f.times_s[-1] <= self.linger_s:
                    where = (f.lonlath[-1], 0.0, 0.0)
            if where is None:
                continue
            p, speed, track = where
            out.append({"drone_id": drone, "t": stamp, "lon": float(p[0]), "lat": float(p[1]),
                        "h": float(p[2]), "speed_ms": speed, "track_deg": track,
                        "battery_pct": battery_pct})
        return out
