"""A telemetry simulator: drones flying loops over the district, reporting at a fixed rate.

Used by the live-drones benchmark and the demo district. Each drone flies a circle of its own
(centre, radius, speed, height and direction drawn from a seeded generator) in the local
metric frame; :meth:`FleetSimulator.reports` gives every drone's report at a time, as the
``/telemetry`` body expects them (WGS 84 lon/lat, ellipsoidal height).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
