"""Quantized-mesh terrain tiles (Cesium's ``quantized-mesh-1.0``) from height grids.

The tiling is CesiumJS's geographic one (``projection`` EPSG:4326, ``scheme`` tms): level 0
is two tiles of 180 x 180 degrees, x counted from 180 W eastwards, y from 90 S northwards,
and each level splits every tile in four. A tile's heights are sampled on a regular grid of
:data:`SAMPLES` x :data:`SAMPLES` points of longitude / latitude (its edges included, so
neighbours share their edge samples), triangulated by pydelatin within a height error that
shrinks with the level, and encoded with quantized-mesh-encoder's writers.

Why not ``quantized_mesh_encoder.encode`` itself: it casts the positions to float32 first,
and a float32 longitude near 114 E is only good to 7.6e-6 degrees (0.7 m), half a percent of
a tile at level 18, which would move every vertex of a fine tile by up to 160 quantization
steps. The header and the quantization are computed here in float64 instead (rounded, not
truncated), and the library writes the vertex, index and edge blocks and the normals.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydelatin import Delatin
from quantized_mesh_encoder.encode import (
    compute_header,
    encode_header,
    write_edge_indices,
    write_indices,
    write_vertices,
)
from quantized_mesh_encoder.extensions import VertexNormalsExtension

from tiler.terrain.grid import GridStack

#: the deepest level a tile is answered at (1.7e-4 degrees, about 19 m)
MAX_LEVEL = 20
#: height samples along each side of a tile
SAMPLES = 257
#: metres per degree of latitude (WGS 84, mean): tile sizes in metres for choosing levels
M_PER_DEG = 111_132.0
#: the finest height error a mesh is simplified to, m
MIN_ERROR_M = 0.02
#: Cesium's estimated geometric error of a level-0 tile of a 65-sample heightmap, m
#: (TerrainProvider.getEstimatedLevelZeroGeometricErrorForAHeightmap: a * 2pi * 0.25 / (65 * 2))
LEVEL0_ERROR_M = 6378137.0 * 2 * math.pi * 0.25 / (65 * 2)
QUANT = 32767
#: levels whose tiles span degrees get a regular mesh (every REGULAR_STEP-th sample: 65 x 65,
#: as Cesium's own ellipsoid tiles), which follows the globe's curve
REGULAR_UP_TO = 6
REGULAR_STEP = 4
EARTH_RADIUS_M = 6_371_000.0

__all__ = ["MAX_LEVEL", "SAMPLES", "Tile", "TileRange", "available", "bad_tile",
           "encode_mesh", "level_for_cell", "max_error", "render_tile", "sea_level",
           "tile_heights", "tile_samples"]


@dataclass(frozen=True)
class Tile:
    z: int
    x: int
    y: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """west, south, east, north in degrees."""
        size = 180.0 / (1 << self.z)
        return (-180.0 + self.x * size, -90.0 + self.y * size,
                -180.0 + (self.x + 1) * size, -90.0 + (self.y + 1) * size)


def bad_tile(z: int, x: int, y: int, max_level: int = MAX_LEVEL) -> str | None:
    """Why z / x / y is no tile of the scheme, or None."""
    if z < 0 or z > max_level:
        return f"level {z} is outside 0..{max_level}"
    nx, ny = 2 << z, 1 << z
    if not 0 <= x < nx:
        return f"x {x} is outside 0..{nx - 1} at level {z}"
    if not 0 <= y < ny:
        return f"y {y} is outside 0..{ny - 1} at level {z}"
    return None


def tile_range(bounds: Sequence[float], z: int) -> tuple[int, int, int, int]:
    """The tiles of level z that a lon / lat box meets: (x0, y0, x1, y1), inclusive."""
    w, s, e, n = bounds
    size = 180.0 / (1 << z)
    nx, ny = 2 << z, 1 << z

    def ix(v: float, count: int, origin: float) -> int:
        return min(max(math.floor((v - origin) / size), 0), count - 1)

    return ix(w, nx, -180.0), ix(s, ny, -90.0), ix(e, nx, -180.0), ix(n, ny, -90.0)


@dataclass(frozen=True)
class TileRange:
    start_x: int
    start_y: int
    end_x: int
    end_y: int

    def json(self) -> dict[str, int]:
        return {"startX": self.start_x, "startY": self.start_y, "endX": self.end_x,
                "endY": self.end_y}


def level_for_cell(cell_m: float) -> int:
    """The first level whose sample spacing is no coarser than a grid of ``cell_m`` metres."""
    spacing0 = 180.0 * M_PER_DEG / (SAMPLES - 1)
    return min(MAX_LEVEL, max(0, math.ceil(math.log2(spacing0 / max(cell_m, 1e-3)))))


def available(footprints: Iterable[tuple[Sequence[float], float]]) -> list[list[TileRange]]:
    """layer.json's ``available``: level 0 whole (sea level everywhere), and at each deeper
    level the tiles that meet a grid's lon / lat box, down to the level of its cell size.
    ``footprints``: (box, cell in metres) of every grid."""
    boxes = list(footprints)
    levels: list[list[TileRange]] = [[TileRange(0, 0, 1, 0)]]
    deepest = max((level_for_cell(cell) for _, cell in boxes), default=0)
    for z in range(1, deepest + 1):
        ranges = sorted({TileRange(*tile_range(box, z)) for box, cell in boxes
                         if level_for_cell(cell) >= z},
                        key=lambda r: (r.start_y, r.start_x, r.end_y, r.end_x))
        levels.append(ranges)
    return levels


def level_error(z: int) -> float:
    """Cesium's geometric error for level z, m: it refines a tile by this figure."""
    return LEVEL0_ERROR_M / (1 << z)


def max_error(z: int) -> float:
    """How far a tile's mesh may be from its samples, m: an eighth of what Cesium assumes
    for the level, never under :data:`MIN_ERROR_M` (the noise of a LiDAR DTM)."""
    return max(MIN_ERROR_M, level_error(z) / 8)


def tile_samples(tile: Tile, n: int = SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes of a tile's height samples, (n, n) each, row 0 south."""
    w, s, e, nn = tile.bounds
    lon = w + (e - w) * np.arange(n) / (n - 1)
    lat = s + (nn - s) * np.arange(n) / (n - 1)
    return np.meshgrid(lon, lat)


def encode_mesh(tile: Tile, heights: np.ndarray, *, error: float | None = None,
                normals: bool = False) -> bytes:
    """A quantized-mesh tile from heights sampled by :func:`tile_samples` (ellipsoidal m)."""
    heights = np.asarray(heights, np.float64)
    n_rows, n_cols = heights.shape
    if not np.isfinite(heights).all():
        raise ValueError("tile heights must all be finite")
    w, s, e, nn = tile.bounds
    if tile.z <= REGULAR_UP_TO:
        col, row, tris = _regular(n_rows, n_cols, REGULAR_STEP)
    else:
        col, row, tris = _delatin(tile, heights, max_error(tile.z) if error is None else error)
    # counter-clockwise seen from above (outward normals, Cesium's culling)
    a, b, c = (np.column_stack([col[tris[:, k]], row[tris[:, k]]]) for k in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tris = np.where((cross < 0)[:, None], tris[:, [0, 2, 1]], tris)
    # high-water-mark index coding needs the vertices in the order triangles first use them
    flat = tris.ravel()
    _, first = np.unique(flat, return_index=True)
    order = flat[np.sort(first)]
    remap = np.empty(len(col), np.int64)
    remap[order] = np.arange(len(order))
    col, row, tris = col[order], row[order], remap[tris]
    h = heights[row, col]  # the samples themselves, in float64
    lon = w + (e - w) * col / (n_cols - 1)
    lat = s + (nn - s) * row / (n_rows - 1)
    positions = np.column_stack([lon, lat, h])
    u = np.rint(col * QUANT / (n_cols - 1)).astype(np.int16)
    v = np.rint(row * QUANT / (n_rows - 1)).astype(np.int16)
    header = compute_header(positions, "naive")  # ritter is float32-only
    lo, hi = np.float32(h.min()), np.float32(h.max())
    header["minimumHeight"], header["maximumHeight"] = lo, hi
    span = float(hi) - float(lo)
    q = np.zeros(len(h)) if span <= 0 else np.rint((h - float(lo)) / span * QUANT)
    hq = np.clip(q, 0, QUANT).astype(np.int16)
    out = io.BytesIO()
    encode_header(out, header)
    quantized = np.column_stack([u, v, hq])
    write_vertices(out, quantized, len(quantized))
    write_indices(out, tris.astype(np.uint32), len(quantized))
    write_edge_indices(out, quantized, len(quantized))
    if normals:
        out.write(VertexNormalsExtension(indices=tris.astype(np.uint32),
                                         positions=positions).encode())
    return out.getvalue()


def _regular(n_rows: int, n_cols: int, step: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``step``-th sample as vertices, two triangles per square."""
    rr = np.unique(np.r_[np.arange(0, n_rows, step), n_rows - 1])
    cc = np.unique(np.r_[np.arange(0, n_cols, step), n_cols - 1])
    row, col = (a.ravel() for a in np.meshgrid(rr, cc, indexing="ij"))
    nc = len(cc)
    k = (np.arange(len(rr) - 1)[:, None] * nc + np.arange(nc - 1)[None, :]).ravel()
    tris = np.concatenate([np.column_stack([k, k + 1, k + nc + 1]),
                           np.column_stack([k, k + nc + 1, k + nc])])
    return col, row, tris


def _delatin(tile: Tile, heights: np.ndarray, error: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A TIN of the samples within ``error``, measured as Cesium draws it: its triangles
    are straight in space, so the heights are triangulated as heights above the plane
    tangent at the tile's centre (the Earth's curve, d^2 / 2R, subtracted), and a long
    edge over a curved globe counts its sag as error."""
    n_rows, n_cols = heights.shape
    w, s, e, nn = tile.bounds
    lat_c = math.radians((s + nn) / 2)
    dx = (np.arange(n_cols) / (n_cols - 1) - 0.5) * (e - w) * M_PER_DEG * math.cos(lat_c)
    dy = (np.arange(n_rows) / (n_rows - 1) - 0.5) * (nn - s) * M_PER_DEG
    bulge = (dx[None, :] ** 2 + dy[:, None] ** 2) / (2 * EARTH_RADIUS_M)
    tin = Delatin((heights - bulge).astype(np.float32), max_error=error)
    verts = tin.vertices
    col = np.rint(verts[:, 0]).astype(np.int64)
    # pydelatin counts y from the array's last row up
    row = (n_rows - 1) - np.rint(verts[:, 1]).astype(np.int64)
    return col, row, tin.triangles.astype(np.int64)


def sea_level(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The EGM96 geoid on the ellipsoid (what an orthometric height of 0 is), or the
    ellipsoid itself where the geoid grid is not installed."""
    from tiler.crs import CrsError, geoid_undulation

    try:
        return geoid_undulation(lon, lat)
    except CrsError:
        return np.zeros(np.shape(lon))


def tile_heights(tile: Tile, stack: GridStack, n: int = SAMPLES) -> np.ndarray:
    """A tile's height samples: the grids newest first, sea level where none has data."""
    lon, lat = tile_samples(tile, n)
    h, _ = stack.sample(lon, lat)
    gaps = np.isnan(h)
    if gaps.any():
        h[gaps] = sea_level(lon[gaps], lat[gaps])
    return h


def render_tile(tile: Tile, stack: GridStack, *, normals: bool = False) -> bytes:
    """The quantized-mesh tile of ``tile`` over ``stack``."""
    return encode_mesh(tile, tile_heights(tile, stack), normals=normals)
