"""Statements on the ``jobs`` table, shared by the API (async) and workers (sync)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Integer, Select, Update, cast, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB

from service.core.tables import jobs

FINAL = ("succeeded", "failed", "cancelled")


def new_job(kind: str, *, dataset_id: int | None, params: dict[str, Any],
            created_by: str | None, max_attempts: int) -> Insert:
    return (
        insert(jobs)
        .values(kind=kind, dataset_id=dataset_id, params=params, created_by=created_by,
                max_attempts=max_attempts)
        .returning(jobs.c.id)
    )


def link_queue_job(job_id: int, queue_job_id: int) -> Update:
    return update(jobs).where(jobs.c.id == job_id).values(queue_job_id=queue_job_id)


def claim(job_id: int, worker: str) -> Update:
    """queued -> running, counting the attempt; no row back when the job is not queued.

    The attempt number it returns is the attempt's fencing token: every write of an
    attempt's outcome or progress names it, and the reaper's requeue (or a later claim)
    makes it stale, so an attempt that was given up for dead cannot record anything."""
    return (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "queued")
        .values(status="running", attempts=jobs.c.attempts + 1, worker=worker,
                stage="starting", started_at=func.coalesce(jobs.c.started_at, func.now()),
                updated_at=func.now(), error=None)
        .returning(jobs.c.kind, jobs.c.dataset_id, jobs.c.params, jobs.c.attempts)
    )


def owned(job_id: int, attempt: int) -> Select:
    """The job's row, locked, while ``attempt`` still owns it (no row once it does not).
    Taken first in an attempt's last transaction: the reaper, which locks the same row
    to requeue or fail the job, then waits for that transaction, or it for the reaper."""
    return (select(jobs.c.id)
            .where(jobs.c.id == job_id, jobs.c.status == "running",
                   jobs.c.attempts == attempt)
            .with_for_update())


def succeed(job_id: int, attempt: int, report: dict[str, Any],
            last: tuple[str, int, int | None] | None = None) -> Update:
    """running -> succeeded, for the attempt that owns the job (a row back then);
    ``last`` is the job's last progress (stage, done, total) when it was not written on
    its own: a finished job has done all of its items."""
    total = (func.coalesce(literal(last[2], Integer), jobs.c.items_total) if last is not None
             else jobs.c.items_total)
    done = literal(last[1], Integer) if last is not None else jobs.c.items_done
    return (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "running", jobs.c.attempts == attempt)
        .values(status="succeeded", stage="done", progress=1.0, report=_merged(report),
                items_total=total, items_done=func.coalesce(total, done),
                finished_at=func.now(), updated_at=func.now())
        .returning(jobs.c.id)
    )


def fail(job_id: int, error: str, report: dict[str, Any] | None = None,
         from_status: tuple[str, ...] = ("running",), attempt: int | None = None) -> Update:
    """-> failed; with ``attempt``, only while that attempt owns the job. The dataset id
    comes back when the job changed."""
    values: dict[str, Any] = {"status": "failed", "error": error, "finished_at": func.now(),
                              "updated_at": func.now()}
    if report is not None:
        values["report"] = _merged(report)
    stmt = update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(from_status))
    if attempt is not None:
        stmt = stmt.where(jobs.c.attempts == attempt)
    return stmt.values(values).returning(jobs.c.dataset_id, jobs.c.kind)


def requeue_after_loss(job_id: int, note: str) -> Update:
    """running -> queued after its worker died; only one reaper wins the row."""
    return (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "running")
        .values(status="queued", stage="requeued", worker=None, updated_at=func.now(),
                report=jobs.c.report.op("||")(func.jsonb_build_object("last_loss", note)))
        .returning(jobs.c.id)
    )


def _merged(report: dict[str, Any]):
    """Keep what earlier attempts noted (such as a lost worker) beside the final report."""
    return jobs.c.report.op("||")(cast(report, JSONB))


def recent(*, status: str | None, dataset_id: int | None, limit: int) -> Select:
    """Jobs, newest first, optionally of one status or one dataset."""
    query = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
    if status:
        query = query.where(jobs.c.status == status)
    if dataset_id is not None:
        query = query.where(jobs.c.dataset_id == dataset_id)
    return query


def one(job_id: int) -> Select:
    return select(jobs).where(jobs.c.id == job_id)
