"""What the checks read from the database: obstacles of the 3D city model, airspace zones,
and the city-model version a check ran against.

Each query narrows by an index (footprint GiST, zone geometry and validity GiST) to the
area around a route; the exact 3D tests happen in Python on those few rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import shapely
from sqlalchemy.ext.asyncio import AsyncConnection

from service.lowalt import store
from service.lowalt.geo import Frame

# obstacles with unknown heights count as reaching this high (ellipsoidal m): unknown means
# "cannot be overflown", never "is not there"
UNKNOWN_TOP = 10_000.0



@dataclass
class Obstacles:
    """City objects as prisms: metric footprints and their lowest and highest points."""

    ids: np.ndarray
    object_ids: list[str]
    types: list[str]
    footprints: np.ndarray  # shapely geometries, metric
    min_z: np.ndarray
    max_z: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> Obstacles:
        return cls(np.empty(0, np.int64), [], [], np.empty(0, object), np.empty(0),
                   np.empty(0))


@dataclass
class Zone:
    id: int
    code: str | None
    name: str
    zone_type: str
    geom_m: shapely.Geometry
    floor_m: float
    ceiling_m: float
    height_reference: str


def obstacles_from_rows(rows, frame: Frame) -> Obstacles:
    if not rows:
        return Obstacles.empty()
    fps = frame.geom_to_metric(shapely.from_wkb([r.wkb for r in rows]))
    lo = np.array([np.nan if r.min_z is None else r.min_z for r in rows], float)
    hi = np.array([np.nan if r.max_z is None else r.max_z for r in rows], float)
    lo = np.where(np.isnan(lo), -UNKNOWN_TOP, lo)
    hi = np.where(np.isnan(hi), UNKNOWN_TOP, hi)
    return Obstacles(np.array([r.id for r in rows], np.int64), [r.object_id for r in rows],
                     [r.type for r in rows], np.asarray(fps, dtype=object), lo, hi)


async def load_obstacles(conn: AsyncConnection, area_m: shapely.Geometry, frame: Frame,
                         types: tuple[str, ...]) -> Obstacles:
    area = shapely.to_wkb(frame.geom_to_lonlat(area_m))
    rows = (await conn.execute(store.OBSTACLES, {"types": list(types), "area": area})).all()
    return obstacles_from_rows(rows, frame)


async def load_zones(conn: AsyncConnection, area_m: shapely.Geometry, frame: Frame,
                     start: datetime, end: datetime) -> list[Zone]:
    area = shapely.to_wkb(frame.geom_to_lonlat(area_m))
    rows = (await conn.execute(store.ZONES_IN, {"area": area, "t0": start, "t1": end})).all()
    return [Zone(r.id, r.code, r.name, r.zone_type,
                 frame.geom_to_metric(shapely.from_wkb(r.wkb)), r.floor_m, r.ceiling_m,
                 r.height_reference) for r in rows]


async def city_model_version(conn: AsyncConnection) -> str:
    """Changes whenever city objects are added or superseded (both indexed look-ups)."""
    row = (await conn.execute(store.CITY_MODEL_VERSION)).one()
    if row.last_id is None:
        return "empty"
    return f"{row.last_id}@{row.last_change.isoformat()}"
