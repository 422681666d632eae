"""Height above ground: where the ground is, under a point.

Stored heights are WGS 84 ellipsoidal. The ground height (also ellipsoidal) under a point is
taken, in this order, from:

1. a survey's DTM (``service.terrain``): the terrain model made when a LiDAR survey was
   modelled, newest survey first where several cover the point;
2. the city model: the lowest points (``min_z``) of current city objects near the point
   (buildings stand on the ground, roads and terrain objects lie on it), interpolated by
   inverse distance from the four nearest within ``ground_radius_m``;
3. a LiDAR survey whose footprint covers the point: the survey's lowest point (a survey's
   minimum is ground or below it, so heights above ground come out high, never low);
4. sea level: the EGM96 geoid undulation at the point (what an orthometric height of 0 is
   on the ellipsoid; about -2.5 m in Longgang).

Each result says which it used (:data:`SOURCES`, by name; the indices are those of the
tuple, which lists the DTM last so that earlier indices keep their meaning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from scipy.spatial import cKDTree
from sqlalchemy.ext.asyncio import AsyncConnection

from service.lowalt import store
from service.lowalt.geo import Frame, grow
from service.lowalt.settings import LowAltSettings
from service.terrain.store import ground_stack
from tiler.terrain.grid import GridStack

SOURCES = ("city_model", "lidar_survey", "egm96_sea_level", "survey_dtm")
DTM = SOURCES.index("survey_dtm")
SEA_LEVEL_NOTE = (
    "no ground is known here (no survey DTM, no city object within the ground radius, no "
    "LiDAR survey): "
    "height above ground is measured from sea level (the EGM96 geoid), so it overstates "
    "the height wherever the terrain is above the sea")


def _geoid(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    try:
        from tiler.crs import geoid_undulation

        lon, lat = np.atleast_1d(lon), np.atleast_1d(lat)
        if lon.size == 1:  # pyproj takes one-element arrays for scalars (and numpy warns)
            return geoid_undulation(np.repeat(lon, 2), np.repeat(lat, 2))[:1]
        return geoid_undulation(lon, lat)
    except Exception:  # no EGM96 grid installed: the ellipsoid is the best left
        return np.zeros_like(np.asarray(lon, float))


@dataclass
class GroundModel:
    frame: Frame
    radius: float
    xy: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    z: np.ndarray = field(default_factory=lambda: np.empty(0))
    surveys: list[tuple[shapely.Geometry, float]] = field(default_factory=list)
    dtms: GridStack = field(default_factory=lambda: GridStack([]))

    def __post_init__(self) -> None:
        self._tree = cKDTree(self.xy) if len(self.xy) else None

    def at_xy(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground height and source index (into SOURCES) at metric points."""
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        h = np.full(x.shape, np.nan)
        src = np.full(x.shape, 2)
        if self.dtms.grids:
            lon, lat = self.frame.to_lonlat(x, y)
            h, which = self.dtms.sample(lon, lat)
            src[which >= 0] = DTM
        if self._tree is not None:
            k = min(4, len(self.xy))
            d, i = self._tree.query(np.column_stack([x, y]), k=k,
                                    distance_upper_bound=self.radius)
            d, i = d.reshape(len(x), k), i.reshape(len(x), k)
            ok = np.isfinite(d)
            w = np.where(ok, 1.0 / np.maximum(d, 1.0) ** 2, 0.0)
            zz = np.where(ok, self.z[np.minimum(i, len(self.z) - 1)], 0.0)
            has = ok.any(axis=1) & np.isnan(h)
            h[has] = (w[has] * zz[has]).sum(1) / w[has].sum(1)
            src[has] = 0
        for poly, zmin in self.surveys:
            todo = np.isnan(h)
            if not todo.any():
                break
            inside = todo & shapely.contains_xy(poly, x, y)
            h[inside] = zmin
            src[inside] = 1
        todo = np.isnan(h)
        if todo.any():
            lon, lat = self.frame.to_lonlat(x[todo], y[todo])
            h[todo] = _geoid(lon, lat)
        return h, src

    def at_lonlat(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        x, y = self.frame.to_metric(lon, lat)
        return self.at_xy(x, y)[0]


async def load_ground(conn: AsyncConnection, area_m: shapely.Geometry, frame: Frame,
                      settings: LowAltSettings) -> GroundModel:
    """The ground model for everything within ``ground_radius_m`` of a metric area."""
    area_ll = frame.geom_to_lonlat(grow(area_m, settings.ground_radius_m, quad_segs=2))
    wkb = shapely.to_wkb(area_ll)
    rows = (await conn.execute(store.GROUND_POINTS, {"types": list(settings.ground_types),
                                           "area": wkb})).all()
    xy = np.empty((0, 2))
    z = np.empty(0)
    if rows:
        arr = np.array([(r.lon, r.lat, r.z) for r in rows], float)
        x, y = frame.to_metric(arr[:, 0], arr[:, 1])
        xy, z = np.column_stack([x, y]), arr[:, 2]
    surveys = []
    for r in (await conn.execute(store.SURVEYS, {"area": wkb})).all():
        if r.z is not None and np.isfinite(r.z):
            surveys.append((frame.geom_to_metric(shapely.from_wkb(r.wkb)), float(r.z)))
    surveys.sort(key=lambda s: s[1])  # the lowest survey minimum wins where they overlap
    dtms = await ground_stack(conn, area_ll)
    return GroundModel(frame, settings.ground_radius_m, xy, z, surveys, dtms)
