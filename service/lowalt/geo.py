"""Lon/lat <-> local metric coordinates, and polyline arithmetic in metres.

Routes arrive and are stored in EPSG:4326 with ellipsoidal Z; distances, buffers and
clearances are computed in the configured metric CRS (default EPSG:4547, Gauss-Kruger CM 114E,
which covers Longgang with a scale error well under 0.1 %). Transformers are always_xy:
EPSG:4547 is northing-first, and getting that wrong moves a city by thousands of km.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry


@lru_cache(maxsize=8)
def _transformers(crs: str) -> tuple[Transformer, Transformer]:
    return (Transformer.from_crs("EPSG:4326", crs, always_xy=True),
            Transformer.from_crs(crs, "EPSG:4326", always_xy=True))


class Frame:
    """One metric frame: conversions of arrays and shapely geometries both ways."""

    def __init__(self, crs: str) -> None:
        self.crs = crs
        self._to_m, self._to_ll = _transformers(crs)

    def to_metric(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _transform(self._to_m, lon, lat)

    def to_lonlat(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _transform(self._to_ll, x, y)

    def xyz(self, lonlatz: np.ndarray) -> np.ndarray:
        """(n, 3) lon, lat, h -> (n, 3) x, y, h."""
        x, y = self.to_metric(lonlatz[:, 0], lonlatz[:, 1])
        return np.column_stack([x, y, lonlatz[:, 2]])

    def lonlatz(self, xyz: np.ndarray) -> np.ndarray:
        lon, lat = self.to_lonlat(xyz[:, 0], xyz[:, 1])
        return np.column_stack([lon, lat, xyz[:, 2]])

    def geom_to_metric(self, geom):  # shapely geometry or array of them, 2D out
        return shapely.transform(geom, lambda c: np.column_stack(self.to_metric(c[:, 0],
                                                                                c[:, 1])))

    def geom_to_lonlat(self, geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, lambda c: np.column_stack(self.to_lonlat(c[:, 0],
                                                                                c[:, 1])))


def _transform(t: Transformer, a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 1:  # pyproj takes one-element arrays for scalars (and numpy warns)
        u, v = t.transform(float(a.reshape(-1)[0]), float(b.reshape(-1)[0]))
        return np.full(a.shape, u), np.full(a.shape, v)
    u, v = t.transform(a, b)
    return np.asarray(u), np.asarray(v)


@lru_cache(maxsize=8)
def frame(crs: str) -> Frame:
    return Frame(crs)


def horizontal_lengths(xyz: np.ndarray) -> np.ndarray:
    """Cumulative horizontal length at each vertex (0 at the first)."""
    seg = np.hypot(np.diff(xyz[:, 0]), np.diff(xyz[:, 1]))
    return np.concatenate([[0.0], np.cumsum(seg)])


def fractions_of(xyz: np.ndarray) -> np.ndarray:
    """Fraction along the route of each vertex; by horizontal length, by 3D length for a
    purely vertical route."""
    cum = horizontal_lengths(xyz)
    if cum[-1] <= 1e-9:
        seg = np.abs(np.diff(xyz[:, 2]))
        cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1] if cum[-1] > 0 else 1.0
    return cum / total


def sample(xyz: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points at most ``step`` apart (3D) along the polyline, vertices included, and their
    fractions along the route."""
    frac = fractions_of(xyz)
    pts, fr = [xyz[:1]], [frac[:1]]
    for i in range(len(xyz) - 1):
        a, b = xyz[i], xyz[i + 1]
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        t = np.arange(1, n + 1, dtype=float)[:, None] / n
        pts.append(a + t * (b - a))
        fr.append(frac[i] + t[:, 0] * (frac[i + 1] - frac[i]))
    return np.vstack(pts), np.concatenate(fr)


def nearest_on_polyline(pts: np.ndarray, line: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each point (k, 2+) the horizontal distance to the polyline (n, 3), the polyline's
    height at the nearest point and that point's fraction along the line.

    Given heights (points (k, 3)), a point over a vertical part of the line (a climb or a
    descent at one place, as network flights have at vertiports and junctions) takes the
    height of the line nearest its own among the parts at that horizontal place: the line
    passes every height of a vertical part there. Without them, the first part found."""
    p = pts[:, None, :2]
    a, b = line[None, :-1, :2], line[None, 1:, :2]
    d = b - a
    l2 = np.maximum((d * d).sum(-1), 1e-12)
    t = np.clip(((p - a) * d).sum(-1) / l2, 0.0, 1.0)
    q = a + t[..., None] * d
    dist = np.hypot(*(p - q).transpose(2, 0, 1))
    rows = np.arange(len(pts))
    za = line[None, :-1, 2]
    zb = line[None, 1:, 2]
    if pts.shape[1] >= 3 and len(line) > 1:
        h = pts[:, 2:3]
        zs = za + t * (zb - za)
        vertical = (d * d).sum(-1) < 1e-8
        # on a vertical part the height nearest the point's own, and its place along it
        zs = np.where(vertical, np.clip(h, np.minimum(za, zb), np.maximum(za, zb)), zs)
        span = zb - za
        t = np.where(vertical & (np.abs(span) > 0), (zs - za) / np.where(span == 0, 1, span), t)
        near = dist <= dist.min(axis=1, keepdims=True) + 1e-3
        k = np.where(near, np.abs(zs - h), np.inf).argmin(axis=1)
        tk = t[rows, k]
        z = zs[rows, k]
    else:
        k = dist.argmin(axis=1)
        tk = t[rows, k]
        z = line[k, 2] + tk * (line[k + 1, 2] - line[k, 2])
    frac = fractions_of(line)
    f = frac[k] + tk * (frac[k + 1] - frac[k])
    return dist[rows, k], z, f


def corridor_polygon(xyz: np.ndarray, half_width: float) -> shapely.Polygon:
    """The horizontal corridor: the centre line buffered by the half-width (round ends)."""
    line = shapely.LineString(xyz[:, :2]) if len(xyz) > 1 else shapely.Point(xyz[0, :2])
    poly = line.buffer(half_width, quad_segs=8)
    if isinstance(poly, shapely.MultiPolygon):  # cannot happen for a connected line
        poly = max(poly.geoms, key=lambda g: g.area)
    return poly


def outer_radius(radius: float, quad_segs: int) -> float:
    """The radius to buffer with so that the polygon (``quad_segs`` segments per quarter
    circle) contains the true circle: GEOS puts the vertices on the circle, so the edges
    cut inside it by up to 1 - cos(pi / (4 * quad_segs)) of the radius (0.5 % at 8)."""
    return radius / math.cos(math.pi / (4 * quad_segs))


def grow(geom: BaseGeometry, distance: float, quad_segs: int = 8) -> BaseGeometry:
    """Everything within ``distance`` of the geometry, and a little more: never less."""
    return shapely.buffer(geom, outer_radius(distance, quad_segs), quad_segs=quad_segs)


def tube(xyz: np.ndarray, half_width: float, extra: float = 0.0,
         quad_segs: int = 8) -> BaseGeometry:
    """The horizontal area a check treats as the route's: every point within
    ``half_width + extra`` of the centre line (a circle for a vertical route)."""
    line = shapely.LineString(xyz[:, :2])
    return grow(line, half_width + extra, quad_segs)


def reach_from_line(area: BaseGeometry, xyz: np.ndarray, max_points: int = 50_000) -> float:
    """How far the area reaches from the centre line: an upper bound on the largest
    horizontal distance of any of its points to the line.

    The farthest point lies on the outer boundary, but not necessarily at a vertex (the
    middle of an edge across a V-shaped line is farther than both ends), so the boundary
    is sampled every ``step`` m; a point between samples is within ``step / 2`` of one and
    distance moves by at most as much, hence the sampled maximum plus ``step / 2``.
    """
    rings = [area.exterior] if isinstance(area, shapely.Polygon) else \
        [g.exterior for g in shapely.get_parts(area)]
    perimeter = sum(r.length for r in rings)
    step = max(0.25, perimeter / max_points)
    pts = shapely.points(np.vstack([shapely.get_coordinates(shapely.segmentize(r, step))
                                    for r in rings]))
    a = xyz[:, :2]
    segs = shapely.linestrings(np.stack([a[:-1], a[1:]], axis=1)) if len(a) > 1 else \
        shapely.points(a)
    _, dist = shapely.STRtree(segs).query_nearest(pts, return_distance=True,
                                                  all_matches=False)
    return float(dist.max()) + step / 2
