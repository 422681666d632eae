"""Terrain: a DTM raster from ground points, and ground height at any x, y.

The DTM holds the mean height of the ground points of each cell (the mean, not the minimum:
ground points scatter only by the scanner's noise, which the mean averages out, while the
minimum is biased low by it). Cells without ground points (under buildings, dense crowns,
beyond the data) are filled by linear interpolation over a Delaunay triangulation (a TIN)
of the cells around them; cells outside the triangulation's hull take the nearest cell's
value. Only the measured cells that border a gap go into its triangulation: inside a gap,
the TIN's value depends only on those rim cells, and triangulating them alone is what keeps
a 1 km2 survey at 0.5 m from triangulating four million cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from recon.errors import NoGroundError

__all__ = ["Dtm", "build_dtm", "fill_gaps"]

_PIECE = 1 << 20  # points per piece of a bilinear lookup


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
        if x.ndim == 1 and x.shape == y.shape and x.size > _PIECE:
            # a dozen temporaries per point: in pieces, so that a large survey does not hold
            # them all at once (benchmarks/RESULTS.md, classify_vs_csf.py)
            out = np.empty(x.size)
            for s in range(0, x.size, _PIECE):
                out[s : s + _PIECE] = self._height(x[s : s + _PIECE], y[s : s + _PIECE])
            return out
        return self._height(x, y)

    def _height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
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
    finite = np.isfinite(pts[:, :3]).all(axis=1)
    if not finite.all():
        pts = pts[finite]
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
    flat = np.clip(((pts[:, 1] - y0) / cell).astype(np.int64), 0, rows - 1) * cols
    flat += np.clip(((pts[:, 0] - x0) / cell).astype(np.int64), 0, cols - 1)
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
    _tin_fill(out, gaps, measured)
    left = np.isnan(out)
    if left.any():  # outside the rim's hull: the nearest measured cell
        idx = ndimage.distance_transform_edt(left, return_distances=False, return_indices=True)
        out = out[tuple(idx)]
    return out


def _tin_fill(out: np.ndarray, gaps: np.ndarray, measured: np.ndarray) -> None:
    """Fill each gap by a TIN of the measured cells around it (in place).

    One small triangulation per gap, not one over all the rims together (that one links
    neighbouring gaps by long triangles over measured ground), and the triangles rasterised
    row by row (:func:`_rasterise_tin`) rather than located cell by cell with scipy's
    ``find_simplex``, which was many times slower (benchmarks/RESULTS.md, classify_vs_csf.py).
    """
    rows, cols = out.shape
    eight = np.ones((3, 3), dtype=bool)
    labels, _ = ndimage.label(gaps, structure=eight)
    # gaps of a few cells (sparse surveys have thousands) take their neighbours' mean: a
    # triangulation each would cost a millisecond apiece for no better value
    small = gaps & (np.bincount(labels.ravel())[labels] <= 6)
    if small.any():
        ring = np.ones((3, 3))
        ring[1, 1] = 0
        have = measured.copy()
        for _ in range(3):
            total = ndimage.convolve(np.where(have, out, 0.0), ring, mode="constant")
            count = ndimage.convolve(have.astype(np.float64), ring, mode="constant")
            now = small & ~have & (count >= 2)
            out[now] = total[now] / count[now]
            have |= now
        labels[small] = 0
    rng = np.random.default_rng(0)
    verts_all, values_all, tris_all, owner_all = [], [], [], []
    offset = 0
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, rows)
        c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, cols)
        gap = labels[r0:r1, c0:c1] == lab
        rim = ndimage.binary_dilation(gap, structure=eight) & measured[r0:r1, c0:c1]
        ri, rj = np.nonzero(rim)
        if ri.size < 3:
            continue  # the nearest fill takes it
        # qhull crawls on the exactly cocircular points of a grid: a fixed, tiny jitter of
        # the vertices (a hundredth of a cell) makes the triangulation well-posed
        verts = np.column_stack([rj + 0.5, ri + 0.5]) + rng.uniform(-0.01, 0.01, (ri.size, 2))
        try:
            tri = Delaunay(verts)
        except QhullError:  # collinear rim (a single row of cells)
            continue
        verts_all.append(verts + np.array([c0, r0]))
        values_all.append(out[ri + r0, rj + c0])
        tris_all.append(tri.simplices + offset)
        owner_all.append(np.full(tri.simplices.shape[0], lab))
        offset += verts.shape[0]
    if tris_all:
        # a gap's hull may reach over a neighbouring gap: each triangle writes only its own
        _rasterise_tin(out, labels, np.concatenate(verts_all), np.concatenate(values_all),
                       np.concatenate(tris_all), np.concatenate(owner_all))


def _rasterise_tin(
    out: np.ndarray, labels: np.ndarray, verts: np.ndarray, values: np.ndarray,
    simplices: np.ndarray, owner: np.ndarray,
) -> None:
    """Write each triangle's plane into the cells of its gap (``labels == owner``) whose
    centres it covers.

    Scanline rasterisation, vectorised: every (triangle, row) pair gets the span of cell
    centres between the triangle's edges on that row, so the cells visited are the
    triangles' area, not their bounding boxes'. ``verts`` are in cell units (cell (i, j) has
    its centre at x = j + 0.5, y = i + 0.5).
    """
    rows, cols = out.shape
    p = verts[simplices]  # (T, 3, 2)
    v = values[simplices]  # (T, 3)
    # plane z = a x + b y + c through the three vertices
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    dz1, dz2 = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    ok = np.abs(det) > 1e-12
    p, v, e1, e2, dz1, dz2, det = p[ok], v[ok], e1[ok], e2[ok], dz1[ok], dz2[ok], det[ok]
    owner = owner[ok]
    a = (dz1 * e2[:, 1] - dz2 * e1[:, 1]) / det
    b = (e1[:, 0] * dz2 - e2[:, 0] * dz1) / det
    c = v[:, 0] - a * p[:, 0, 0] - b * p[:, 0, 1]
    ylo = np.clip(np.ceil(p[:, :, 1].min(axis=1) - 0.5), 0, rows).astype(np.int64)
    yhi = np.clip(np.floor(p[:, :, 1].max(axis=1) - 0.5), -1, rows - 1).astype(np.int64)
    nrow = np.maximum(yhi - ylo + 1, 0)
    t = np.repeat(np.arange(p.shape[0]), nrow)
    i = ylo[t] + np.arange(t.size) - np.repeat(np.cumsum(nrow) - nrow, nrow)
    y = i + 0.5
    xmin = np.full(t.size, np.inf)
    xmax = np.full(t.size, -np.inf)
    for k0, k1 in ((0, 1), (1, 2), (2, 0)):
        py, qy = p[t, k0, 1], p[t, k1, 1]
        px, qx = p[t, k0, 0], p[t, k1, 0]
        crosses = (np.minimum(py, qy) <= y) & (y <= np.maximum(py, qy)) & (py != qy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = px + (y - py) * (qx - px) / (qy - py)
        xmin = np.where(crosses, np.minimum(xmin, x), xmin)
        xmax = np.where(crosses, np.maximum(xmax, x), xmax)
    has = np.isfinite(xmin)
    t, i, xmin, xmax = t[has], i[has], xmin[has], xmax[has]
    jlo = np.clip(np.ceil(xmin - 0.5 - 1e-9), 0, cols).astype(np.int64)
    jhi = np.clip(np.floor(xmax - 0.5 + 1e-9), -1, cols - 1).astype(np.int64)
    n = np.maximum(jhi - jlo + 1, 0)
    tt = np.repeat(t, n)
    ii = np.repeat(i, n)
    jj = np.repeat(jlo, n) + np.arange(tt.size) - np.repeat(np.cumsum(n) - n, n)
    keep = labels[ii, jj] == owner[tt]
    tt, ii, jj = tt[keep], ii[keep], jj[keep]
    out[ii, jj] = a[tt] * (jj + 0.5) + b[tt] * (ii + 0.5) + c[tt]
