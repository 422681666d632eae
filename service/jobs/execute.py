"""Running one job inside a worker: claim it, run its handler, record the outcome."""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback

from sqlalchemy import select

from service.core.db import bookkeeping_engine, sync_engine
from service.core.settings import Settings, get_settings
from service.core.tables import jobs
from service.datasets.store import start_ingest
from service.jobs import store
from service.jobs.cleanup import discard_failed_sources, fail_job_in
from service.jobs.context import AttemptLost, JobContext, JobFailed
from service.jobs.registry import handlers
from service.tilesets.storage import tile_store
from service.tilesets.store import VersionAbandoned, remove_version_files

log = logging.getLogger(__name__)
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
# (job id, attempt) of the attempts running in this process. The reaper here skips them:
# its own worker's heartbeat goes stale whenever the database is away, yet these attempts
# are plainly alive and may publish once it is back.
_RUNNING: set[tuple[int, int]] = set()
_RUNNING_LOCK = threading.Lock()


def running_here(job_id: int, attempt: int) -> bool:
    with _RUNNING_LOCK:
        return (job_id, attempt) in _RUNNING


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
                     bookkeeping=bookkeeping, dataset=dataset, attempt=row.attempts)
    with _RUNNING_LOCK:
        _RUNNING.add((job_id, ctx.attempt))
    try:
        return _run(ctx, engine, row.kind)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard((job_id, ctx.attempt))


def _run(ctx: JobContext, engine, kind: str) -> str:
    job_id = ctx.job_id
    handler = handlers(ctx.settings.job_handlers).get(kind)
    try:
        if handler is None:
            raise JobFailed(f"no handler for job kind {kind!r}")
        try:  # the claim wrote stage 'starting'
            report = handler(ctx) or {}
        except BaseException:
            ctx.close()
            raise
        last = ctx.close(write_pending=False)  # stored with the outcome below
        if ctx.succeeded:  # the handler stored its outcome with its data
            return "succeeded"
        if ctx.waiting:  # other jobs finish it (JobContext.wait_in)
            return "waiting"
        ctx.report.update(report)
    except (AttemptLost, VersionAbandoned) as exc:
        return _lost(job_id, ctx, exc)
    except JobFailed as exc:
        return _fail(engine, job_id, str(exc), ctx)
    except Exception as exc:  # a bug or an environment problem; keep the trace in the log
        log.error("job %s (%s) crashed:\n%s", job_id, kind, traceback.format_exc())
        return _fail(engine, job_id, _reason(exc), ctx)
    with engine.begin() as conn:
        if conn.execute(store.succeed(job_id, ctx.attempt, ctx.report, last)).first() is None:
            return _lost(job_id, ctx, "its success came after the job was taken from it")
    return "succeeded"


def _reason(exc: Exception) -> str:
    """What a job's error says when it did not fail on purpose: a full disk or an
    unavailable database is the server's state, which an operator can fix and retry."""
    from service.core.faults import translate

    typed = translate(exc)
    if typed is not None and typed.status >= 500:
        detail = typed.detail.split(";")[0]
        return (f"{detail} ({type(exc).__name__}: {exc}); once that is fixed, run it "
                "again (an upload's source is not kept: upload the file again; an IFC model "
                "can be ingested again from its dataset)")
    return f"internal error: {type(exc).__name__}: {exc}"


def _lost(job_id: int, ctx: JobContext, why: object) -> str:
    """The reaper took the job from this attempt (see AttemptLost): its work is dropped,
    and the job's row, dataset and tiles are left to the attempt that owns it now."""
    log.warning("job %s: attempt %s was given up for dead while it ran (%s); what it made "
                "was discarded, the job's state is the reaper's", job_id, ctx.attempt, why)
    return "lost"


def _fail(engine, job_id: int, message: str, ctx: JobContext) -> str:
    if ctx.succeeded:  # what failed came after the outcome was committed; nothing to undo
        log.error("job %s failed after it succeeded: %s", job_id, message)
        return "succeeded"
    with engine.begin() as conn:
        hidden = fail_job_in(conn, job_id, message, report=ctx.report, attempt=ctx.attempt)
    if hidden is None:
        return _lost(job_id, ctx, message)
    log.warning("job %s failed: %s", job_id, message)
    remove_version_files(tile_store(ctx.settings), hidden)
    if ctx.dataset_id is not None:
        discard_failed_sources(engine, ctx.settings, dataset_id=ctx.dataset_id)
    return "failed"


def _status(engine, job_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
