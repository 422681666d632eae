"""Height grids kept with surveys: packing, coverage, and sampling at lon / lat.

A grid is a survey's DTM in its metric CRS, heights already WGS 84 ellipsoidal metres (what
3D Tiles, quantized-mesh terrain and the low-altitude checks use), NaN where the survey did
not reach. Stored heights are float32, byte-shuffled (the four bytes of every height in four
planes: the sign, exponent and high mantissa bytes of a smooth terrain repeat, so the planes
compress well) and deflated.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS
from scipy import ndimage

from tiler.crs import cached_transformer, transform_arrays

ENCODING = "f32-shuffle-zlib"
#: what a cell outside the survey holds in a stored grid (NaN in memory)
NODATA = -9999.0

__all__ = ["ENCODING", "NODATA", "GridStack", "HeightGrid", "coverage", "ellipsoidal_offset",
           "pack_heights", "unpack_heights"]


def pack_heights(z: np.ndarray) -> bytes:
    """Float32 heights (NaN = no data) as stored: NODATA for NaN, byte-shuffled, deflated."""
    a = np.where(np.isfinite(z), z, NODATA).astype("<f4")
    planes = np.ascontiguousarray(a.reshape(-1).view(np.uint8).reshape(-1, 4).T)
    return zlib.compress(planes.tobytes(), 6)


def unpack_heights(blob: bytes, rows: int, cols: int, nodata: float = NODATA) -> np.ndarray:
    """The inverse of :func:`pack_heights`: (rows, cols) float32, NaN where no data."""
    raw = np.frombuffer(zlib.decompress(blob), np.uint8)
    if raw.size != rows * cols * 4:
        raise ValueError(f"a stored grid of {rows} x {cols} has {raw.size} bytes")
    z = np.ascontiguousarray(raw.reshape(4, -1).T).view("<f4").reshape(rows, cols)
    return np.where(z == np.float32(nodata), np.float32(np.nan), z).astype(np.float32)


def ellipsoidal_offset(shape: tuple[int, int], x0: float, y0: float, cell: float,
                       to_wgs84: Callable[..., tuple[np.ndarray, ...]], step: int = 16
                       ) -> np.ndarray:
    """What to add to the grid's heights to make them WGS 84 ellipsoidal: ``to_wgs84``'s
    height of 0 at every cell centre (0 for ellipsoidal heights, the geoid undulation for
    orthometric ones). Computed on a lattice of every ``step`` cells and interpolated
    bilinearly: geoid models are themselves bilinear grids of kilometres (EGM96: 15'), so
    at 8 m the difference is far below a millimetre, and a 4-million-cell DTM needs
    16,000 transformations instead of 4 million."""
    rows, cols = shape
    ii = np.unique(np.r_[np.arange(0, rows, step), rows - 1])
    jj = np.unique(np.r_[np.arange(0, cols, step), cols - 1])
    gx, gy = np.meshgrid(x0 + (jj + 0.5) * cell, y0 + (ii + 0.5) * cell)
    _, _, h = to_wgs84(gx.ravel(), gy.ravel(), np.zeros(gx.size))
    lattice = np.asarray(h, float).reshape(len(ii), len(jj))
    a = _along(lattice, jj, cols, axis=1)
    return _along(a, ii, rows, axis=0)


def _along(values: np.ndarray, at: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``values`` known at indices ``at`` to indices 0..n-1."""
    if len(at) == 1:
        return np.repeat(values, n, axis=axis)
    k = np.clip(np.searchsorted(at, np.arange(n), side="right") - 1, 0, len(at) - 2)
    t = (np.arange(n) - at[k]) / (at[k + 1] - at[k])
    if axis == 1:
        return values[:, k] * (1 - t) + values[:, k + 1] * t
    return values[k, :] * (1 - t)[:, None] + values[k + 1, :] * t[:, None]


def coverage(shape: tuple[int, int], x0: float, y0: float, cell: float, xy: np.ndarray
             ) -> tuple[np.ndarray, shapely.Geometry]:
    """Where a survey's points reach: a mask of the grid's cells, and its outline (grid CRS).

    Blocks of a few metres (more in sparse surveys: about two points apart) that hold any
    point of any class; holes inside are kept (water that returned nothing, a roof without
    ground: the DTM's TIN bridges them), and one block is added around, so the grid reaches
    just past the outermost points. Beyond that a DTM has only extrapolation, which must
    not cover an older survey that measured the ground there."""
    rows, cols = shape
    xy = np.asarray(xy, float)
    if not len(xy):
        return np.zeros(shape, bool), shapely.Polygon()
    area = max((rows * cell) * (cols * cell), cell * cell)
    density = len(xy) / area
    per = max(1, int(np.ceil(max(2.0, 2.0 / np.sqrt(density)) / cell)))  # cells per block
    brows, bcols = -(-rows // per), -(-cols // per)
    bi = np.clip(((xy[:, 1] - y0) / (cell * per)).astype(np.int64), 0, brows - 1)
    bj = np.clip(((xy[:, 0] - x0) / (cell * per)).astype(np.int64), 0, bcols - 1)
    blocks = np.zeros((brows, bcols), bool)
    blocks[bi, bj] = True
    blocks = ndimage.binary_fill_holes(blocks)
    blocks = ndimage.binary_dilation(blocks, structure=np.ones((3, 3), bool))
    mask = np.repeat(np.repeat(blocks, per, axis=0), per, axis=1)[:rows, :cols]
    return mask, _outline(blocks, x0, y0, cell * per, (cols * cell, rows * cell))


def _outline(blocks: np.ndarray, x0: float, y0: float, size: float,
             extent: tuple[float, float]) -> shapely.Geometry:
    """The union of the set blocks, as runs of blocks per row (a few hundred boxes, not
    thousands), clipped to the grid."""
    boxes = []
    for i in range(blocks.shape[0]):
        row = np.r_[False, blocks[i], False].astype(np.int8)
        edges = np.flatnonzero(np.diff(row))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            boxes.append(shapely.box(x0 + a * size, y0 + i * size, x0 + b * size,
                                     y0 + (i + 1) * size))
    shape = shapely.union_all(boxes)
    return shapely.intersection(shape, shapely.box(x0, y0, x0 + extent[0], y0 + extent[1]))


@dataclass(frozen=True)
class HeightGrid:
    """A grid of ellipsoidal heights: ``z[i, j]`` at the centre
    ``(x0 + (j + 0.5) * cell, y0 + (i + 0.5) * cell)`` of its CRS (row 0 south), NaN where
    there is no data."""

    crs: str
    x0: float
    y0: float
    cell: float
    z: np.ndarray  # (rows, cols) float32

    def sample_xy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Heights at x, y of the grid's CRS: bilinear between cell centres, the nearest cell
        where a neighbour has no data (the edge of the survey), NaN off the data."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        rows, cols = self.z.shape
        fx = (x - self.x0) / self.cell - 0.5
        fy = (y - self.y0) / self.cell - 0.5
        inside = (fx >= -0.5) & (fx <= cols - 0.5) & (fy >= -0.5) & (fy <= rows - 0.5)
        fx = np.where(inside, fx, 0.0)
        fy = np.where(inside, fy, 0.0)
        j0 = np.clip(np.floor(fx), 0, max(cols - 2, 0)).astype(np.int64)
        i0 = np.clip(np.floor(fy), 0, max(rows - 2, 0)).astype(np.int64)
        j1 = np.minimum(j0 + 1, cols - 1)
        i1 = np.minimum(i0 + 1, rows - 1)
        tx = np.clip(fx - j0, 0.0, 1.0)
        ty = np.clip(fy - i0, 0.0, 1.0)
        z = self.z
        z00, z01, z10, z11 = z[i0, j0], z[i0, j1], z[i1, j0], z[i1, j1]
        out = (z00 * (1 - tx) * (1 - ty) + z01 * tx * (1 - ty) + z10 * (1 - tx) * ty
               + z11 * tx * ty).astype(float)
        gap = np.isnan(out)
        if gap.any():
            jn = np.clip(np.rint(fx[gap]), 0, cols - 1).astype(np.int64)
            in_ = np.clip(np.rint(fy[gap]), 0, rows - 1).astype(np.int64)
            out[gap] = z[in_, jn]
        out[~inside] = np.nan
        return out

    def sample_lonlat(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        x, y = transform_arrays(cached_transformer("EPSG:4326", CRS.from_user_input(self.crs)),
                                np.asarray(lon, float), np.asarray(lat, float))
        return self.sample_xy(x, y)


@dataclass(frozen=True)
class GridStack:
    """Grids newest first: a point takes its height from the first grid with data there."""

    grids: Sequence[HeightGrid]
    ids: Sequence[int] = ()  # what the caller knows each grid by (a survey's dataset id)

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heights (NaN where no grid has data) and the index of the grid each came from
        (-1 for none)."""
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        h = np.full(lon.shape, np.nan)
        which = np.full(lon.shape, -1, np.int64)
        for k, grid in enumerate(self.grids):
            todo = np.isnan(h)
            if not todo.any():
                break
            got = grid.sample_lonlat(lon[todo], lat[todo])
            idx = np.flatnonzero(todo.ravel())
            ok = np.isfinite(got.ravel())
            h.ravel()[idx[ok]] = got.ravel()[ok]
            which.ravel()[idx[ok]] = k
        return h, which
