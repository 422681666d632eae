"""Running one job inside a worker: claim it, run its handler, record the outcome."""

from __future__ import annotations

import logging
import os
import socket
import traceback

from sqlalchemy import select

from service.db import bookkeeping_engine, sync_engine
from service.ingest.datasets import start_ingest
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
    bookkeeping = bookkeeping_engine(database_url)
    with bookkeeping.connect() as conn:
        # A claim lost in a crash leaves the job queued, and its dataset perhaps marked as
        # being ingested, which the retry marks again: harmless either way.
        row = conn.execute(store.claim(job_id, WORKER_NAME)).first()
        dataset = None
        if row is not None and row.dataset_id is not None and row.kind.startswith("ingest"):
            dataset = conn.execute(start_ingest(row.dataset_id)).first()
    if row is None:
        status = _status(engine, job_id)
        log.info("job %s is %s, not queued: skipped", job_id, status)
        return status or "missing"
    ctx = JobContext(job_id=job_id, kind=row.kind, dataset_id=row.dataset_id,
                     params=dict(row.params or {}), engine=engine, settings=settings,
                     bookkeeping=bookkeeping, dataset=dataset)
    handler = handler_for(row.kind)
    try:
        if handler is None:
            raise JobFailed(f"no handler for job kind {row.kind!r}")
        try:  # the claim wrote stage 'starting'
            report = handler(ctx) or {}
        except BaseException:
            ctx.close()
            raise
        last = ctx.close(write_pending=False)  # stored with the outcome below
        if ctx.succeeded:  # the handler stored its outcome with its data
            return "succeeded"
        ctx.report.update(report)
    except JobFailed as exc:
        _fail(engine, job_id, str(exc), ctx)
        return "failed"
    except Exception as exc:  # a bug or an environment problem; keep the trace in the log
        log.error("job %s (%s) crashed:\n%s", job_id, row.kind, traceback.format_exc())
        _fail(engine, job_id, _reason(exc), ctx)
        return "failed"
    with engine.begin() as conn:
        conn.execute(store.succeed(job_id, ctx.report, last))
    return "succeeded"


def _reason(exc: Exception) -> str:
    """What a job's error says when it did not fail on purpose: a full disk or an
    unavailable database is the server's state, which an operator can fix and retry."""
    from service.faults import translate

    typed = translate(exc)
    if typed is not None and typed.status >= 500:
        detail = typed.detail.split(";")[0]
        return f"{detail} ({type(exc).__name__}: {exc}); submit the job again once it is fixed"
    return f"internal error: {type(exc).__name__}: {exc}"


def _fail(engine, job_id: int, message: str, ctx: JobContext) -> None:
    if ctx.succeeded:  # what failed came after the outcome was committed; nothing to undo
        log.error("job %s failed after it succeeded: %s", job_id, message)
        return
    log.warning("job %s failed: %s", job_id, message)
    with engine.begin() as conn:
        conn.execute(store.fail(job_id, message, ctx.report))
    if ctx.dataset_id is not None and ctx.kind.startswith("ingest"):
        from service.ingest.datasets import mark_dataset_failed

        mark_dataset_failed(engine, ctx.dataset_id, message)


def _status(engine, job_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
