"""Request bodies, and the checks that turn a body into a route volume or a 422.

Pydantic refuses wrong types, NaN and infinities (``allow_inf_nan=False``); the checks here
refuse what is well typed but still not a flight: fewer than two distinct points, absurd
heights, reversed or naive times, a corridor that is not a valid polygon around the line,
coordinates outside the area the metric CRS is good for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import shapely
from pydantic import BaseModel, ConfigDict, Field
from pyproj import CRS

from service.core.errors import Unprocessable
from service.core.instants import WorkingDatetime
from service.lowalt.geo import (
    Frame,
    corridor_polygon,
    frame,
    horizontal_lengths,
    reach_from_line,
    tube,
)
from service.lowalt.settings import LowAltSettings

# ellipsoidal heights a drone can have: the Dead Sea shore is at about -430 m, and
# nothing that files a low-altitude route flies 10 km up
MIN_H, MAX_H = -500.0, 10_000.0
MAX_POINTS = 10_000
MAX_LENGTH_M = 300_000.0
MAX_HALF_WIDTH_M = 500.0
# a corridor drawn by another tool's buffer may put its vertices a little outside the circle
# (1 / cos(pi / 32) is 0.5 % at 8 segments a quarter): such a corridor still matches its width
CORRIDOR_TOLERANCE = 1.01
# a corridor narrower than GNSS positioning is no corridor; a width of 1e-320 m buffered the
# line into an empty polygon, and the airspace lock's cells became NaN
MIN_HALF_M = 0.5

Position = list[float]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LineGeometry(Strict):
    type: Literal["LineString"]
    coordinates: list[Position]


class PolygonGeometry(Strict):
    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any]


class DroneIn(Strict):
    serial: str = Field(min_length=1, max_length=64)
    operator: str = Field(min_length=1, max_length=200)
    drone_class: Literal["micro", "light", "small", "medium", "large"] = Field(alias="class")
    model: str | None = Field(None, max_length=200)
    max_speed_ms: float | None = Field(None, gt=0, le=150)


class ZoneIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    code: str | None = Field(None, max_length=64)
    zone_type: Literal["prohibited", "needs_authorisation", "conditional"]
    geometry: PolygonGeometry
    floor_m: float = Field(ge=-500, le=20_000)
    ceiling_m: float = Field(ge=-500, le=20_000)
    height_reference: Literal["agl", "wgs84"] = "agl"
    valid_from: WorkingDatetime | None = None
    valid_to: WorkingDatetime | None = None
    reason: str | None = Field(None, max_length=2000)
    authority: str | None = Field(None, max_length=200)
    conditions: str | None = Field(None, max_length=2000)


class RouteIn(Strict):
    drone_id: int
    name: str | None = Field(None, max_length=200)
    geometry: LineGeometry
    height_reference: Literal["wgs84", "agl"] = Field(
        "wgs84", description="Z of the coordinates: WGS 84 ellipsoidal, or above ground")
    half_width_m: float | None = Field(
        None, ge=MIN_HALF_M, le=MAX_HALF_WIDTH_M,
        description="horizontal half-width of the corridor (m); default 10, or the reach of "
                    "`corridor` when one is given")
    vertical_half_m: float | None = Field(None, ge=MIN_HALF_M, le=200)
    corridor: PolygonGeometry | None = Field(
        None, description="horizontal corridor; default: the line buffered by half_width_m. "
                          "Every check uses a tube around the line that holds all of it: "
                          "its half-width is the corridor's reach (the largest distance of "
                          "any of its points from the line, not only its vertices). A "
                          "corridor reaching farther than a given half_width_m (1 % + 0.5 m "
                          "tolerance) or than 500 m is refused with 422")
    start_time: WorkingDatetime
    end_time: WorkingDatetime
    priority: int = Field(0, ge=0, le=9)


class PlanIn(Strict):
    drone_id: int
    start: Position = Field(description="[lon, lat] or [lon, lat, h] (h ellipsoidal)")
    goal: Position
    start_time: WorkingDatetime
    end_time: WorkingDatetime
    half_width_m: float | None = Field(None, ge=MIN_HALF_M, le=500)
    vertical_half_m: float | None = Field(None, ge=MIN_HALF_M, le=200)
    priority: int = Field(0, ge=0, le=9)
    name: str | None = Field(None, max_length=200)
    max_delay_s: float = Field(
        3600, ge=0, le=86_400,
        description="how much later than start_time the plan may depart when approved "
                    "flights block every way in the window asked for (the answer's route "
                    "has the window it found, plan.departure_delay_s says by how much); "
                    "0: never later")


class TelemetryIn(Strict):
    drone_id: int
    t: WorkingDatetime
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    h: float = Field(ge=MIN_H, le=MAX_H, description="WGS 84 ellipsoidal height (m)")
    speed_ms: float | None = Field(None, ge=0, le=150)
    track_deg: float | None = Field(None, ge=0, le=360)
    battery_pct: float | None = Field(None, ge=0, le=100)


class TelemetryBatch(Strict):
    points: list[TelemetryIn] = Field(min_length=1, max_length=10_000)


@dataclass
class RouteVolume:
    """A route as the checks see it: lon/lat/h and metric x/y/h, corridor, window."""

    lonlatz: np.ndarray
    xyz: np.ndarray
    half_width: float
    vertical_half: float
    corridor_m: shapely.Polygon
    start: WorkingDatetime
    end: WorkingDatetime
    priority: int
    frame: Frame

    @property
    def length_m(self) -> float:
        return float(horizontal_lengths(self.xyz)[-1])

    @property
    def alt_band(self) -> tuple[float, float]:
        return (float(self.xyz[:, 2].min() - self.vertical_half),
                float(self.xyz[:, 2].max() + self.vertical_half))

    def tube_m(self, extra: float = 0.0) -> shapely.Geometry:
        """Everything within half-width + ``extra`` of the centre line (holds the corridor):
        the area every check and search uses."""
        return tube(self.xyz, self.half_width, extra)

    @property
    def corridor_ll(self) -> shapely.Polygon:
        return self.frame.geom_to_lonlat(self.corridor_m)


def aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise Unprocessable(f"{what} needs a time zone (e.g. 2026-05-01T10:00:00+08:00)")
    return t


def check_window(start: datetime, end: datetime) -> None:
    aware(start, "start_time")
    aware(end, "end_time")
    if end <= start:
        raise Unprocessable(f"end_time {end.isoformat()} is not after start_time "
                            f"{start.isoformat()}")


@lru_cache(maxsize=8)
def _area_of_use(crs: str) -> tuple[float, float, float, float] | None:
    area = CRS.from_user_input(crs).area_of_use
    return None if area is None else (area.west, area.south, area.east, area.north)


def check_in_area(lon: np.ndarray, lat: np.ndarray, crs: str) -> None:
    if np.size(lon) == 0 or np.size(lat) == 0:
        raise Unprocessable("no coordinates: a position is [longitude, latitude] in degrees")
    if not (np.all(np.abs(lon) <= 180) and np.all(np.abs(lat) <= 90)):
        raise Unprocessable("coordinates must be [longitude, latitude, height] in degrees")
    area = _area_of_use(crs)
    if area is None:
        return
    w, s, e, n = area
    # half a degree of slack: the projection stays metric well beyond its nominal zone
    if lon.min() < w - 0.5 or lon.max() > e + 0.5 or lat.min() < s - 0.5 or lat.max() > n + 0.5:
        raise Unprocessable(
            f"coordinates lie outside the area of the metric CRS {crs} "
            f"(lon {w}..{e}, lat {s}..{n}); is the order [longitude, latitude]?")


def parse_positions(coords: list[Position], need_z: bool) -> np.ndarray:
    if len(coords) < 2:
        raise Unprocessable(f"a route needs at least two points, got {len(coords)}")
    if len(coords) > MAX_POINTS:
        raise Unprocessable(f"a route has at most {MAX_POINTS} points, got {len(coords)}")
    for i, c in enumerate(coords):
        if len(c) != 3 and (need_z or len(c) != 2):
            raise Unprocessable(f"point {i} must be [lon, lat, height], got {len(c)} numbers")
    return np.array([c if len(c) == 3 else [*c, np.nan] for c in coords], dtype=float)


def polygon_from(geojson: PolygonGeometry, what: str) -> shapely.Geometry:
    try:
        geom = shapely.geometry.shape(geojson.model_dump())
    except Exception as exc:  # shapely raises several types for malformed rings
        raise Unprocessable(f"{what} is not a polygon: {exc}") from exc
    if geom.is_empty:
        raise Unprocessable(f"{what} is empty")
    if not geom.is_valid:
        raise Unprocessable(f"{what} is not a valid polygon: {shapely.is_valid_reason(geom)}")
    if shapely.get_coordinate_dimension(geom) != 2 and geom.has_z:
        geom = shapely.force_2d(geom)
    return geom


def route_volume(body: RouteIn, settings: LowAltSettings, ground=None) -> RouteVolume:
    """Check a filed route's shape and make its volume; ``ground(lon, lat) -> h`` turns
    heights above ground into ellipsoidal ones when the body says they are AGL."""
    check_window(body.start_time, body.end_time)
    pts = parse_positions(body.geometry.coordinates, need_z=True)
    check_in_area(pts[:, 0], pts[:, 1], settings.metric_crs)
    if body.height_reference == "agl":
        if np.any(pts[:, 2] < -100) or np.any(pts[:, 2] > 3000):
            raise Unprocessable("heights above ground must lie between -100 and 3000 m")
        if ground is None:
            raise Unprocessable("heights above ground cannot be converted here")
        pts[:, 2] = pts[:, 2] + ground(pts[:, 0], pts[:, 1])
    bad = np.flatnonzero((pts[:, 2] < MIN_H) | (pts[:, 2] > MAX_H))
    if bad.size:
        i = int(bad[0])
        raise Unprocessable(f"point {i} has an absurd height {pts[i, 2]:g} m (WGS 84 "
                            f"ellipsoidal heights must lie between {MIN_H:g} and {MAX_H:g})",
                            point=i)
    fr = frame(settings.metric_crs)
    xyz = fr.xyz(pts)
    if np.all(np.linalg.norm(xyz - xyz[0], axis=1) < 0.01):
        raise Unprocessable("a route needs at least two distinct points")
    length = horizontal_lengths(xyz)[-1]
    if length > MAX_LENGTH_M:
        raise Unprocessable(f"a route of {length / 1000:.0f} km is longer than "
                            f"{MAX_LENGTH_M / 1000:.0f} km")
    hw = body.half_width_m or settings.default_half_width_m
    vh = body.vertical_half_m or settings.default_vertical_half_m
    if body.corridor is not None:
        poly_ll = polygon_from(body.corridor, "corridor")
        if not isinstance(poly_ll, shapely.Polygon):
            raise Unprocessable("corridor must be one Polygon")
        corridor = fr.geom_to_metric(poly_ll)
        if not corridor.is_valid or corridor.area <= 0:
            raise Unprocessable("corridor is not a valid polygon with an area")
        if not corridor.buffer(0.01).covers(shapely.LineString(xyz[:, :2])):
            raise Unprocessable("corridor does not contain the route's centre line")
        # The checks treat the volume as a tube around the line, and the corridor is what
        # the operator promised to stay in: the tube must hold all of it, so its half-width
        # is at least the corridor's true reach (not a distance at vertices only).
        reach = reach_from_line(corridor, xyz)
        if reach > MAX_HALF_WIDTH_M:
            raise Unprocessable(
                f"corridor reaches {reach:.0f} m from the centre line; at most "
                f"{MAX_HALF_WIDTH_M:g} m is allowed (file the route in parts)",
                corridor_reach_m=round(reach, 2))
        given = body.half_width_m
        if given is not None and reach > given * CORRIDOR_TOLERANCE + 0.5:
            raise Unprocessable(
                f"corridor reaches {reach:.1f} m from the centre line, but half_width_m says "
                f"{given:g} m: give a corridor within {given:g} m of the line, or leave "
                f"half_width_m out (the checks then use the corridor's reach)",
                corridor_reach_m=round(reach, 2))
        hw = max(hw, reach)
    else:
        corridor = corridor_polygon(xyz, hw)
    return RouteVolume(pts, xyz, hw, vh, corridor, body.start_time, body.end_time,
                       body.priority, fr)
