"""One survey tiled by several processes (on several machines) that share one folder.

The single run (``pipeline.run``) in three steps that need not run in the same process:

1. :func:`prepare_split` (one process, with its own worker pool): plan, preview and the
   distribute pass. Every point not in the preview levels is then in the spill file of its
   level-L cell; the run's state is pickled into the spill folder, and the cells are packed
   into chunks. A chunk is a set of whole cells, i.e. of whole subtrees of the octree: the
   levels a cell decides depend on its own points only (``octree``), so chunks need nothing
   from each other.
2. :func:`tile_chunk` (any process, any number at once, in any order, again after a crash):
   tiles the cells of one chunk into content files and leaves its result in the spill
   folder. It reads the spill files without deleting them and writes every file it makes
   whole, under a name fixed by the cell, so running a chunk twice writes the same files.
3. :func:`finish_split` (one process, once every chunk is done): the nodes shared by several
   cells and the final ``tileset.json``.

Cells are read back in file order (spill files are named by distribute task), so the
content is the single run's, byte for byte, whichever process tiled which chunk.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tiler.errors import TilerInputError
from tiler.pointcloud import PointCloudResult, result_of
from tiler.pointcloud.pipeline import (
    SPILL,
    Prepared,
    Settings,
    _InlineExecutor,
    _make_executor,
    finish,
    make_plan_base,
    prepare,
    spill_cells,
    tile_cell,
)
from tiler.pointcloud.source import inspect_source, resolve_crs

STATE = "state.pkl"
RESULTS = "results"
CellKey = tuple[int, int, int, int]


class SplitStateError(TilerInputError):
    """The split's shared folder is not as the prepare step left it: a worker that does not
    see the shared folder, or files damaged or removed meanwhile. Running again does not
    help; the survey is ingested again."""

    code = "split_state"


@dataclass(frozen=True)
class Chunk:
    index: int
    cells: list[tuple[CellKey, int]]  # (level, x, y, z) and its points

    @property
    def points(self) -> int:
        return sum(n for _, n in self.cells)


@dataclass(frozen=True)
class SplitPlan:
    chunks: list[Chunk]
    points: int  # the survey's
    preview_points: int  # written by the prepare step (the preview levels)
    elapsed_s: float


@dataclass
class ChunkResult:
    index: int
    points: int
    tiles: int
    bytes: int
    elapsed_s: float


def pack_chunks(cells: dict[CellKey, int], target: int) -> list[Chunk]:
    """Cells (largest first) packed into chunks of about ``target`` points: a chunk is closed
    once it holds ``target`` points, so no chunk is much larger than its largest cell."""
    chunks: list[Chunk] = []
    current: list[tuple[CellKey, int]] = []
    total = 0
    for key in sorted(cells, key=lambda k: (-cells[k], k)):
        current.append((key, cells[key]))
        total += cells[key]
        if total >= target:
            chunks.append(Chunk(len(chunks), current))
            current, total = [], 0
    if current:
        chunks.append(Chunk(len(chunks), current))
    return chunks


def prepare_split(src: Path, out_dir: Path, spill: Path, *, crs: str | None = None,
                  vertical: str | None = None,
                  progress: Callable[[str, int, int], None] | None = None,
                  on_preview: Callable[[Path], None] | None = None,
                  settings: Settings | None = None,
                  chunk_target: int = 3_000_000) -> SplitPlan:
    """Step 1: preview in ``out_dir``, spill cells and the run's state in ``spill`` (a new
    or empty folder every chunk process can read and write)."""
    t0 = time.perf_counter()
    s = settings or Settings()
    report = progress or (lambda stage, done, total: None)
    src, out_dir, spill = Path(src), Path(out_dir), Path(spill)
    info = inspect_source(src)
    resolve_crs(info, crs)
    if (out_dir / "tileset.json").exists():
        raise FileExistsError(f"{out_dir} already holds a tileset; tile into a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    if spill.exists():
        shutil.rmtree(spill)
    spill.mkdir(parents=True)
    inline = not info.compressed and (info.point_count <= s.inprocess_max_points
                                      or s.workers <= 1)
    ex = _make_executor(s.workers, inline)
    try:
        to_wgs, mapper, cube_min, q, R = make_plan_base(info, crs, vertical)
        prep = prepare(info, out_dir, spill, ex, to_wgs, mapper, cube_min, q, R, report,
                       on_preview, s, t0)
    except BaseException:
        (out_dir / "tileset.json").unlink(missing_ok=True)
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    cells = {k: sum(os.path.getsize(f) for f in v) // SPILL.itemsize
             for k, v in spill_cells(spill).items()}
    chunks = pack_chunks(cells, chunk_target)
    _write_pickle(spill / STATE, (prep, chunks))
    (spill / RESULTS).mkdir()
    return SplitPlan(chunks, info.point_count, prep.taken, time.perf_counter() - t0)


def _load_state(spill: Path) -> tuple[Prepared, list[Chunk]]:
    try:
        with (spill / STATE).open("rb") as fh:
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        raise SplitStateError(
            f"the split survey's shared folder {spill} cannot be read here ({exc}); every "
            "worker must see the same data folder (see README: Several machines). Ingest "
            "the survey again") from exc


def tile_chunk(spill: Path, index: int, out_dir: Path,
               progress: Callable[[str, int, int], None] | None = None) -> ChunkResult:
    """Step 2: tile the cells of chunk ``index`` into ``out_dir`` (content files only), in
    this process. Safe to run again, also after a crash halfway."""
    t0 = time.perf_counter()
    spill, out_dir = Path(spill), Path(out_dir)
    prep, chunks = _load_state(spill)
    if not 0 <= index < len(chunks):
        raise SplitStateError(f"the split survey has no chunk {index}")
    chunk = chunks[index]
    plan = replace(prep.plan, out=str(out_dir), spill=str(spill))
    files = spill_cells(spill) if (spill / "cells").is_dir() else {}
    nodes, occ, done = {}, [], 0
    for key, expected in chunk.cells:
        paths = files.get(key, [])
        found = sum(os.path.getsize(f) for f in paths)
        if found != expected * SPILL.itemsize:
            raise SplitStateError(
                f"chunk {index}: cell {key} holds {found / SPILL.itemsize:g} points in "
                f"{spill / 'cells'}, {expected} were distributed to it; the split's shared "
                "files were damaged or removed. Ingest the survey again")
        r = tile_cell(plan, key[0], key[1:], paths, keep_files=True)
        nodes.update(r.nodes)
        occ.append(r.occupancy)
        done += r.points
        if progress is not None:
            progress("tiling", done, chunk.points)
    _write_pickle(spill / RESULTS / f"chunk-{index:06d}.pkl", (nodes, occ))
    return ChunkResult(index, done, len(nodes), sum(v.nbytes for v in nodes.values()),
                       time.perf_counter() - t0)


def finish_split(spill: Path, out_dir: Path, *, workers: int = 2,
                 progress: Callable[[str, int, int], None] | None = None) -> PointCloudResult:
    """Step 3, once every chunk is done: shared nodes and the final ``tileset.json`` into
    ``out_dir``; the result as :func:`tiler.pointcloud.tile_point_cloud` gives it."""
    t0 = time.perf_counter()
    spill, out_dir = Path(spill), Path(out_dir)
    prep, chunks = _load_state(spill)
    prep.plan = replace(prep.plan, out=str(out_dir), spill=str(spill))
    for chunk in chunks:
        path = spill / RESULTS / f"chunk-{chunk.index:06d}.pkl"
        try:
            with path.open("rb") as fh:
                nodes, occ = pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise SplitStateError(f"chunk {chunk.index} left no result in {spill} ({exc}); "
                                  "ingest the survey again") from exc
        prep.nodes.update(nodes)
        prep.occ_parts.extend(occ)
    report = progress or (lambda stage, done, total: None)
    shared = sum(1 for _ in (spill / "shared").iterdir())
    # the shared nodes are few and coarse: a pool pays off only when there are many
    ex = _make_executor(workers, False) if shared > 32 and workers > 1 else _InlineExecutor()
    try:
        out = finish(prep, ex, report, t0)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    return result_of(out, t0)


def _write_pickle(path: Path, value: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
