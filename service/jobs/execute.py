"""Running one job inside a worker: claim it, run its handler, record the outcome."""

from __future__ import annotations

import logging
import os
import socket
import traceback

from sqlalchemy import select

from service.db import relaxed_commit, sync_engine
from service.jobs import store
from service.jobs.context import JobContext, JobFailed
from service.jobs.registry import handler_for
from service.models import jobs
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


def run_job(job_id: int, database_url: str, settings: Settings | None = None) -> str:
    """Run job ``job_id`` to its end; return its final status."""
    settings = settings or get_settings()
    engine = sync_engine(database_url)
    with engine.begin() as conn:
        relaxed_commit(conn)  # a claim lost in a crash leaves the job queued: harmless
        row = conn.execute(store.claim(job_id, WORKER_NAME)).first()
    if row is None:
        status = _status(engine, job_id)
        log.info("job %s is %s, not queued: skipped", job_id, status)
        return status or "missing"
    ctx = JobContext(job_id=job_id, kind=row.kind, dataset_id=row.dataset_id,
                     params=dict(row.params or {}), engine=engine, settings=settings)
    handler = handler_for(row.kind)
    try:
        if handler is None:
            raise JobFailed(f"no handler for job kind {row.kind!r}")
        try:  # the claim wrote stage 'starting'
            report = handler(ctx) or {}
        finally:
            ctx.close()
        ctx.report.update(report)
    except JobFailed as exc:
        _fail(engine, job_id, str(exc), ctx)
        return "failed"
    except Exception as exc:  # a bug or an environment problem; keep the trace in the log
        log.error("job %s (%s) crashed:\n%s", job_id, row.kind, traceback.format_exc())
        _fail(engine, job_id, f"internal error: {type(exc).__name__}: {exc}", ctx)
        return "failed"
    with engine.begin() as conn:
        conn.execute(store.succeed(job_id, ctx.report))
    return "succeeded"


def _fail(engine, job_id: int, message: str, ctx: JobContext) -> None:
    log.warning("job %s failed: %s", job_id, message)
    with engine.begin() as conn:
        conn.execute(store.fail(job_id, message, ctx.report))
    if ctx.dataset_id is not None and ctx.kind.startswith("ingest"):
        from service.ingest.datasets import mark_dataset_failed

        mark_dataset_failed(engine, ctx.dataset_id, message)


def _status(engine, job_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
