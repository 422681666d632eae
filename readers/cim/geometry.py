"""Per-object derived geometry: footprint, and export as PolyhedralSurface Z (WKT / WKB)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon


class Surface(Protocol):
    """What these functions read of a surface (model.Surface has it)."""

    semantic: str | None
    rings: list[np.ndarray]

GROUND_TYPES = frozenset({"GroundSurface", "WaterGroundSurface", "OuterFloorSurface"})


def _valid_polygonal(geom: shapely.Geometry) -> Polygon | MultiPolygon | None:
    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if isinstance(geom, Polygon | MultiPolygon):
        return geom if geom.area > 0 else None
    # make_valid may give a collection of polygons and lines: keep the areas only.
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon | MultiPolygon)]
    if not polys:
        return None
    out = shapely.union_all(polys)
    return out if out.area > 0 else None


def footprint_of(surfaces: Sequence[Surface]) -> Polygon | MultiPolygon | None:
    """Ground surfaces when there are any, else the union of the 2D projections of all faces.

    Walls project to slivers of zero area and vanish in the union; an object made of vertical
    faces only falls back to the convex hull of its vertices.
    """
    if not surfaces:
        return None
    ground = [s for s in surfaces if s.semantic in GROUND_TYPES] or list(surfaces)
    polys = []
    for s in ground:
        shell = s.rings[0][:, :2]
        if len(shell) < 3:
            continue
        p = Polygon(shell, [h[:, :2] for h in s.rings[1:] if len(h) >= 3])
        if not p.is_valid:
            p = shapely.make_valid(p)
        polys.append(p)
    merged = _valid_polygonal(shapely.union_all(polys)) if polys else None
    if merged is None:
        pts = np.concatenate([r[:, :2] for s in surfaces for r in s.rings])
        merged = _valid_polygonal(shapely.convex_hull(shapely.multipoints(pts)))
    return merged


def newell_area_vector(ring: np.ndarray) -> np.ndarray:
    """Vector area of a (possibly non-planar) ring: its length is the area, direction the normal.

    Coordinates are taken relative to the first vertex so large projected coordinates (500 km
    eastings) do not cost precision.
    """
    p = np.asarray(ring, float) - ring[0]
    q = np.roll(p, -1, axis=0)
    return 0.5 * np.cross(p, q).sum(axis=0)


def surface_area(rings: Sequence[np.ndarray]) -> float:
    """Area of a polygon with holes in a metric CRS (exterior minus holes, Newell in 3D)."""
    outer = newell_area_vector(rings[0])
    n = np.linalg.norm(outer)
    if n == 0:
        return 0.0
    unit = outer / n
    holes = sum(abs(float(newell_area_vector(h) @ unit)) for h in rings[1:])
    return float(n - holes)


def _ring_text(ring: np.ndarray) -> str:
    closed = np.vstack([ring, ring[:1]])
    return "(" + ",".join(f"{x!r} {y!r} {z!r}" for x, y, z in closed.tolist()) + ")"


def polyhedral_ewkt(surfaces: Sequence[Surface], srid: int = 4326) -> str:
    """``SRID=4326;POLYHEDRALSURFACE Z (((x y z,...)),...)`` with closed rings, full precision."""
    faces = ",".join("(" + ",".join(_ring_text(r) for r in s.rings) + ")" for s in surfaces)
    return f"SRID={srid};POLYHEDRALSURFACE Z ({faces})"


def polyhedral_wkb(surfaces: Sequence[Surface]) -> bytes:
    """ISO WKB (little-endian) of a PolyhedralSurface Z: type 1015 holding Polygon Z (1003)."""
    parts = [struct.pack("<BII", 1, 1015, len(surfaces))]
    for s in surfaces:
        parts.append(struct.pack("<BII", 1, 1003, len(s.rings)))
        for r in s.rings:
            closed = np.ascontiguousarray(np.vstack([r, r[:1]]), dtype="<f8")
            parts.append(struct.pack("<I", len(closed)))
            parts.append(closed.tobytes())
    return b"".join(parts)
