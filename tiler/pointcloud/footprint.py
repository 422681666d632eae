"""The covered area of a survey: an occupancy grid turned into a lon/lat polygon.

Cells come from the octree pass (occupied cubes of a fixed level with their lowest and
highest point), so the footprint follows the points (flight strips, gaps over water) instead
of the bounding box, and the 3D bounds come out of the same cells.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.affinity import affine_transform
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from tiler.frames import EnuFrame, ecef_to_geodetic


def merge_cells(ix: np.ndarray, iy: np.ndarray, zlo: np.ndarray, zhi: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One entry per occupied (ix, iy) column with the lowest and highest z."""
    key = (ix.astype(np.int64) << 32) | iy.astype(np.int64)
    order = np.argsort(key, kind="stable")
    key, zlo, zhi = key[order], zlo[order], zhi[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    k = key[starts]
    return (k >> 32), (k & 0xFFFFFFFF), np.minimum.reduceat(zlo, starts), \
        np.maximum.reduceat(zhi, starts)


def _close(grid: np.ndarray) -> np.ndarray:
    """Morphological closing with a 3x3 square: fills one-cell gaps between scan lines."""
    g = np.pad(grid, 2)
    d = g.copy()
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            d |= np.roll(np.roll(g, dx, 0), dy, 1)
    e = d.copy()
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            e &= np.roll(np.roll(d, dx, 0), dy, 1)
    return (e | g)[2:-2, 2:-2]


def footprint_enu(ix: np.ndarray, iy: np.ndarray, cell: float, x0: float, y0: float
                  ) -> BaseGeometry:
    """Union of occupied cells (after closing) as a polygon in local metres."""
    gx, gy = ix - ix.min(), iy - iy.min()
    grid = np.zeros((int(gx.max()) + 1, int(gy.max()) + 1), bool)
    grid[gx, gy] = True
    grid = _close(grid)
    rects = []
    for i in range(grid.shape[0]):
        row = np.r_[False, grid[i], False]
        edges = np.flatnonzero(row[1:] != row[:-1])
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            rects.append(box(i, a, i + 1, b))
    shape = shapely.union_all(rects).simplify(0.0)
    return affine_transform(shape, [cell, 0, 0, cell, x0 + ix.min() * cell,
                                            y0 + iy.min() * cell])


def to_lonlat(shape: BaseGeometry, frame: EnuFrame, up: float) -> BaseGeometry:
    def tf(xy: np.ndarray) -> np.ndarray:
        enu = np.column_stack([xy[:, 0], xy[:, 1], np.full(len(xy), up)])
        return ecef_to_geodetic(frame.to_ecef(enu))[:, :2]

    out = shapely.transform(shape, tf)
    if isinstance(out, Polygon | MultiPolygon):
        return shapely.make_valid(out) if not out.is_valid else out
    return out
