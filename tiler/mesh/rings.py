"""Vectorised operations on many polygon rings at once.

Rings are stored flat: one (V, 3) float64 vertex array and the vertex count of every ring, in
order. Working on all rings of a batch with numpy instead of ring by ring is what makes tens of
thousands of buildings cheap. Coordinates must be metric (projected CRS, ECEF or ENU).
"""

from __future__ import annotations

import numpy as np


def starts_of(counts: np.ndarray) -> np.ndarray:
    """Index of the first vertex of every ring."""
    starts = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def ring_index(counts: np.ndarray) -> np.ndarray:
    """Ring number of every vertex."""
    return np.repeat(np.arange(len(counts)), counts)


def next_in_ring(counts: np.ndarray) -> np.ndarray:
    """For every vertex, the index of the following vertex of the same ring (cyclic)."""
    total = int(counts.sum())
    nxt = np.arange(1, total + 1)
    nonempty = counts > 0
    ends = (starts_of(counts) + counts - 1)[nonempty]
    nxt[ends] = starts_of(counts)[nonempty]
    return nxt


def counts_after(keep: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-ring number of vertices left by a vertex mask (empty rings allowed)."""
    cs = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(keep, out=cs[1:])
    starts = starts_of(counts)
    return cs[starts + counts] - cs[starts]


def clean_rings(
    xyz: np.ndarray, counts: np.ndarray, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated vertices: consecutive duplicates and a repeated closing vertex.

    Returns the mask of kept vertices and the new counts. A vertex is dropped when it lies within
    ``tol`` of the next vertex of its ring (cyclically), so a closed ring A B C A becomes A B C.
    """
    counts = np.asarray(counts, np.int64)
    if len(xyz) == 0:
        return np.zeros(0, bool), counts.copy()
    nxt = next_in_ring(counts)
    d2 = ((xyz[nxt] - xyz) ** 2).sum(axis=1)
    keep = d2 > tol * tol
    return keep, counts_after(keep, counts)


def local_coords(xyz: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Coordinates relative to the first vertex of their ring (keeps precision for big eastings)."""
    first = np.repeat(xyz[starts_of(counts)], counts, axis=0) if len(counts) else xyz
    return xyz - first


def newell(xyz: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Vector area of every ring: direction = normal (right-hand rule), length = area.

    Newell's method is exact for planar rings and gives the best-fit plane's normal for
    non-planar ones.
    """
    counts = np.asarray(counts, np.int64)
    out = np.zeros((len(counts), 3))
    if len(xyz) == 0:
        return out
    p = local_coords(xyz, counts)
    q = p[next_in_ring(counts)]
    cross = np.cross(p, q)
    nonempty = counts > 0
    out[nonempty] = 0.5 * np.add.reduceat(cross, starts_of(counts)[nonempty], axis=0)
    return out


def plane_basis(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit normal n and in-plane axes u, v with (u, v, n) right-handed, for every ring.

    A ring counter-clockwise around n is counter-clockwise in (u, v).
    """
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    n = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    helper = np.zeros_like(n)
    mostly_vertical = np.abs(n[:, 2]) < 0.9
    helper[mostly_vertical, 2] = 1.0
    helper[~mostly_vertical, 0] = 1.0
    u = np.cross(helper, n)
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-300)
    v = np.cross(n, u)
    return n, u, v


def project_2d(rel: np.ndarray, owner: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """2D coordinates of vertices in their owner's plane (u, v indexed by ``owner``)."""
    uu, vv = u[owner], v[owner]
    return np.column_stack([(rel * uu).sum(axis=1), (rel * vv).sum(axis=1)])
