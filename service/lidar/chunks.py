"""The chunks of a split LiDAR survey: one ``lidar_chunk`` job each, taken by any worker.

The ingest job (:mod:`service.lidar.ingest`) left the survey in the shared split folder and
queued the chunk jobs. Each tiles its chunk (whole octree cells) into content files under
the tileset version's prefix in the tile store, then, in one transaction that holds the
split's row, marks its chunk done and counts it. The job whose count reaches the number of
chunks is the split's finisher: it builds the top of the octree (nodes shared by several
cells and the tileset.json) and publishes the survey as its ingest job would have, in the
transaction that also records its own success, so the version switches once every chunk's
files are in the store, and only then.

A killed chunk job is retried (the reaper's requeue); its chunk writes the same files again
and is counted once. A chunk that fails for a reason a retry cannot fix (its shared files
damaged or not reachable from its worker), or that runs out of attempts, fails the ingest
job with the reason: the version is removed, the previous one stays current, and the chunk
jobs not started yet are failed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Float, cast, func, select, update

from service.core.db import sync_engine
from service.core.settings import Settings
from service.core.tables import datasets, jobs, tilesets
from service.jobs.cleanup import discard_failed_sources, fail_job_in
from service.jobs.context import AttemptLost, JobContext, JobFailed
from service.jobs.execute import WORKER_NAME
from service.lidar.ingest import publish_survey
from service.lidar.tables import lidar_chunks, lidar_splits
from service.tilesets.storage import TileStore, tile_store
from service.tilesets.store import TilesetVersion, VersionAbandoned, remove_version_files
from tiler.errors import TilerInputError
from tiler.pointcloud.split import ChunkResult, finish_split, tile_chunk

log = logging.getLogger(__name__)


def tile_lidar_chunk(ctx: JobContext) -> dict[str, Any]:
    parent_id, index = int(ctx.params["split_job"]), int(ctx.params["chunk"])
    split = _split_row(ctx.engine, parent_id)
    if split is None or split.status in ("failed", "published"):
        why = split.error if split is not None and split.error else "it is over"
        raise JobFailed(f"chunk {index} of ingest job {parent_id} is not needed: {why}")
    started = time.monotonic()
    try:
        result = _tile(tile_store(ctx.settings), Path(split.spill), index, split.prefix, ctx)
    except TilerInputError as exc:
        message = f"chunk {index + 1} of {split.chunks} failed: {exc}"
        fail_split(ctx.engine, ctx.settings, parent_id, message)
        raise JobFailed(message) from exc
    report = {"split_job": parent_id, "chunk": index, "points": result.points,
              "tiles": result.tiles, "bytes": result.bytes,
              "tiling_s": round(result.elapsed_s, 3),
              "job_s": round(time.monotonic() - started, 3)}
    with ctx.engine.begin() as conn:
        ctx.hold(conn)
        finisher = _count(conn, ctx, parent_id, index, result)
        if finisher != ctx.job_id:
            ctx.succeed_in(conn, report)
            return ctx.report
    # this job counted the last chunk (or is the retry of the job that did): finish
    _finish(ctx, parent_id, split, report)
    return ctx.report


def _split_row(engine: Engine, parent_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(lidar_splits, tilesets.c.name, tilesets.c.version,
                   tilesets.c.path.label("prefix"))
            .join(tilesets, tilesets.c.id == lidar_splits.c.tileset_id)
            .where(lidar_splits.c.job_id == parent_id)).first()


def _tile(store: TileStore, spill: Path, index: int, prefix: str,
          ctx: JobContext) -> ChunkResult:
    """The chunk's content files, in the version's folder (local store) or uploaded under
    its prefix (object store) before the chunk is counted."""
    local = store.local_dir(prefix)
    if local is not None:
        return tile_chunk(spill, index, local, progress=ctx.progress)
    store.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".chunk-{index}-", dir=store.work_dir) as tmp:
        result = tile_chunk(spill, index, Path(tmp), progress=ctx.progress)
        store.put_dir(Path(tmp), prefix, progress=lambda done, total: ctx.progress(
            "storing tiles", done, total))
    return result


def _count(conn: Connection, ctx: JobContext, parent_id: int, index: int,
           result: ChunkResult) -> int | None:
    """Mark the chunk done and count it, under the split row's lock; the split's finisher
    (this job when its count was the last)."""
    split = conn.execute(select(lidar_splits).where(lidar_splits.c.job_id == parent_id)
                         .with_for_update()).one()
    if split.status == "failed":
        raise JobFailed(f"the ingest of this survey failed meanwhile: {split.error}")
    marked = conn.execute(
        update(lidar_chunks)
        .where(lidar_chunks.c.split_job_id == parent_id, lidar_chunks.c.chunk == index,
               lidar_chunks.c.status == "todo")
        .values(status="done", tiles=result.tiles, bytes=result.bytes,
                elapsed_s=result.elapsed_s, worker=WORKER_NAME, done_at=func.now())
        .returning(lidar_chunks.c.points)).first()
    if marked is None:  # counted by an attempt that was then lost: count it once
        return split.finisher
    done = split.chunks_done + 1
    last = done == split.chunks
    conn.execute(update(lidar_splits).where(lidar_splits.c.job_id == parent_id).values(
        chunks_done=done, updated_at=func.now(),
        **({"status": "finishing", "finisher": ctx.job_id} if last else {})))
    # the ingest job's progress bar (advisory: it is not this attempt's job)
    items = jobs.c.items_done + marked.points
    conn.execute(update(jobs).where(jobs.c.id == parent_id, jobs.c.status == "running")
                 .values(items_done=items, updated_at=func.now(),
                         progress=func.least(1.0, cast(items, Float) / func.nullif(
                             jobs.c.items_total, 0))))
    return ctx.job_id if last else split.finisher


def _finish(ctx: JobContext, parent_id: int, split: Any, report: dict[str, Any]) -> None:
    with ctx.engine.connect() as conn:
        parent = conn.execute(select(jobs).where(jobs.c.id == parent_id)).one()
        options = conn.execute(select(datasets.c.options).where(
            datasets.c.id == parent.dataset_id)).scalar()
    if parent.status != "running":
        raise JobFailed(f"ingest job {parent_id} is {parent.status}; its survey is not "
                        "published")
    # the ingest job's own context: its attempt number fences the publication
    pctx = JobContext(job_id=parent_id, kind=parent.kind, dataset_id=parent.dataset_id,
                      params=dict(parent.params or {}), engine=ctx.engine,
                      settings=ctx.settings, bookkeeping=ctx.bookkeeping,
                      attempt=parent.attempts)
    store = tile_store(ctx.settings)
    tv = TilesetVersion(split.tileset_id, split.name, split.version,
                        store.work_dir / split.prefix, store)
    spill = Path(split.spill)
    started = time.monotonic()

    def also(conn: Connection) -> None:
        conn.execute(update(lidar_splits).where(lidar_splits.c.job_id == parent_id)
                     .values(status="published", updated_at=func.now()))
        ctx.hold(conn)
        ctx.succeed_in(conn, {**report, "finished_split": parent_id})

    try:
        tv.path.mkdir(parents=True, exist_ok=True)
        result = finish_split(spill, tv.path, progress=pctx.progress)
        with ctx.engine.connect() as conn:
            costs = conn.execute(select(
                func.sum(lidar_chunks.c.elapsed_s), func.max(lidar_chunks.c.elapsed_s),
                func.count()).where(lidar_chunks.c.split_job_id == parent_id)).one()
        publish_survey(pctx, {**(options or {}), **pctx.params}, tv, result, {
            "split": {**(parent.report or {}).get("split", {}),
                      "chunks": split.chunks, "chunk_s_sum": round(costs[0] or 0.0, 3),
                      "chunk_s_max": round(costs[1] or 0.0, 3),
                      "finish_s": round(time.monotonic() - started, 3),
                      "finished_by_job": ctx.job_id}}, also=also, fail_on_error=False)
    except (AttemptLost, VersionAbandoned):
        raise  # taken from this attempt: its retry (or the reaper) settles the split
    except TilerInputError as exc:
        fail_split(ctx.engine, ctx.settings, parent_id, f"the survey's last step failed: {exc}")
        raise JobFailed(str(exc)) from exc
    except BaseException as exc:
        fail_split(ctx.engine, ctx.settings, parent_id,
                   f"the survey's last step failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        pctx.close()
    shutil.rmtree(spill, ignore_errors=True)


def fail_split(engine: Engine, settings: Settings, parent_id: int, message: str) -> bool:
    """Fail a split survey's ingest with ``message``: its job, dataset and tileset version,
    and its chunk jobs not started yet, in one transaction; then its files. False when it
    was over already."""
    with engine.begin() as conn:
        split = conn.execute(select(lidar_splits).where(lidar_splits.c.job_id == parent_id)
                             .with_for_update()).first()
        if split is None or split.status in ("failed", "published"):
            return False
        conn.execute(update(lidar_splits).where(lidar_splits.c.job_id == parent_id).values(
            status="failed", error=message, updated_at=func.now()))
        hidden = fail_job_in(conn, parent_id, message) or []
        waiting = conn.execute(select(lidar_chunks.c.job_id).where(
            lidar_chunks.c.split_job_id == parent_id, lidar_chunks.c.status == "todo",
            lidar_chunks.c.job_id.is_not(None))).scalars().all()
        for job_id in waiting:
            fail_job_in(conn, job_id, f"not run: the survey's ingest failed ({message})",
                        from_status=("queued",))
    log.warning("split survey of job %s failed: %s", parent_id, message)
    remove_version_files(tile_store(settings), hidden)
    shutil.rmtree(split.spill, ignore_errors=True)
    discard_failed_sources(engine, settings)
    return True


def settle_failed_chunks(url: str, settings: Settings) -> int:
    """Chore: a chunk job failed for good outside its handler (the reaper failed it after
    its last attempt's worker died) fails its survey's ingest too, which would otherwise
    wait for it for ever. Returns how many ingests were failed."""
    engine = sync_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(lidar_splits.c.job_id, lidar_splits.c.chunks, lidar_chunks.c.chunk,
                   jobs.c.error)
            .join(lidar_chunks, lidar_chunks.c.split_job_id == lidar_splits.c.job_id)
            .join(jobs, jobs.c.id == lidar_chunks.c.job_id)
            .where(lidar_splits.c.status.in_(("tiling", "finishing")),
                   jobs.c.status == "failed")).all()
    failed = 0
    for row in rows:
        failed += fail_split(engine, settings, row.job_id,
                             f"chunk {row.chunk + 1} of {row.chunks} failed: {row.error}")
    return failed
