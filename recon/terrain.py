"""Terrain: a DTM raster from ground points, and ground height at any x, y.

The DTM holds the mean height of the ground points of each cell (the mean, not the minimum:
ground points scatter only by the scanner's noise, which the mean averages out, while the
minimum is biased low by it). Cells without ground points (under buildings, dense crowns,
beyond the data) are filled by linear interpolation over a Delaunay triangulation (a TIN)
of the cells around them; cells outside the triangulation's hull take the nearest cell's
value. Only the measured cells that border a gap go into the triangulation: inside a gap,
the TIN's value depends only on those rim cells, and triangulating them alone is what keeps
a 1 km2 survey at 0.5 m from triangulating four million cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from recon.errors import NoGroundError

__all__ = ["Dtm", "build_dtm"]


@dataclass(frozen=True)
class Dtm:
    """A regular DTM grid.

    ``z[i, j]`` is the height of the cell whose centre is at
    ``(x0 + (j + 0.5) * cell, y0 + (i + 0.5) * cell)``: row 0 is the southern edge (flip with
    ``z[::-1]`` for a north-up image, whose GDAL geotransform is :meth:`geotransform`).
    ``filled`` marks the cells interpolated rather than measured.
    """

    z: np.ndarray  # (rows, cols) float32
    x0: float
    y0: float
    cell: float
    filled: np.ndarray  # (rows, cols) bool
    crs: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.z.shape  # type: ignore[return-value]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        rows, cols = self.z.shape
        return (self.x0, self.y0, self.x0 + cols * self.cell, self.y0 + rows * self.cell)

    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL geotransform of the north-up image ``z[::-1]``."""
        return (self.x0, self.cell, 0.0, self.bounds[3], 0.0, -self.cell)

    def height(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """Ground height at x, y: bilinear between cell centres, the edge value beyond them."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        rows, cols = self.z.shape
        fx = np.clip((x - self.x0) / self.cell - 0.5, 0.0, cols - 1.0)
        fy = np.clip((y - self.y0) / self.cell - 0.5, 0.0, rows - 1.0)
        j0 = np.minimum(fx.astype(np.int64), max(cols - 2, 0))
        i0 = np.minimum(fy.astype(np.int64), max(rows - 2, 0))
        tx = fx - j0
        ty = fy - i0
        # one flat gather per corner: 2D fancy indexing costs twice as much on 10^7 points
        z = self.z.ravel()
        k = i0 * cols + j0
        dj = 1 if cols > 1 else 0
        di = cols if rows > 1 else 0
        z00, z01, z10, z11 = z[k], z[k + dj], z[k + di], z[k + di + dj]
        return z00 + (z01 - z00) * tx + ((z10 - z00) + (z11 - z10 - z01 + z00) * tx) * ty


def build_dtm(
    ground_xyz: np.ndarray,
    *,
    cell: float = 0.5,
    bounds: tuple[float, float, float, float] | None = None,
    crs: str | None = None,
) -> Dtm:
    """A DTM of ``cell`` metres from ground points, gaps filled by TIN interpolation.

    ``bounds`` (xmin, ymin, xmax, ymax) sets the grid's extent, by default that of the points.
    Raises :class:`NoGroundError` when fewer than three ground points are given.
    """
    pts = np.asarray(ground_xyz, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise NoGroundError("ground points must be an (N, 3) array of x, y, z")
    pts = pts[np.isfinite(pts[:, :3]).all(axis=1)]
    if pts.shape[0] < 3:
        raise NoGroundError(
            f"only {pts.shape[0]} ground points: a terrain model needs ground visible in the "
            "survey (an area fully covered by roofs or canopy cannot give one)"
        )
    if not cell > 0:
        raise ValueError("cell must be positive")
    if bounds is None:
        bounds = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    xmin, ymin, xmax, ymax = bounds
    x0 = np.floor(xmin / cell) * cell
    y0 = np.floor(ymin / cell) * cell
    cols = max(1, int(np.ceil((xmax - x0) / cell + 1e-9)))
    rows = max(1, int(np.ceil((ymax - y0) / cell + 1e-9)))
    j = np.clip(((pts[:, 0] - x0) / cell).astype(np.int64), 0, cols - 1)
    i = np.clip(((pts[:, 1] - y0) / cell).astype(np.int64), 0, rows - 1)
    flat = i * cols + j
    count = np.bincount(flat, minlength=rows * cols).reshape(rows, cols)
    total = np.bincount(flat, weights=pts[:, 2], minlength=rows * cols).reshape(rows, cols)
    measured = count > 0
    z = np.where(measured, total / np.maximum(count, 1), np.nan)
    z = fill_gaps(z, measured)
    return Dtm(z.astype(np.float32), float(x0), float(y0), float(cell), ~measured, crs)


def fill_gaps(z: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Fill the cells not ``measured``: pinholes by their neighbours' mean, larger gaps by
    TIN interpolation from the cells around each gap, cells beyond the TIN by the nearest."""
    out = z.copy()
    measured = measured.copy()
    # pinholes (a cell that happened to catch no ground point) are most of the gaps of a fine
    # grid; their neighbours' mean fills them at a fraction of a triangulation's cost
    ring = np.ones((3, 3))
    ring[1, 1] = 0
    for _ in range(2):
        gaps = ~measured
        if not gaps.any():
            return out
        total = ndimage.convolve(np.where(measured, out, 0.0), ring, mode="constant")
        count = ndimage.convolve(measured.astype(np.float64), ring, mode="constant")
        pin = gaps & (count >= 7)
        out[pin] = total[pin] / count[pin]
        measured |= pin
    gaps = ~measured
    if not gaps.any():
        return out
    rim = measured & ndimage.binary_dilation(gaps, structure=np.ones((3, 3), bool))
    ri, rj = np.nonzero(rim)
    if ri.size >= 3:
        # qhull crawls on the exactly cocircular points of a grid: a fixed, tiny jitter of the
        # vertices (a hundredth of a cell) makes the triangulation well-posed; cell units keep
        # its arithmetic away from large eastings and northings
        jitter = np.random.default_rng(0).uniform(-0.01, 0.01, (ri.size, 2))
        verts = np.column_stack([rj + 0.5, ri + 0.5]) + jitter
        try:
            tri = Delaunay(verts)
        except QhullError:  # collinear rim (a single row of cells): nearest fill below
            tri = None
        if tri is not None:
            _rasterise_tin(out, gaps, verts, out[ri, rj], tri.simplices)
    left = np.isnan(out)
    if left.any():  # outside the rim's hull: the nearest measured cell
        idx = ndimage.distance_transform_edt(left, return_distances=False, return_indices=True)
        out = out[tuple(idx)]
    return out


def _rasterise_tin(
    out: np.ndarray, target: np.ndarray, verts: np.ndarray, values: np.ndarray,
    simplices: np.ndarray, budget: int = 4_000_000,
) -> None:
    """Write the TIN's linear interpolation into the ``target`` cells of ``out``.

    Each triangle visits the cell centres of its bounding box and keeps those inside it (by
    barycentric coordinates). scipy's point location (``find_simplex``) walks the mesh once
    per cell, which measured tens of seconds for a few hundred thousand cells; the
    triangles' boxes together cover little more than the gaps, so this is a few array
    passes. ``verts`` are in cell units (cell (i, j) has its centre at j + 0.5, i + 0.5).
    """
    rows, cols = out.shape
    p = verts[simplices]  # (T, 3, 2)
    v = values[simplices]
    lo = np.clip(np.ceil(p.min(axis=1) - 0.5), 0, [cols, rows]).astype(np.int64)
    hi = np.clip(np.floor(p.max(axis=1) - 0.5), -1, [cols - 1, rows - 1]).astype(np.int64)
    w = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    h = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    size = w * h
    ends = np.cumsum(size)
    start = 0
    while start < size.size:
        stop = int(np.searchsorted(ends, (ends[start - 1] if start else 0) + budget, "right"))
        stop = max(stop, start + 1)
        sl = slice(start, stop)
        t = np.repeat(np.arange(start, stop), size[sl])
        if t.size:
            first = np.repeat(np.cumsum(size[sl]) - size[sl], size[sl])
            local = np.arange(t.size) - first
            j = lo[t, 0] + local % w[t]
            i = lo[t, 1] + local // w[t]
            keep = target[i, j]
            t, i, j = t[keep], i[keep], j[keep]
            a, b, c = p[t, 0], p[t, 1], p[t, 2]
            px, py = j + 0.5, i + 0.5
            det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (
                b[:, 1] - a[:, 1])
            l1 = ((b[:, 0] - px) * (c[:, 1] - py) - (c[:, 0] - px) * (b[:, 1] - py)) / det
            l2 = ((c[:, 0] - px) * (a[:, 1] - py) - (a[:, 0] - px) * (c[:, 1] - py)) / det
            l3 = 1.0 - l1 - l2
            inside = (l1 >= -1e-9) & (l2 >= -1e-9) & (l3 >= -1e-9)
            t, i, j = t[inside], i[inside], j[inside]
            out[i, j] = (l1[inside] * v[t, 0] + l2[inside] * v[t, 1] + l3[inside] * v[t, 2])
        start = stop
