"""The tiling run: plan from the header, preview from a sample, then read, tile and assemble.

1. **Plan** (main process, milliseconds): header checks, CRS, local ENU frame, root cube,
   the fitted source -> ENU map.
2. **Preview**: a worker decodes a sample spread over the whole file (every K-th stretch of
   points, aligned to LAZ chunks; for COPC the nodes of the top levels of its octree, an
   even subsample of the survey by construction). The coarse levels 0..P-1 are selected
   from it, written, and published in a first ``tileset.json``: a dashboard sees the survey
   within seconds.
   The sample points kept there are remembered by file index and skipped later (ADD: every
   point exactly once).
3. **Distribute** (workers, one file range each): decode, map to ENU, quantise to integer
   positions, and append to one spill file per cell of level L on disk. Memory stays bounded
   by the chunk size whatever the file size.
4. **Tile** (workers, one cell each): Morton sort, level selection (see ``octree``), glb per
   node. Nodes above a cell (levels P..L-1, shared by several cells) receive their points
   through spill files too and are written last.
5. **Assemble**: boxes, geometric errors, the final ``tileset.json`` (atomic replace).

Why not py3dtiles' building blocks: ``py3dtiles convert`` (12.1.1) spends its CPU on octree
building (per-node Python insertion), on re-reading every tile in Python to assemble the
tileset and on PROJ (profile and speeds in benchmarks/RESULTS.md).
Here the octree is a Morton sort plus linear passes per cell, the tileset is assembled from the
bounds each worker returns (no re-read), and PROJ is replaced by a checked fit (georef.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import shutil
import signal
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tiler.crs import CrsError, ToWgs84
from tiler.errors import (
    CorruptFileError,
    ImpossibleCoordinatesError,
    PointCountMismatchError,
)
from tiler.frames import EnuFrame, ecef_to_geodetic, geodetic_to_ecef
from tiler.lifetime import end_with, end_with_parent
from tiler.pointcloud import octree
from tiler.pointcloud.assemble import NodeInfo, NodeKey, build_tileset
from tiler.pointcloud.content import points_glb
from tiler.pointcloud.georef import LocalMapper, build_mapper
from tiler.pointcloud.source import (
    PointBlock,
    SourceInfo,
    inspect_source,
    read_range,
    read_rows,
    resolve_crs,
    z_to_metres,
)
from tiler.pool import worker_pool
from tiler.tileset import write_bytes_atomic, write_json_atomic

# Records are gathered with np.take: numpy's structured fancy indexing (``rec[index]``) is
# many times slower (benchmarks/RESULTS.md).
SPILL = np.dtype([("u", "<u4", (3,)), ("rgb", "<u2", (3,)), ("intensity", "<u2"),
                  ("cls", "u1")])
QUANTUM_M = 2.0 ** -12  # 0.24 mm at most: integer positions far below the 1 cm demanded
BOUNDS_MARGIN = 0.02  # header bounds may be off by rounding: widen the cube a little
CONTENT_DIR = "content"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Settings:
    workers: int = 2
    chunk_points: int = 500_000  # decoded per read call; bounds worker memory
    task_points: int = 2_000_000  # points per distribute task
    cell_target: int = 1_500_000  # points per tiling cell
    leaf_max: int = 40_000  # a node with at most this many remaining points is a leaf
    sample_points: int = 400_000  # preview sample (at least), or 1/40 of the file ...
    sample_max: int = 1_000_000  # ... up to this many points
    preview_levels_max: int = 4
    inprocess_max_points: int = 300_000  # smaller LAS files: no worker processes at all


@dataclass(frozen=True)
class Plan:
    info: SourceInfo
    mapper: LocalMapper
    cube_min: tuple[float, float, float]
    q: float
    R: int  # root cube side is 2**R quanta
    L: int  # level of the spill cells
    P: int  # levels 0..P-1 come from the preview sample
    F: int  # level of the footprint cells
    colour: str  # "u8", "u16" or "none"
    leaf_max: int
    cell_target: int
    chunk: int
    spill: str
    out: str

    @property
    def side_m(self) -> float:
        return self.q * 2 ** self.R


@dataclass
class ReadStats:
    points: int = 0
    class_counts: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    gps_min: float = math.inf
    rgb_max: int = 0

    def add(self, other: ReadStats) -> None:
        self.points += other.points
        self.class_counts += other.class_counts
        self.gps_min = min(self.gps_min, other.gps_min)
        self.rgb_max = max(self.rgb_max, other.rgb_max)


@dataclass
class CellResult:
    nodes: dict[NodeKey, NodeInfo]
    points: int
    occupancy: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# --- worker set-up ---------------------------------------------------------------------

def _worker_init(creator: int) -> None:
    # A worker process killed outright left its pool processes behind, blocked for ever on
    # a task pipe that they hold open themselves. Under forkserver their parent is the
    # server, which does not end either while they hold its pipe: they watch the process
    # that made the pool. SIGKILL: they hold nothing worth a clean-up.
    end_with_parent(signal.SIGKILL)  # their parent is the creator under spawn
    end_with(creator, signal.SIGKILL)
    # Fresh pages cost far more than reused ones on this kind of VM (benchmarks/RESULTS.md);
    # keep freed memory in the heap for the next chunk.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD


class _InlineExecutor(Executor):
    """Runs tasks at submit time in this process: small files need no worker processes."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def _make_executor(workers: int, inline: bool) -> Executor:
    if inline:
        return _InlineExecutor()
    # the workers decode LAZ; the server process (forkserver) imports only this module
    return worker_pool(max(1, workers), "tiler.pointcloud.pipeline",
                       initializer=_worker_init, initargs=(os.getpid(),))


# --- planning --------------------------------------------------------------------------

def make_plan_base(info: SourceInfo, crs: str | None, vertical: str | None
                   ) -> tuple[ToWgs84, LocalMapper, tuple[float, float, float], float, int]:
    """CRS, frame, mapper and root cube from the header."""
    the_crs = resolve_crs(info, crs)
    try:
        to_wgs = ToWgs84(the_crs, vertical=vertical)
    except CrsError as exc:
        raise ImpossibleCoordinatesError(str(exc)) from exc
    zf = z_to_metres(the_crs)
    mins, maxs = info.mins, info.maxs
    # a 5 x 5 x 2 lattice over the header box: the corners alone miss the Earth's curvature
    gx, gy, gz = np.meshgrid(np.linspace(mins[0], maxs[0], 5), np.linspace(mins[1], maxs[1], 5),
                             [mins[2], maxs[2]], indexing="ij")
    gx, gy, gz = gx.ravel(), gy.ravel(), gz.ravel()
    lon, lat, h = _checked_lonlat(to_wgs, gx, gy, gz * zf, info)
    mid = len(lon) // 2
    origin = (float(np.median(lon)), float(np.median(lat)), float(h[mid] if len(h) else 0.0))
    frame = EnuFrame(*origin)
    enu = frame.from_ecef(geodetic_to_ecef(lon, lat, h))
    lo, hi = enu.min(axis=0), enu.max(axis=0)
    extent = float((hi - lo).max())
    margin = extent * BOUNDS_MARGIN + 2.0
    side = extent + 2 * margin
    # the quantum is at most QUANTUM_M and makes the cube exactly 2**R quanta wide, so the
    # root cube hugs the survey instead of doubling it (a wasted level)
    R = max(1, math.ceil(math.log2(side / QUANTUM_M)))
    if R > 31:
        raise ImpossibleCoordinatesError(
            f"{info.path.name}: the header's bounds span {side / 1000:.0f} km, too large for "
            "one survey; is the coordinate system (or the header) right?")
    q = side / 2**R
    center = (lo + hi) / 2
    cube_min = tuple(float(v) for v in center - q * 2 ** R / 2)
    mapper = build_mapper(to_wgs, to_wgs.crs.to_wkt(), vertical, zf, mins, maxs, origin)
    return to_wgs, mapper, cube_min, q, R  # type: ignore[return-value]


def _checked_lonlat(to_wgs: ToWgs84, x: np.ndarray, y: np.ndarray, zm: np.ndarray,
                    info: SourceInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        try:
            lon, lat, h = to_wgs(x, y, zm)
        except Exception as exc:
            raise ImpossibleCoordinatesError(
                f"{info.path.name}: its coordinates cannot be placed on the Earth in "
                f"{to_wgs.label} ({exc}); is the coordinate system right?") from exc
    try:
        to_wgs.check(lon, lat, h)
    except CrsError as exc:
        raise ImpossibleCoordinatesError(
            f"{info.path.name}: x {x.min():.2f}..{x.max():.2f}, y {y.min():.2f}..{y.max():.2f} "
            f"are not possible in {to_wgs.label}: {exc} If the file's coordinate system label "
            "is wrong, give the right one with the upload (e.g. crs=EPSG:4547).") from exc
    if not np.isfinite(h).all():
        raise ImpossibleCoordinatesError(
            f"{info.path.name}: heights cannot be computed in {to_wgs.label}")
    return lon, lat, h


def _quantize(plan: Plan, enu: np.ndarray, start: int) -> np.ndarray:
    f = (enu - np.asarray(plan.cube_min)) / plan.q
    lim = 2.0 ** plan.R
    bad = ~((f >= 0) & (f < lim)).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        name = plan.info.path.name
        raise CorruptFileError(
            f"{name}: point {start + i} lies outside the bounds its header declares "
            f"(x {plan.info.mins[0]:.2f}..{plan.info.maxs[0]:.2f}, y {plan.info.mins[1]:.2f}.."
            f"{plan.info.maxs[1]:.2f}, z {plan.info.mins[2]:.2f}..{plan.info.maxs[2]:.2f}); the "
            "file is damaged or its header is wrong. Repair it (e.g. 'lasinfo -repair') and "
            "upload again")
    return f.astype(np.uint32)


def _enu_of(plan: Plan, u: np.ndarray) -> np.ndarray:
    return np.asarray(plan.cube_min) + (u.astype(np.float64) + 0.5) * plan.q


# --- tasks run in workers --------------------------------------------------------------

def read_sample(info: SourceInfo, ranges: list[tuple[int, int]], chunk: int) -> PointBlock:
    """Decode a list of (start, count) stretches and concatenate them."""
    if not info.compressed:
        return read_rows(info, ranges)
    # stretches must not overlap: a point sampled twice could be kept twice
    merged: list[tuple[int, int]] = []
    for start, count in sorted(ranges):
        if merged and start < merged[-1][0] + merged[-1][1]:
            ps, pc = merged[-1]
            merged[-1] = (ps, max(pc, start + count - ps))
        else:
            merged.append((start, count))
    ranges = merged
    blocks = []
    for start, count in ranges:
        blocks.extend(read_range(info, start, start + count, chunk, gps=True))
    return PointBlock(
        start=-1,
        x=np.concatenate([b.x for b in blocks]), y=np.concatenate([b.y for b in blocks]),
        z=np.concatenate([b.z for b in blocks]),
        rgb=np.concatenate([b.rgb for b in blocks]) if info.has_rgb else None,
        intensity=np.concatenate([b.intensity for b in blocks]),
        classification=np.concatenate([b.classification for b in blocks]),
        gps_time=np.concatenate([b.gps_time for b in blocks]) if info.has_gps_time else None,
        index=np.concatenate([np.arange(b.start, b.start + len(b.x)) for b in blocks]),
    )


def distribute(plan: Plan, start: int, stop: int, taken: np.ndarray) -> ReadStats:
    """Read ``start..stop``, map to ENU, append points to the spill file of their cell."""
    stats = ReadStats()
    shift = np.uint32(plan.R - plan.L)
    side = 1 << plan.L
    cell_dir = Path(plan.spill) / "cells"
    for blk in read_range(plan.info, start, stop, plan.chunk):
        n = len(blk.x)
        stats.points += n
        stats.class_counts += np.bincount(blk.classification, minlength=256)
        if blk.rgb is not None and n:
            stats.rgb_max = max(stats.rgb_max, int(blk.rgb.max()))
        u = _quantize(plan, plan.mapper(blk.x, blk.y, blk.z), blk.start)
        keep = None
        t = taken[(taken >= blk.start) & (taken < blk.start + n)]
        if len(t):
            keep = np.ones(n, bool)
            keep[t - blk.start] = False
        rec = np.empty(n, SPILL)
        rec["u"] = u
        if blk.rgb is not None:
            rec["rgb"] = blk.rgb
        else:
            rec["rgb"] = 0
        rec["intensity"] = blk.intensity
        rec["cls"] = blk.classification
        c = u >> shift
        cid = (c[:, 0].astype(np.int64) * side + c[:, 1]) * side + c[:, 2]
        if keep is not None:
            kept = np.flatnonzero(keep)
            rec, cid = np.take(rec, kept), cid[kept]
        _append_by_cell(cell_dir, plan.L, side, rec, cid, start)
    return stats


def _append_by_cell(folder: Path, level: int, side: int, rec: np.ndarray, cid: np.ndarray,
                    task: int) -> None:
    if not len(rec):
        return
    small = cid.max() < 65536
    order = np.argsort(cid.astype(np.uint16) if small else cid, kind="stable")  # radix sort
    cid = cid[order]
    rec = np.take(rec, order)
    starts = np.flatnonzero(np.r_[True, cid[1:] != cid[:-1]])
    ends = np.r_[starts[1:], len(cid)]
    for a, b in zip(starts, ends, strict=True):
        c = int(cid[a])
        cx, cy, cz = c // (side * side), (c // side) % side, c % side
        # one file per (cell, distribute task), named by the task's first point: read back
        # in name order, a cell's points come in file order whichever process read them,
        # so a cell is tiled the same way by one job or by a chunk job of a split survey
        with open(folder / f"{level}-{cx}-{cy}-{cz}.{task:012d}.bin", "ab") as fh:
            fh.write(rec[a:b].tobytes())


def write_node(plan: Plan, key: NodeKey, rec: np.ndarray) -> NodeInfo:
    lv, x, y, z = key
    enu = _enu_of(plan, rec["u"])
    rgb = rec["rgb"]
    if plan.colour == "u8":
        rgb = np.minimum(rgb, 255).astype(np.uint8)
    glb, lo, hi = points_glb(enu, rgb, rec["intensity"], rec["cls"], plan.colour)
    uri = f"{CONTENT_DIR}/{lv}/{x}-{y}-{z}.glb"
    write_bytes_atomic(Path(plan.out) / uri, glb)
    return NodeInfo(len(rec), tuple(lo.tolist()), tuple(hi.tolist()), uri, len(glb))


def _occupancy(plan: Plan, keys: np.ndarray, bits: int, cell_level: int, u: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    starts = octree.node_runs(keys, bits, plan.F - cell_level)
    z = u[:, 2].astype(np.int64)
    zlo = np.minimum.reduceat(z, starts)
    zhi = np.maximum.reduceat(z, starts)
    xy = u[starts, :2] >> np.uint32(plan.R - plan.F)
    return xy[:, 0].astype(np.int64), xy[:, 1].astype(np.int64), zlo, zhi


def tile_cell(plan: Plan, level: int, cell: tuple[int, int, int], files: list[str],
              keep_files: bool = False) -> CellResult:
    """Load a spill cell (and delete its files unless ``keep_files``: a chunk job that may
    be retried keeps them) and tile it."""
    files = sorted(files)
    rec = np.concatenate([np.fromfile(f, SPILL) for f in files]) if files else np.empty(0, SPILL)
    if not keep_files:
        for f in files:
            os.unlink(f)
    return _tile_records(plan, level, cell, rec)


def _tile_records(plan: Plan, level: int, cell: tuple[int, int, int], rec: np.ndarray
                  ) -> CellResult:
    n = len(rec)
    side_bits = plan.R - level
    if n > plan.cell_target * 2 and level < min(plan.P + octree.GRID_BITS, plan.R):
        # too dense for one piece: split into the 8 children, the node at ``level`` becomes
        # a shared one (its points go through the shared spill like the other upper levels)
        sub = (rec["u"] >> np.uint32(side_bits - 1)) & np.uint32(1)
        idx = (sub[:, 0] << 2 | sub[:, 1] << 1 | sub[:, 2]).astype(np.uint8)
        order = np.argsort(idx, kind="stable")
        rec, idx = np.take(rec, order), idx[order]
        bounds = np.searchsorted(idx, np.arange(9))
        out = CellResult({}, 0, (np.empty(0, np.int64),) * 4)
        occ = []
        for i in range(8):
            part = rec[bounds[i]:bounds[i + 1]]
            if not len(part):
                continue
            child = (cell[0] * 2 + (i >> 2), cell[1] * 2 + (i >> 1 & 1), cell[2] * 2 + (i & 1))
            r = _tile_records(plan, level + 1, child, part.copy())
            out.nodes.update(r.nodes)
            out.points += r.points
            occ.append(r.occupancy)
        out.occupancy = tuple(np.concatenate([o[j] for o in occ]) for j in range(4))  # type: ignore[assignment]
        return out

    bits = min(side_bits, 14 if n <= 1 << octree.PACK_INDEX_BITS else octree.MAX_KEY_BITS)
    origin = np.array(cell, np.uint32) << np.uint32(side_bits)
    w = (rec["u"] - origin) >> np.uint32(side_bits - bits)
    keys = octree.morton(w[:, 0], w[:, 1], w[:, 2], bits)
    order, keys = octree.sort_by_key(keys, bits)
    rec = np.take(rec, order)
    levels = octree.assign_levels(keys, bits, level, plan.P, leaf_max=plan.leaf_max)
    nodes: dict[NodeKey, NodeInfo] = {}
    by_level = np.argsort(levels, kind="stable")
    lv_sorted = levels[by_level]
    lv_starts = np.flatnonzero(np.r_[True, lv_sorted[1:] != lv_sorted[:-1]])
    lv_ends = np.r_[lv_starts[1:], len(lv_sorted)]
    for a, b in zip(lv_starts, lv_ends, strict=True):
        lv = int(lv_sorted[a])
        idx = by_level[a:b]
        if lv < level:  # a node above this cell: shared with the neighbouring cells
            k = tuple(int(v) >> (level - lv) for v in cell)
            # one file per (shared node, cell), written whole: a retried cell rewrites its
            # own files instead of adding its points twice
            path = (Path(plan.spill) / "shared" / f"{lv}-{k[0]}-{k[1]}-{k[2]}."
                    f"{level:02d}-{cell[0]:07d}-{cell[1]:07d}-{cell[2]:07d}.bin")
            with open(path, "wb") as fh:
                fh.write(np.take(rec, idx).tobytes())
            continue
        starts = octree.node_runs(keys[idx], bits, lv - level)
        ends = np.r_[starts[1:], len(idx)]
        for s, e in zip(starts, ends, strict=True):
            part = np.take(rec, idx[s:e])
            c = part["u"][0] >> np.uint32(plan.R - lv)
            key = (lv, int(c[0]), int(c[1]), int(c[2]))
            nodes[key] = write_node(plan, key, part)
    return CellResult(nodes, n, _occupancy(plan, keys, bits, level, rec["u"]))


def tile_shared(plan: Plan, key: NodeKey, files: list[str]) -> NodeInfo:
    rec = np.concatenate([np.fromfile(f, SPILL) for f in sorted(files)])
    for f in files:
        os.unlink(f)
    return write_node(plan, key, rec)


# --- the run ---------------------------------------------------------------------------

@dataclass
class RunOutput:
    plan: Plan
    to_wgs: ToWgs84
    nodes: dict[NodeKey, NodeInfo]
    stats: ReadStats
    occupancy: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    first_view_s: float | None
    tileset_bytes: int
    timings: dict[str, float] = field(default_factory=dict)


def _fills_area(u: np.ndarray, R: int, depth: int) -> bool:
    """Does the sample fill the area at grid ``depth`` as it does one level coarser?

    Halving the grid cell quadruples the occupied cells of a surface the sample covers; it
    only doubles them when the sample is a set of strips (LAZ is sampled as the heads of its
    chunks: short runs of scan lines). A coarse level built from strips would stay striped
    in the final tileset, so such levels are left to the full pass."""
    def occupied(d: int) -> int:
        xy = (u[:, :2] >> np.uint32(max(R - d, 0))).astype(np.int64)
        return len(np.unique((xy[:, 0] << 32) | xy[:, 1]))

    return occupied(depth) >= 3 * occupied(depth - 1)


def _sample_ranges(info: SourceInfo, target: int) -> list[tuple[int, int]]:
    n = info.point_count
    if target >= n:
        return [(0, n)]
    if info.compressed and info.laz_chunk_size:
        # whole LAZ chunks can be sought to directly: take the head of evenly spread chunks
        cs = info.laz_chunk_size
        n_chunks = -(-n // cs)
        k = min(n_chunks, 1000)
        chunks = np.unique(np.linspace(0, n_chunks - 1, k).round().astype(np.int64))
        m = max(1, min(cs, -(-target // len(chunks))))
        return [(int(c) * cs, int(min(m, n - c * cs))) for c in chunks]
    if info.chunks is not None:
        return _variable_chunk_sample(info, target)
    k = 256 if info.compressed else 4096
    m = max(1, -(-target // k))
    starts = np.unique(np.linspace(0, n - m, k).round().astype(np.int64))
    return [(int(s), m) for s in starts]


def _variable_chunk_sample(info: SourceInfo, target: int) -> list[tuple[int, int]]:
    """Whole chunks (they are decoded whole anyway). COPC: the chunks of the top levels of its
    octree, coarsest first: COPC writers put an even subsample of the whole survey there, which
    is what the preview levels need. Other files: chunks evenly spread over the file."""
    assert info.chunks is not None
    counts = np.array([c[0] for c in info.chunks], np.int64)
    first = info.chunk_starts()
    if info.chunk_levels is not None:
        levels = np.asarray(info.chunk_levels)
        order = np.lexsort((np.arange(len(counts)), levels))
        # whole levels only: part of a level covers part of the area
        total = np.cumsum(counts[order])
        lv_sorted = levels[order]
        last_of_level = np.r_[lv_sorted[1:] != lv_sorted[:-1], True]
        fits = last_of_level & (total <= max(target, int(counts[order][0])))
        end = int(np.flatnonzero(fits)[-1]) + 1 if fits.any() else 1
        pick = np.sort(order[:end])
        return [(int(first[c]), int(counts[c])) for c in pick]
    k = max(1, min(len(counts), -(-target // max(1, int(counts.mean())))))
    pick = np.unique(np.linspace(0, len(counts) - 1, k).round().astype(np.int64))
    m = max(1, -(-target // len(pick)))
    return [(int(first[c]), int(min(m, counts[c]))) for c in pick]


def _task_bounds(info: SourceInfo, step: int) -> list[int]:
    """Where the distribute tasks start and end: whole LAZ chunks per task."""
    n = info.point_count
    if info.chunks is not None:
        starts = info.chunk_starts()
        cuts = [0]
        for s in starts[1:-1]:
            if s - cuts[-1] >= step:
                cuts.append(int(s))
        return [*cuts, n]
    if info.compressed and info.laz_chunk_size:
        step = max(1, step // info.laz_chunk_size) * info.laz_chunk_size
    return [*range(0, n, step), n]


def run(src: Path, out_dir: Path, *, crs: str | None, vertical: str | None,
        progress: Progress | None, on_preview: Callable[[Path], None] | None,
        settings: Settings) -> RunOutput:
    t0 = time.perf_counter()
    report = progress or (lambda stage, done, total: None)
    info = inspect_source(src)
    n = info.point_count
    resolve_crs(info, crs)  # refuse a missing CRS before starting any process
    # small uncompressed files are tiled in this process; LAZ is always decoded in worker
    # processes, so the calling process never holds lazrs state it could fork
    inline = not info.compressed and (n <= settings.inprocess_max_points
                                      or settings.workers <= 1)
    ex = _make_executor(settings.workers, inline)
    spill = None
    try:
        to_wgs, mapper, cube_min, q, R = make_plan_base(info, crs, vertical)
        t_plan = time.perf_counter() - t0
        out_dir.mkdir(parents=True, exist_ok=True)
        spill = Path(tempfile.mkdtemp(prefix=".spill-", dir=out_dir))
        out = _run(info, out_dir, spill, ex, to_wgs, mapper, cube_min, q, R, report,
                   on_preview, settings, t0)
        out.timings = {"plan": round(t_plan, 3), **out.timings}
        return out
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)


def _run(info: SourceInfo, out_dir: Path, spill: Path, ex: Executor, to_wgs: ToWgs84,
         mapper: LocalMapper, cube_min: tuple[float, float, float], q: float, R: int,
         report: Progress, on_preview: Callable[[Path], None] | None, settings: Settings,
         t0: float) -> RunOutput:
    prep = prepare(info, out_dir, spill, ex, to_wgs, mapper, cube_min, q, R, report,
                   on_preview, settings, t0)
    # ---- tile the cells, largest first
    cells = spill_cells(spill)
    sizes = {k: sum(os.path.getsize(f) for f in v) for k, v in cells.items()}
    todo = sorted(cells, key=lambda k: -sizes[k])
    rest_total = info.point_count - prep.taken
    futs2 = [ex.submit(tile_cell, prep.plan, k[0], k[1:], cells[k]) for k in todo]
    done = 0
    report("tiling", 0, rest_total)
    for f in as_completed(futs2):
        r = f.result()
        prep.add_cell(r)
        done += r.points
        report("tiling", done, rest_total)
    prep.marks["cells_tiled"] = time.perf_counter() - t0
    return finish(prep, ex, report, t0)


@dataclass
class Prepared:
    """A run up to its spill cells: what the cells' tiling and :func:`finish` need (pickled
    into the spill folder when the cells are tiled by separate chunk jobs)."""

    plan: Plan
    to_wgs: ToWgs84
    nodes: dict[NodeKey, NodeInfo]
    stats: ReadStats
    occ_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    first_view_s: float | None
    taken: int  # points kept by the preview levels
    marks: dict[str, float] = field(default_factory=dict)

    def add_cell(self, r: CellResult) -> None:
        self.nodes.update(r.nodes)
        self.occ_parts.append(r.occupancy)


def spill_cells(spill: Path) -> dict[tuple[int, int, int, int], list[str]]:
    """The spill cells (level, x, y, z) and their files, as the distribute pass left them."""
    cells: dict[tuple[int, int, int, int], list[str]] = defaultdict(list)
    for p in (spill / "cells").iterdir():
        lv, x, y, z = (int(v) for v in p.name.split(".")[0].split("-"))
        cells[(lv, x, y, z)].append(str(p))
    return {k: sorted(v) for k, v in cells.items()}


def prepare(info: SourceInfo, out_dir: Path, spill: Path, ex: Executor, to_wgs: ToWgs84,
            mapper: LocalMapper, cube_min: tuple[float, float, float], q: float, R: int,
            report: Progress, on_preview: Callable[[Path], None] | None, settings: Settings,
            t0: float) -> Prepared:
    """Plan, preview and distribute: every point not in the preview levels is in the spill
    file of its cell when this returns."""
    n = info.point_count
    report("reading", 0, n)
    marks = {"workers_started": time.perf_counter() - t0}
    # ---- preview sample
    # 1/40 of the file, but never more than ``sample_max``: the main process holds the sample,
    # and its memory must not grow with the file
    target = min(n, max(settings.sample_points, min(n // 40, settings.sample_max)))
    sample = ex.submit(read_sample, info, _sample_ranges(info, target),
                       settings.chunk_points).result()
    marks["sample_read"] = time.perf_counter() - t0
    # the CRS plausibility check needs no more than a few thousand points
    every = max(1, len(sample.x) // 20_000)
    _checked_lonlat(to_wgs, sample.x[::every], sample.y[::every],
                    sample.z[::every] * mapper.z_factor, info)
    gps_min = float(sample.gps_time.min()) if sample.gps_time is not None else math.inf
    colour = "none"
    if sample.rgb is not None:
        colour = "u16" if int(sample.rgb.max(initial=0)) > 255 else "u8"
    base = Plan(info=info, mapper=mapper, cube_min=cube_min, q=q, R=R, L=0, P=1, F=0,
                colour=colour, leaf_max=settings.leaf_max, cell_target=settings.cell_target,
                chunk=settings.chunk_points, spill=str(spill), out=str(out_dir))
    su = _quantize(base, mapper(sample.x, sample.y, sample.z), 0)
    bits = min(R, octree.MAX_KEY_BITS)
    sk = octree.morton(*(su >> np.uint32(R - bits)).T)
    sorder = np.argsort(sk, kind="stable")
    sk, su = sk[sorder], su[sorder]
    assert sample.index is not None
    s_index = sample.index[sorder]
    levels = np.full(len(sk), -1, np.int16)
    P = 0
    remaining = np.arange(len(sk))
    whole = target >= n
    for lv in range(settings.preview_levels_max):
        # a sample that is the whole file decides leaves too (it knows every point)
        sel = octree.assign_levels(sk[remaining], bits, 0, lv, lv + 1,
                                   leaf_max=settings.leaf_max if whole else None)
        took = int((sel == lv).sum())
        if lv > 0 and (took == 0 or len(remaining) < 3 * took) and not whole:
            break  # the sample is too thin to stand for this level
        if lv > 0 and not whole and not _fills_area(su, R, lv + octree.GRID_BITS):
            break  # the sample covers lines, not the area, at this level's grid
        levels[remaining[sel == lv]] = lv
        remaining = remaining[sel != lv]
        P = lv + 1
        if not len(remaining):
            break
    taken_mask = levels >= 0
    taken = np.sort(s_index[taken_mask])
    # ---- cell level: smallest with cells of at most ``cell_target`` points (by the sample)
    rest = su[~taken_mask]
    scale = (n - len(taken)) / max(1, len(rest))
    L = 0
    want_cells = 2 * settings.workers if n > settings.inprocess_max_points else 1
    while min(P + octree.GRID_BITS, R) > L:
        c = rest >> np.uint32(R - L)
        cid = (c[:, 0].astype(np.int64) << 42) | (c[:, 1].astype(np.int64) << 21) | c[:, 2]
        _, counts = np.unique(cid, return_counts=True) if len(cid) else (None, np.zeros(1))
        if counts.max() * scale <= settings.cell_target and len(counts) >= want_cells:
            break
        L += 1
    # footprint cells: about 1/512 of the extent, not finer than ~0.5 m
    F = max(0, min(R, math.ceil(math.log2(base.side_m / max(base.side_m / 512, 0.5)))))
    plan = Plan(**{**base.__dict__, "L": L, "P": P, "F": F})
    (spill / "cells").mkdir()
    (spill / "shared").mkdir()

    marks["preview_selected"] = time.perf_counter() - t0
    stats = ReadStats()
    stats.gps_min = gps_min

    def submit_distribute() -> list[Future]:
        cuts = _task_bounds(info, settings.task_points)
        return [ex.submit(distribute, plan, a, b, taken[(taken >= a) & (taken < b)])
                for a, b in itertools.pairwise(cuts)]

    # with worker processes, the full pass starts now and the preview is written meanwhile;
    # in-process, the preview comes first
    futs = [] if isinstance(ex, _InlineExecutor) else submit_distribute()

    # ---- preview content and tileset
    nodes: dict[NodeKey, NodeInfo] = {}
    frame = mapper.frame
    tileset_path = out_dir / "tileset.json"
    occ_parts = []
    if taken_mask.any():
        idx = np.flatnonzero(taken_mask)
        lv_of = levels[idx]
        sel_u = su[idx]
        shifts = (R - lv_of).astype(np.uint32)
        node_xyz = sel_u >> shifts[:, None]
        gkey = np.column_stack([lv_of.astype(np.int64), node_xyz.astype(np.int64)])
        order = np.lexsort(gkey.T[::-1])
        gkey = gkey[order]
        starts = np.flatnonzero(np.r_[True, (gkey[1:] != gkey[:-1]).any(axis=1)])
        ends = np.r_[starts[1:], len(gkey)]
        srec = np.empty(len(idx), SPILL)
        pick = sorder[idx][order]
        srec["u"] = su[idx][order]
        srec["rgb"] = sample.rgb[pick] if sample.rgb is not None else 0
        srec["intensity"] = sample.intensity[pick]
        srec["cls"] = sample.classification[pick]
        for a, b in zip(starts, ends, strict=True):
            key = tuple(int(v) for v in gkey[a])
            nodes[key] = write_node(plan, key, srec[a:b])  # type: ignore[arg-type]
        xy = srec["u"][:, :2] >> np.uint32(R - F)
        zz = srec["u"][:, 2].astype(np.int64)
        occ_parts.append((xy[:, 0].astype(np.int64), xy[:, 1].astype(np.int64), zz, zz))
    extras = {"twinbase": {"stage": "preview", "points": len(taken)}}
    write_json_atomic(
        tileset_path, build_tileset(nodes, transform=frame.matrix(), root_side_m=plan.side_m,
                                    grid_bits=octree.GRID_BITS, final=False, extras=extras))
    first_view = time.perf_counter() - t0
    if on_preview is not None:
        on_preview(tileset_path)
    del sample, su, sk, s_index, levels, rest  # the sample is done with: free its memory

    # ---- distribute (already running in the workers while the preview was written)
    if not futs:
        futs = submit_distribute()
    for f in as_completed(futs):
        stats.add(f.result())
        report("reading", stats.points, n)
    if stats.points != n:
        raise PointCountMismatchError(
            f"{info.path.name}: the header says {n} points but {stats.points} were read; the "
            "header is wrong or the file is damaged")
    marks["distributed"] = time.perf_counter() - t0
    return Prepared(plan, to_wgs, nodes, stats, occ_parts, first_view, len(taken), marks)


def finish(prep: Prepared, ex: Executor, report: Progress, t0: float) -> RunOutput:
    """Once every cell is tiled: the nodes shared by several cells, then the final
    ``tileset.json``."""
    plan, nodes, marks = prep.plan, prep.nodes, prep.marks
    n = plan.info.point_count
    spill = Path(plan.spill)
    out_dir = Path(plan.out)
    frame = plan.mapper.frame
    tileset_path = out_dir / "tileset.json"

    # ---- nodes shared by several cells
    shared: dict[NodeKey, list[str]] = defaultdict(list)
    for p in (spill / "shared").iterdir():
        lv, x, y, z = (int(v) for v in p.name.split(".")[0].split("-"))
        shared[(lv, x, y, z)].append(str(p))
    shared_total = sum(os.path.getsize(f) for v in shared.values() for f in v) // SPILL.itemsize
    report("writing", 0, shared_total)
    futs3 = {ex.submit(tile_shared, plan, k, v): k for k, v in shared.items()}
    wdone = 0
    for f in as_completed(futs3):
        node = f.result()
        nodes[futs3[f]] = node
        wdone += node.count
        report("writing", wdone, shared_total)

    marks["shared_written"] = time.perf_counter() - t0
    written = sum(v.count for v in nodes.values())
    if written != n:
        raise RuntimeError(f"internal error: {written} points tiled of {n}")
    occupancy = tuple(np.concatenate([o[j] for o in prep.occ_parts]) for j in range(4))
    extras = {"twinbase": {"stage": "final", "points": n}}
    tileset_bytes = write_json_atomic(
        tileset_path, build_tileset(nodes, transform=frame.matrix(), root_side_m=plan.side_m,
                                    grid_bits=octree.GRID_BITS, final=True, extras=extras))
    marks["assembled"] = time.perf_counter() - t0
    return RunOutput(plan, prep.to_wgs, nodes, prep.stats, occupancy,  # type: ignore[arg-type]
                     prep.first_view_s, tileset_bytes, {k: round(v, 3) for k, v in marks.items()})



def lonlat_bounds(plan: Plan, ix: Iterable[int], iy: Iterable[int], zlo: np.ndarray,
                  zhi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geodetic (lon, lat, h) of occupied cell centres at their lowest and highest point."""
    frame = plan.mapper.frame
    cell_q = 2 ** (plan.R - plan.F)
    cx = np.asarray(plan.cube_min[0]) + (np.asarray(ix) + 0.5) * cell_q * plan.q
    cy = np.asarray(plan.cube_min[1]) + (np.asarray(iy) + 0.5) * cell_q * plan.q
    z0 = plan.cube_min[2] + (np.asarray(zlo) + 0.5) * plan.q
    z1 = plan.cube_min[2] + (np.asarray(zhi) + 0.5) * plan.q
    lo = ecef_to_geodetic(frame.to_ecef(np.column_stack([cx, cy, z0])))
    hi = ecef_to_geodetic(frame.to_ecef(np.column_stack([cx, cy, z1])))
    return lo, hi


def describe(plan: Plan) -> dict[str, Any]:
    return {"levels_from_sample": plan.P, "cell_level": plan.L, "root_side_m": plan.side_m,
            "quantum_m": plan.q, "fit_error_m": plan.mapper.fit_error_m,
            "fast_transform": plan.mapper.coef is not None}
