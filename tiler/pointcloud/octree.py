"""Level-of-detail selection over an octree, vectorised with Morton keys.

A node at level ``l`` keeps one point per cell of a ``2**GRID_BITS``-per-axis grid laid over
it (the first point, in Morton order, of the cell that no coarser level took), so every level
is a spatially even subsample and, with ADD refinement, every point lands in exactly one node.
A node whose remaining subtree holds at most ``leaf_max`` points takes them all (a leaf).

Everything runs on sorted Morton keys: points of a node, and of a grid cell inside it, are
contiguous runs, so each level costs a few linear numpy passes and no sort. The one sort is
made faster by packing the point index into the low bits of the key and using ``np.sort``
(``np.sort`` on uint64 is much faster than ``np.argsort``: benchmarks/RESULTS.md).

Locality: the grid of level ``l`` has cells of level ``l + GRID_BITS``. A region processed on
its own (a "cell" at level ``Lc``) can decide every level ``l >= Lc - GRID_BITS`` by itself,
because those grid cells nest inside it. The pipeline relies on this to tile cells in
parallel worker processes.
"""

from __future__ import annotations

import numpy as np

GRID_BITS = 7
MAX_KEY_BITS = 21  # per axis: 63-bit keys
PACK_INDEX_BITS = 21  # packed sort: up to 2 M points with keys of up to 14 bits per axis

_LUT = np.zeros(256, np.uint64)
for _v in range(256):
    _r = 0
    for _b in range(8):
        if _v >> _b & 1:
            _r |= 1 << (3 * _b)
    _LUT[_v] = _r


def _spread(v: np.ndarray, bits: int) -> np.ndarray:
    v = v.astype(np.uint64, copy=False)
    out = _LUT[v & np.uint64(255)]
    if bits > 8:
        out |= _LUT[(v >> np.uint64(8)) & np.uint64(255)] << np.uint64(24)
    if bits > 16:
        out |= _LUT[(v >> np.uint64(16)) & np.uint64(31)] << np.uint64(48)
    return out


def morton(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, bits: int = MAX_KEY_BITS
           ) -> np.ndarray:
    """Interleave three integer arrays of at most ``bits`` (<= 21) bits into uint64 keys
    (x highest). A table lookup per byte: fewer passes than the shift-and-mask method."""
    return ((_spread(ix, bits) << np.uint64(2)) | (_spread(iy, bits) << np.uint64(1))
            | _spread(iz, bits))


def sort_by_key(keys: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(order, sorted_keys)``; stable for equal keys."""
    n = len(keys)
    if 3 * bits + PACK_INDEX_BITS <= 64 and n <= 1 << PACK_INDEX_BITS:
        packed = (keys << np.uint64(PACK_INDEX_BITS)) | np.arange(n, dtype=np.uint64)
        packed.sort()
        order = (packed & np.uint64((1 << PACK_INDEX_BITS) - 1)).astype(np.intp)
        return order, packed >> np.uint64(PACK_INDEX_BITS)
    order = np.argsort(keys, kind="stable")
    return order, keys[order]


def _run_starts(k: np.ndarray) -> np.ndarray:
    first = np.empty(len(k), bool)
    if len(k):
        first[0] = True
        np.not_equal(k[1:], k[:-1], out=first[1:])
    return first


def assign_levels(keys: np.ndarray, bits: int, cell_level: int, start: int,
                  stop: int | None = None, leaf_max: int | None = None,
                  grid_bits: int = GRID_BITS) -> np.ndarray:
    """Assign each point (``keys`` sorted, ``bits`` per axis, relative to a cell at level
    ``cell_level``) the octree level that keeps it, from level ``start``.

    ``stop`` (exclusive) ends early and leaves the rest at -1 (used for the coarse preview
    levels). ``leaf_max`` enables leaves at levels ``>= cell_level``; at the deepest level
    (``cell_level + bits``) every remaining point is kept.
    """
    n = len(keys)
    level = np.full(n, -1, np.int16)
    last = cell_level + bits
    if stop is None:
        stop = last + 1
    remaining = np.arange(n)
    k = keys
    for lv in range(start, min(stop, last + 1)):
        if not len(remaining):
            break
        if lv == last:
            level[remaining] = lv
            return level
        gdepth = lv + grid_bits - cell_level
        if gdepth < 0:
            raise ValueError("a cell cannot decide levels this coarse")
        sel = _run_starts(k >> np.uint64(3 * max(bits - gdepth, 0)))
        if leaf_max is not None and lv >= cell_level:
            nk = k >> np.uint64(3 * (bits - (lv - cell_level)))
            starts = np.flatnonzero(_run_starts(nk))
            counts = np.diff(np.append(starts, len(nk)))
            small = counts <= leaf_max
            if small.any():
                sel |= np.repeat(small, counts)
        level[remaining[sel]] = lv
        keep = ~sel
        remaining = remaining[keep]
        k = k[keep]
    return level


def node_runs(keys: np.ndarray, bits: int, depth: int) -> np.ndarray:
    """Start offsets of the runs of equal ancestors ``depth`` levels below the cell."""
    shift = 3 * max(min(bits - depth, bits), 0)
    return np.flatnonzero(_run_starts(keys >> np.uint64(shift)))
