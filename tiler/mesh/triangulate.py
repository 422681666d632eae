"""Robust, mostly vectorised triangulation of many polygons at once.

Per polygon: repeated vertices are dropped, the plane is the Newell (best-fit) plane of the
exterior ring, so non-planar rings are handled, and triangles are wound counter-clockwise around
that normal whatever the orientation of the input. Convex rings without holes (most walls and
roof planes) are fanned with numpy; concave rings and rings with holes go through earcut one by
one. Every polygon gets its own vertices so normals are flat per face.
"""

from __future__ import annotations

from dataclasses import dataclass

import mapbox_earcut
import numpy as np

from .rings import (
    clean_rings,
    local_coords,
    newell,
    plane_basis,
    project_2d,
    ring_index,
    starts_of,
)

MIN_TRIANGLE_AREA = 1e-10  # m²


@dataclass
class Triangulated:
    positions: np.ndarray  # (V, 3) float64, same frame as the input
    normals: np.ndarray  # (V, 3) float32 unit normals (flat per polygon)
    vertex_polygon: np.ndarray  # (V,) polygon index of each vertex
    triangles: np.ndarray  # (T, 3) int64 indices into positions
    triangle_polygon: np.ndarray  # (T,) polygon index of each triangle
    dropped_polygons: np.ndarray  # indices of polygons with no area left


def _fan(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(s, s+i, s+i+1) for every ring, i = 1 .. n-2, all rings at once."""
    n_tri = counts - 2
    base = np.repeat(starts, n_tri)
    offs = np.arange(int(n_tri.sum())) - np.repeat(starts_of(n_tri), n_tri) + 1
    return np.column_stack([base, base + offs, base + offs + 1])


def triangulate_polygons(
    xyz: np.ndarray, ring_counts: np.ndarray, rings_per_polygon: np.ndarray
) -> Triangulated:
    """Triangulate polygons given flat: vertices, vertices per ring, rings per polygon.

    ``xyz`` must be metric (ENU metres); rings of a polygon are consecutive, exterior first.
    """
    ring_counts = np.asarray(ring_counts, np.int64)
    rings_per_polygon = np.asarray(rings_per_polygon, np.int64)
    n_poly = len(rings_per_polygon)
    ring_poly = np.repeat(np.arange(n_poly), rings_per_polygon)
    is_exterior = np.zeros(len(ring_counts), bool)
    is_exterior[starts_of(rings_per_polygon)[rings_per_polygon > 0]] = True

    keep, counts = clean_rings(xyz, ring_counts)
    xyz = xyz[keep]
    # Exterior normal decides the polygon's plane; too small an area drops the polygon.
    area_vec = newell(xyz, counts)
    poly_normal = np.zeros((n_poly, 3))
    poly_normal[ring_poly[is_exterior]] = area_vec[is_exterior]
    poly_ok = (np.linalg.norm(poly_normal, axis=1) > MIN_TRIANGLE_AREA)
    ext_counts = np.zeros(n_poly, np.int64)
    ext_counts[ring_poly[is_exterior]] = counts[is_exterior]
    poly_ok &= ext_counts >= 3
    ring_ok = poly_ok[ring_poly] & (counts >= 3)
    vkeep = np.repeat(ring_ok, counts)
    xyz, counts = xyz[vkeep], counts[ring_ok]
    ring_poly, is_exterior = ring_poly[ring_ok], is_exterior[ring_ok]

    rings_left = np.bincount(ring_poly, minlength=n_poly)
    vertex_ring = ring_index(counts)
    vertex_poly = ring_poly[vertex_ring]
    n, u, v = plane_basis(poly_normal)
    # 2D coordinates relative to the first vertex of each polygon, in its own plane.
    poly_vcount = np.bincount(vertex_poly, weights=None, minlength=n_poly).astype(np.int64)
    poly_vstart = starts_of(poly_vcount)
    rel = local_coords(xyz, poly_vcount[poly_vcount > 0]) if len(xyz) else xyz
    uv = project_2d(rel, vertex_poly, u, v)

    # Convexity of single-ring polygons: every turn is to the left (or straight).
    ring_start = starts_of(counts)
    nxt = np.arange(1, len(xyz) + 1)
    prv = np.arange(-1, len(xyz) - 1)
    if len(counts):
        nxt[ring_start + counts - 1] = ring_start
        prv[ring_start] = ring_start + counts - 1
    e1 = uv - uv[prv]
    e2 = uv[nxt] - uv
    turn = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    scale = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    left = turn >= -1e-9 * np.maximum(scale, 1e-30)
    ring_convex = np.ones(len(counts), bool)
    if len(counts):
        ring_convex = np.logical_and.reduceat(left, ring_start)
    simple = (rings_left == 1) & poly_ok
    ring_fan = ring_convex & simple[ring_poly]

    tris = [_fan(ring_start[ring_fan], counts[ring_fan])]
    first_ring = starts_of(rings_left)
    fanned = np.zeros(n_poly, bool)
    fanned[ring_poly[ring_fan]] = True
    for p in np.flatnonzero(poly_ok & ~fanned):
        s, c = poly_vstart[p], poly_vcount[p]
        if c < 3:
            continue
        r0 = first_ring[p]
        ends = np.cumsum(counts[r0:r0 + rings_left[p]]).astype(np.uint32)
        idx = mapbox_earcut.triangulate_float64(uv[s:s + c], ends)
        if idx.size:
            tris.append(idx.reshape(-1, 3).astype(np.int64) + s)
    tri = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)

    # Wind every triangle counter-clockwise in its plane; drop triangles without area.
    a, b, c = uv[tri[:, 0]], uv[tri[:, 1]], uv[tri[:, 2]]
    signed = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = signed < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    area3d = 0.5 * np.linalg.norm(
        np.cross(xyz[tri[:, 1]] - xyz[tri[:, 0]], xyz[tri[:, 2]] - xyz[tri[:, 0]]), axis=1)
    tri = tri[area3d > MIN_TRIANGLE_AREA]
    tri_poly = vertex_poly[tri[:, 0]] if len(tri) else np.zeros(0, np.int64)
    # Sort triangles by polygon so features stay contiguous.
    order = np.argsort(tri_poly, kind="stable")
    tri, tri_poly = tri[order], tri_poly[order]

    has_tri = np.zeros(n_poly, bool)
    has_tri[tri_poly] = True
    return Triangulated(
        positions=xyz,
        normals=n[vertex_poly].astype(np.float32),
        vertex_polygon=vertex_poly,
        triangles=tri,
        triangle_polygon=tri_poly,
        dropped_polygons=np.flatnonzero(~has_tri),
    )
