"""Ingest of drone LiDAR (LAS / LAZ / COPC): tiles first, then the survey's row.

Coarse levels are published as soon as they exist ("fly and model at once"); the full
tileset replaces them atomically at the end. A file that cannot be read fails the job with
the tiler's operator-readable reason, and nothing is published.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from service.core.tables import jobs
from service.jobs.context import JobContext, JobFailed, load_dataset
from service.jobs.publish import DatasetOutcome, publish
from service.jobs.submit import submit_job
from service.tilesets.storage import tile_store
from service.tilesets.store import begin_version, fail_version, mark_preview, slug_name
from tiler.errors import TilerInputError
from tiler.pointcloud import tile_point_cloud


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
              "first_view_s": first_view.get("job_s"), "tiles": result.tiles,
              "crs": result.crs, "height_note": result.height_note,
              "first_view_since_upload_s": first_view.get("since_upload_s"),
              "tiling_s": round(time.monotonic() - started, 3)}
    try:
        # the survey's row, the switch to the new version and the job's success in one
        # transaction, owned by this attempt: an attempt given up for dead publishes nothing
        with ctx.engine.begin() as conn:
            if model_after(options):
                # fly and model: the buildings of the survey follow as a job of their own
                # (by kind: the CIM domain does it), queued only if the survey is published
                report["model_job_id"] = submit_job(
                    conn, "model_survey", dataset_id=row.id, created_by="ingest_lidar",
                    max_attempts=ctx.settings.job_max_attempts)
            publish(ctx, conn, dataset=DatasetOutcome(
                stats=stats, crs=result.crs, height_note=result.height_note,
                footprint=result.footprint, bounds3d=_bounds(result.bounds),
                acquired_at=result.acquired_at), version=tv, tileset_stats=stats, report=report)
    except BaseException:
        fail_version(ctx.engine, tv)
        raise
    return ctx.report


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
