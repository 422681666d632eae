"""Plan-view footprints of elements, computed in model metres (a metric plane) and only then
brought to longitude / latitude, so area tests and simplification are done in metres."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

MIN_TRIANGLE_AREA = 1e-6  # m²: vertical faces project to slivers; they add nothing
MAX_UNION_TRIANGLES = 600  # above this (furniture, stairs) the convex hull will do, far cheaper
CONVEX_FILL = 0.98  # tops filling this share of the hull: the hull is the footprint
SIMPLIFY_M = 0.005
THIN_M = 0.01  # a zero-thickness element (a single vertical face) gets this width


def plan_footprint(verts: np.ndarray, faces: np.ndarray) -> BaseGeometry:
    """The element seen from above (model x/y, metres).

    The top of a closed solid covers its plan, so only upward-facing triangles count. When
    their area fills the convex hull the hull is the answer (walls, slabs, most elements:
    cheap); otherwise (an L-shaped slab, a stair) the triangles are merged.
    """
    xy = verts[:, :2]
    tri = xy[faces]
    u, v = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    signed = 0.5 * (u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])
    up = signed > MIN_TRIANGLE_AREA
    if up.sum() == 0:  # wound the other way round, or no top at all
        up = -signed > MIN_TRIANGLE_AREA
    # the hull of the vertices as one line, not as a MultiPoint: that makes a GEOS point
    # per vertex, which took a large share of this function's time
    hull = shapely.convex_hull(shapely.linestrings(xy) if len(xy) > 1
                               else shapely.multipoints(xy))
    top = tri[up]
    if hull.area < MIN_TRIANGLE_AREA:  # a line or a point from above
        return shapely.make_valid(hull.buffer(THIN_M / 2, quad_segs=2))
    if np.abs(signed[up]).sum() >= CONVEX_FILL * hull.area or len(top) > MAX_UNION_TRIANGLES:
        return hull
    rings = np.concatenate([top, top[:, :1]], axis=1)
    geom = shapely.union_all(shapely.polygons(rings), grid_size=1e-6)
    if geom.area < MIN_TRIANGLE_AREA:
        return hull
    return shapely.make_valid(geom.simplify(SIMPLIFY_M))


def _multipolygon(geom: BaseGeometry) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and g.area > 0]
    return MultiPolygon(polys)


def to_lonlat(geoms: Sequence[BaseGeometry],
              to_wgs84: Callable[[np.ndarray], np.ndarray]) -> list[MultiPolygon]:
    """All footprints through the placement in one vectorised call."""
    def fn(xy: np.ndarray) -> np.ndarray:
        xyz = np.column_stack([xy, np.zeros(len(xy))])
        return to_wgs84(xyz)[:, :2]

    moved = shapely.transform(np.asarray(geoms, dtype=object), fn)
    return [_multipolygon(shapely.make_valid(g)) for g in moved]
