"""A job worker: procrastinate's worker plus a reaper for jobs whose worker died.

procrastinate workers send heartbeats; a job still 'doing' whose worker has been silent for
``stalled_after_seconds`` (killed, OOM, machine lost) is retried while it has attempts left,
and failed with the reason otherwise, so no job stays 'running' forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from typing import Any

import procrastinate
from procrastinate import jobs as pjobs
from sqlalchemy import select, text

from service.core.db import sync_engine
from service.core.settings import Settings
from service.core.tables import jobs
from service.jobs import store
from service.jobs.cleanup import discard_failed_sources, fail_job_in
from service.jobs.execute import running_here
from service.jobs.queue import QUEUE, make_queue
from service.jobs.registry import prepare_worker_process
from service.jobs.submit import new_queue_entry
from service.tilesets.storage import tile_store
from service.tilesets.store import (
    abandon_job_versions,
    abandon_orphan_versions,
    purge_failed_objects,
    remove_version_files,
)
from tiler.lifetime import alive

log = logging.getLogger(__name__)
# a periodic clean-up the app hands the worker: called with (database URL, settings)
Chore = Callable[[str, Settings], Any]


async def reap_stalled(queue: procrastinate.App, settings: Settings, url: str) -> int:
    """Retry or fail the jobs of dead workers; return how many were handled."""
    stalled = list(
        await queue.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=settings.stalled_after_seconds, queue=QUEUE
        )
    )
    handled = 0
    for qjob in stalled:
        assert qjob.id is not None
        outcome = await asyncio.to_thread(_take_from_silent_worker, url, settings, qjob.id)
        if outcome is None:
            # our row already settled, or moved to a new queue entry when it was requeued
            # (or never existed): just settle the queue's copy
            await _finish(queue, qjob, "failed")
            continue
        if outcome == "alive":  # running in this process: only the heartbeat was late
            continue
        if outcome == "failed":
            await _finish(queue, qjob, "failed")
        # requeued: the silent worker's entry is left to it. Alive after all (say the
        # database was away), it ends the entry itself when its attempt returns; dead, the
        # next pass settles the entry through the branch above.
        handled += 1
    return handled


def _take_from_silent_worker(url: str, settings: Settings, queue_job_id: int) -> str | None:
    """Take the job of queue entry ``queue_job_id`` from its silent worker's attempt:
    requeue it on a new queue entry while it has attempts left, else fail it. In the same
    transaction its unfinished tileset versions are hidden, and they are deleted after:
    should the attempt be alive after all, its outcome writes and its publication are
    fenced by the attempt number (store.owned), so what it made is dropped. Returns
    'requeued', 'failed', 'alive' when the attempt runs in this very process, or None when
    the row was not running on this entry."""
    with sync_engine(url).begin() as conn:
        row = conn.execute(
            select(jobs.c.id, jobs.c.attempts, jobs.c.max_attempts, jobs.c.stage,
                   jobs.c.status)
            .where(jobs.c.queue_job_id == queue_job_id).with_for_update()
        ).first()
        if row is None or row.status != "running":
            return None
        if running_here(row.id, row.attempts):
            return "alive"
        what = (f"the worker running this job stopped responding (killed or crashed) "
                f"during stage '{row.stage}', attempt {row.attempts} of {row.max_attempts}")
        if row.attempts < row.max_attempts:
            conn.execute(store.requeue_after_loss(row.id, what))
            hidden = abandon_job_versions(conn, row.id)
            # A new entry, not procrastinate's retry of the old one: the silent worker, if
            # it is only slow, ends its own entry when its attempt returns, which would
            # end the retry with it and strand the job.
            conn.execute(store.link_queue_job(row.id, new_queue_entry(conn, row.id)))
            outcome = "requeued"
            log.warning("job %s: %s; retrying", row.id, what)
        else:
            hidden = fail_job_in(conn, row.id, what + "; no attempts left") or []
            outcome = "failed"
            log.error("job %s: %s; failed", row.id, what)
    remove_version_files(tile_store(settings), hidden)
    if outcome == "failed":
        discard_failed_sources(sync_engine(url), settings)
    return outcome


async def _finish(queue: procrastinate.App, qjob: pjobs.Job, status: str) -> None:
    assert qjob.id is not None
    with contextlib.suppress(Exception):
        await queue.job_manager.finish_job_by_id_async(
            qjob.id, pjobs.Status(status), delete_job=False
        )


_LOST_FROM_QUEUE = ("the queue lost this job (its queue entry ended without running it to "
                    "the end); submit it again")


def fail_orphans(url: str, settings: Settings) -> int:
    """Jobs queued or running in our table whose queue entry is gone or ended: fail them."""
    engine = sync_engine(url)
    with engine.begin() as conn:
        ids = conn.execute(
            text(
                """
                SELECT id FROM jobs
                WHERE status IN ('queued', 'running') AND queue_job_id IS NOT NULL
                  AND updated_at < now() - make_interval(secs => :grace)
                  AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs q
                                  WHERE q.id = jobs.queue_job_id
                                    AND q.status IN ('todo', 'doing'))
                FOR UPDATE SKIP LOCKED
                """
            ),
            {"grace": settings.stalled_after_seconds},
        ).scalars().all()
        hidden: list[str] = []
        lost = 0
        for job_id in ids:
            paths = fail_job_in(conn, job_id, _LOST_FROM_QUEUE,
                                from_status=("queued", "running"))
            if paths is not None:
                hidden += paths
                lost += 1
    remove_version_files(tile_store(settings), hidden)
    return lost + fail_dead_inline(url, settings)


def fail_dead_inline(url: str, settings: Settings | None = None) -> int:
    """Jobs run inline by a CLI process (no queue job) whose process is gone."""
    host = socket.gethostname()
    lost = 0
    engine = sync_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c.id, jobs.c.worker, jobs.c.stage, jobs.c.attempts)
            .where(jobs.c.status == "running", jobs.c.queue_job_id.is_(None))
        ).all()
    for row in rows:
        worker_host, _, pid = (row.worker or "").rpartition(":")
        if worker_host != host or not pid.isdigit() or alive(int(pid)):
            continue
        with engine.begin() as conn:
            hidden = fail_job_in(conn, row.id, f"the process running this job (pid {pid}) "
                                               f"ended during stage '{row.stage}'",
                                 attempt=row.attempts)
        if hidden is not None:
            if settings is not None:
                remove_version_files(tile_store(settings), hidden)
            lost += 1
    return lost


async def _reaper_loop(queue: procrastinate.App, settings: Settings, url: str,
                       chores: Sequence[Chore]) -> None:
    while True:
        try:
            await reap_stalled(queue, settings, url)
            await asyncio.to_thread(fail_orphans, url, settings)
            await asyncio.to_thread(abandon_orphan_versions, sync_engine(url),
                                    tile_store(settings))
            await asyncio.to_thread(purge_failed_objects, sync_engine(url),
                                    tile_store(settings))
            await asyncio.to_thread(discard_failed_sources, sync_engine(url), settings)
            for chore in chores:
                await asyncio.to_thread(chore, url, settings)
        except Exception:
            log.exception("reaper pass failed")
        await asyncio.sleep(max(1.0, settings.heartbeat_seconds))


async def run_worker(settings: Settings, url: str, *, install_signal_handlers: bool = True,
                     queue: procrastinate.App | None = None,
                     chores: Sequence[Chore] = ()) -> None:
    """Run until cancelled (or SIGINT / SIGTERM, when the worker owns the process): the jobs
    running then are finished first. ``chores`` are the app's own periodic clean-ups (e.g.
    expired uploads), run after each reaper pass."""
    queue = queue or make_queue(url, settings)
    if settings.warm_start:
        for warm_up in prepare_worker_process(settings.job_handlers):
            asyncio.get_running_loop().run_in_executor(None, warm_up)
    stop = asyncio.Event()
    if install_signal_handlers:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    async with queue.open_async():
        reaper = asyncio.create_task(_reaper_loop(queue, settings, url, chores))
        try:
            while not await _work_until_stopped(queue, settings, stop):
                # procrastinate's worker ends itself when a side task fails, as its heartbeat
                # does while the database is away: start it again, or the jobs queued after
                # the outage would wait for a restart of the whole service
                log.warning("the job worker stopped on its own (was the database away?); "
                            "starting it again")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(1.0, settings.heartbeat_seconds))
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper


async def _work_until_stopped(queue: procrastinate.App, settings: Settings,
                              stop: asyncio.Event) -> bool:
    """One run of procrastinate's worker; True when it ended because ``stop`` was set."""
    if stop.is_set():
        return True
    work = asyncio.create_task(queue.run_worker_async(
        queues=[QUEUE],
        concurrency=settings.worker_concurrency,
        update_heartbeat_interval=settings.heartbeat_seconds,
        stalled_worker_timeout=settings.stalled_after_seconds,
        install_signal_handlers=False,  # ours above: a stop must be told from a failure
        listen_notify=True,
        fetch_job_polling_interval=2.0,
    ))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()  # procrastinate then stops gracefully: running jobs end first
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        raise
    finally:
        stopping.cancel()
    if not work.done():  # a signal: stop as a cancelled worker does
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return True
    if not work.cancelled() and work.exception() is not None:
        log.warning("the job worker failed: %r", work.exception())
    return stop.is_set()
