"""Ingest of drone LiDAR (LAS / LAZ / COPC): tiles first, then the survey's row.

Coarse levels are published as soon as they exist ("fly and model at once"); the full
tileset replaces them atomically at the end. A file that cannot be read fails the job with
the tiler's operator-readable reason, and nothing is published.

A large survey (``lidar_split_above_points``, or the upload's ``split`` option) is tiled in
chunks by every worker: this job reads the file into the shared split folder and queues one
``lidar_chunk`` job per chunk (:mod:`service.lidar.chunks`), then returns; the job stays
running until the chunk job that counts the last chunk publishes it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select

from service.core.settings import Settings
from service.core.tables import jobs
from service.jobs.context import JobContext, JobFailed, load_dataset
from service.jobs.publish import DatasetOutcome, publish
from service.jobs.submit import submit_job
from service.lidar.tables import lidar_chunks, lidar_splits
from service.tilesets.storage import tile_store
from service.tilesets.store import (
    TilesetVersion,
    begin_version,
    fail_version,
    mark_preview,
    slug_name,
)
from tiler.errors import TilerInputError
from tiler.pointcloud import PointCloudResult, tile_point_cloud
from tiler.pointcloud.source import inspect_source
from tiler.pointcloud.split import finish_split, prepare_split


def ingest_lidar(ctx: JobContext) -> dict[str, Any]:
    row = load_dataset(ctx)
    options = {**(row.options or {}), **ctx.params}
    with ctx.engine.connect() as conn:
        queued_at = conn.execute(select(jobs.c.created_at).where(jobs.c.id == ctx.job_id)
                                 ).scalar_one()
    # surveys of the same area (same `survey` option, or same file name) are versions of one
    # tileset: the newest is current, older ones stay readable at their versioned URLs
    name = slug_name("survey", str(options.get("survey") or row.name))
    tv = begin_version(ctx.bookkeeping, tile_store(ctx.settings), name, "pointcloud",
                       dataset_id=row.id, job_id=ctx.job_id)
    started = time.monotonic()
    first_view: dict[str, float] = {}

    def on_preview(_: Path) -> None:
        mark_preview(ctx.engine, tv, {"preview": True})
        first_view["job_s"] = round(time.monotonic() - started, 3)
        with ctx.engine.connect() as conn:
            since = conn.execute(select(func.extract("epoch", func.now() - queued_at))
                                 ).scalar_one()
        first_view["since_upload_s"] = round(float(since), 3)

    if split_asked(options, Path(row.source_path), ctx.settings):
        return _split(ctx, row, options, tv, on_preview, first_view, started)
    try:
        result = tile_point_cloud(Path(row.source_path), tv.path, crs=options.get("crs"),
                                  vertical=options.get("vertical"), progress=ctx.progress,
                                  on_preview=on_preview)
    except TilerInputError as exc:
        fail_version(ctx.engine, tv)
        raise JobFailed(str(exc)) from exc
    except BaseException:
        fail_version(ctx.engine, tv)
        raise
    report = {"first_view_s": first_view.get("job_s"),
              "first_view_since_upload_s": first_view.get("since_upload_s"),
              "tiling_s": round(time.monotonic() - started, 3)}
    publish_survey(ctx, options, tv, result, report)
    return ctx.report


def publish_survey(ctx: JobContext, options: dict[str, Any], tv: TilesetVersion,
                   result: PointCloudResult, report: dict[str, Any], *,
                   also: Callable[[Connection], None] | None = None,
                   fail_on_error: bool = True) -> None:
    """The survey's row, the switch to its new version and the job's success, in one
    transaction owned by the job's attempt (``ctx``), with ``also`` (the chunk job that
    finishes a split survey records its own success in it); the version is failed if that
    fails, unless the caller does that itself (``fail_on_error`` false)."""
    stats = {
        "points": result.points,
        "class_counts": {str(k): int(v) for k, v in result.class_counts.items()},
        "density_per_m2": round(float(result.density), 3),
        "tiles": result.tiles,
        "bytes": result.bytes,
        "tileset": f"/tiles/{tv.name}/tileset.json",
    }
    ctx.progress("publishing", result.points, result.points)
    report = {"points": result.points, "tileset": tv.name, "version": tv.version,
              "tiles": result.tiles, "crs": result.crs, "height_note": result.height_note,
              **report}
    try:
        # the survey's row, the switch to the new version and the job's success in one
        # transaction, owned by this attempt: an attempt given up for dead publishes nothing
        with ctx.engine.begin() as conn:
            if model_after(options):
                # fly and model: the buildings of the survey follow as a job of their own
                # (by kind: the CIM domain does it), queued only if the survey is published
                report["model_job_id"] = submit_job(
                    conn, "model_survey", dataset_id=ctx.dataset_id, created_by="ingest_lidar",
                    max_attempts=ctx.settings.job_max_attempts)
            publish(ctx, conn, dataset=DatasetOutcome(
                stats=stats, crs=result.crs, height_note=result.height_note,
                footprint=result.footprint, bounds3d=_bounds(result.bounds),
                acquired_at=result.acquired_at), version=tv, tileset_stats=stats, report=report)
            if also is not None:
                also(conn)
    except BaseException:
        if fail_on_error:
            fail_version(ctx.engine, tv)
        raise


def split_asked(options: dict[str, Any], source: Path, settings: Settings) -> bool:
    """Whether a survey is tiled in chunks: as its ``split`` option says, else when its
    header counts more than ``lidar_split_above_points`` points."""
    value = options.get("split")
    if value is not None and value != "":
        if isinstance(value, str):
            return value.strip().lower() not in ("false", "0", "no", "off")
        return bool(value)
    try:
        return inspect_source(source).point_count > settings.lidar_split_above_points
    except TilerInputError:
        return False  # the single path says what is wrong with the file


def split_dir(settings: Settings, job_id: int) -> Path:
    """The folder a split survey's chunks share: on a file system every worker sees."""
    return settings.data_dir / "split" / f"job-{job_id}"


def _split(ctx: JobContext, row: Any, options: dict[str, Any], tv: TilesetVersion,
           on_preview: Any, first_view: dict[str, float], started: float) -> dict[str, Any]:
    """Read the survey into the shared folder, queue its chunk jobs and hand the job over
    to them (it stays running; see :mod:`service.lidar.chunks`)."""
    spill = split_dir(ctx.settings, ctx.job_id)
    try:
        plan = prepare_split(Path(row.source_path), tv.path, spill,
                             crs=options.get("crs"), vertical=options.get("vertical"),
                             progress=ctx.progress, on_preview=on_preview,
                             chunk_target=ctx.settings.lidar_chunk_points)
    except TilerInputError as exc:
        fail_version(ctx.engine, tv)
        shutil.rmtree(spill, ignore_errors=True)
        raise JobFailed(str(exc)) from exc
    except BaseException:
        fail_version(ctx.engine, tv)
        shutil.rmtree(spill, ignore_errors=True)
        raise
    ctx.report.update({
        "split": {"chunks": len(plan.chunks), "prepare_s": round(plan.elapsed_s, 3),
                  "preview_points": plan.preview_points},
        "first_view_s": first_view.get("job_s"),
        "first_view_since_upload_s": first_view.get("since_upload_s")})
    if not plan.chunks:  # the preview levels took every point: finish here
        _finish_here(ctx, options, tv, spill, started)
        return ctx.report
    try:
        with ctx.engine.begin() as conn:
            ctx.hold(conn)
            conn.execute(insert(lidar_splits).values(
                job_id=ctx.job_id, tileset_id=tv.id, spill=str(spill), points=plan.points,
                chunks=len(plan.chunks)))
            for chunk in plan.chunks:
                chunk_job = submit_job(
                    conn, "lidar_chunk", dataset_id=row.id, created_by="ingest_lidar",
                    params={"split_job": ctx.job_id, "chunk": chunk.index},
                    max_attempts=ctx.settings.job_max_attempts)
                conn.execute(insert(lidar_chunks).values(
                    split_job_id=ctx.job_id, chunk=chunk.index, job_id=chunk_job,
                    points=chunk.points))
            ctx.wait_in(conn, "tiling chunks", plan.preview_points, plan.points)
    except BaseException:
        fail_version(ctx.engine, tv)
        shutil.rmtree(spill, ignore_errors=True)
        raise
    return ctx.report


def _finish_here(ctx: JobContext, options: dict[str, Any], tv: TilesetVersion, spill: Path,
                started: float) -> None:
    """A split survey with no chunk (the preview levels took every point)."""
    try:
        result = finish_split(spill, tv.path, progress=ctx.progress)
    except TilerInputError as exc:
        fail_version(ctx.engine, tv)
        raise JobFailed(str(exc)) from exc
    except BaseException:
        fail_version(ctx.engine, tv)
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    publish_survey(ctx, options, tv, result,
                   {"tiling_s": round(time.monotonic() - started, 3)})


def model_after(options: dict[str, Any]) -> bool:
    """Whether a survey is modelled into buildings after its ingest: yes unless its options
    say ``model`` false (upload metadata gives strings)."""
    value = options.get("model", True)
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


def _bounds(b: tuple[float, ...]) -> dict[str, list[float]]:
    """(lon, lat, h) minimum and maximum: degrees and ellipsoidal metres."""
    return {"min": [round(v, 9) for v in b[:3]], "max": [round(v, 9) for v in b[3:]]}
