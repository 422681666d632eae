"""A small test city: metric offsets around a Longgang origin, buildings as real
city_objects rows, drones and routes through the API."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import text

from service.core.db import sync_engine
from service.lowalt.geo import frame
from tiler.crs import geoid_undulation

ORIGIN = (114.25, 22.72)
# the test city lies at sea level: ground = the EGM96 geoid on the ellipsoid (about -2.5 m),
# the same as the service's fallback, so every ground source agrees
GROUND = float(geoid_undulation(np.array([ORIGIN[0]] * 2), np.array([ORIGIN[1]] * 2))[0])
_serials = itertools.count(1)


def now() -> datetime:
    return datetime.now(UTC)


def window(start_min: float = 10, minutes: float = 30) -> dict[str, str]:
    t0 = now() + timedelta(minutes=start_min)
    return {"start_time": t0.isoformat(), "end_time": (t0 + timedelta(minutes=minutes))
            .isoformat()}


class Local:
    """Metric x/y (m) east and north of an origin placed ``east_km`` east of ORIGIN."""

    def __init__(self, east_km: float = 0.0, north_km: float = 0.0) -> None:
        self.fr = frame("EPSG:4547")
        ox, oy = self.fr.to_metric(np.array([ORIGIN[0]]), np.array([ORIGIN[1]]))
        self.ox, self.oy = float(ox[0]) + east_km * 1000, float(oy[0]) + north_km * 1000

    def ll(self, x: float, y: float) -> list[float]:
        lon, lat = self.fr.to_lonlat(np.array([self.ox + x]), np.array([self.oy + y]))
        return [float(lon[0]), float(lat[0])]

    def line(self, pts: list[tuple[float, float, float]]) -> dict[str, Any]:
        """A GeoJSON LineString from (x, y, height above the test ground)."""
        return {"type": "LineString",
                "coordinates": [[*self.ll(x, y), GROUND + h] for x, y, h in pts]}

    def polygon(self, x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
        ring = [self.ll(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        return {"type": "Polygon", "coordinates": [ring]}

    def wkt(self, x0: float, y0: float, x1: float, y1: float) -> str:
        ring = ", ".join(f"{lon} {lat}" for lon, lat in (
            self.ll(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))))
        return f"MULTIPOLYGON((({ring})))"


class City:
    """Buildings written straight into city_objects, as an ingest would leave them."""

    def __init__(self, db_url: str) -> None:
        self.engine = sync_engine(db_url)
        with self.engine.begin() as conn:
            self.dataset = conn.execute(text(
                "INSERT INTO datasets (kind, name, status) VALUES ('cityjson', 'test city',"
                " 'ready') RETURNING id")).scalar_one()

    def building(self, local: Local, object_id: str, box: tuple[float, float, float, float],
                 height: float, ground: float = GROUND, kind: str = "Building") -> int:
        with self.engine.begin() as conn:
            return conn.execute(text(
                "INSERT INTO city_objects (object_id, dataset_id, type, geom, footprint,"
                " height, min_z, max_z) SELECT :oid, :ds, :kind,"
                " ST_Translate(ST_Force3DZ(f), 0, 0, :top), f, :height, :ground, :top"
                " FROM (SELECT ST_GeomFromText(:wkt, 4326) AS f) s RETURNING id"),
                {"oid": object_id, "ds": self.dataset, "kind": kind, "wkt": local.wkt(*box),
                 "height": height, "ground": ground, "top": ground + height}).scalar_one()

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def drone(api, headers, klass: str = "light") -> int:
    r = api.post("/drones", json={"serial": f"SN-{next(_serials)}-{now().timestamp()}",
                                  "operator": "Longgang test ops", "class": klass},
                 headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def route_body(drone_id: int, geometry: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"drone_id": drone_id, "geometry": geometry, **window(), **extra}


def file(api, headers, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/drone-routes", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def rules(result: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in result["violations"]]
