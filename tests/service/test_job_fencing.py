"""A job's state follows what was published, in every order of events between an attempt
and the reaper that takes the job from it when its worker falls silent (killed, or only cut
off from the database for longer than the heartbeat timeout).

The reaper is driven here, on a real PostgreSQL, while an attempt is held between two of its
stages by a lock the attempt needs: that is the interleaving a database outage produces."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, text

from service.core.db import sync_engine
from service.core.tables import datasets, jobs, tilesets
from service.datasets.store import new_dataset
from service.jobs import store
from service.jobs.execute import run_job
from service.jobs.queue import make_queue
from service.jobs.submit import submit_job
from service.jobs.worker import fail_orphans, reap_stalled

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data" / "lidar"
AUTZEN = DATA / "pdal_autzen_trim.laz"  # 110,000 points


class Attempt:
    """run_job in a process of its own, as in another worker: the reaper of this process
    knows nothing of it."""

    def __init__(self, db_url: str, settings, job_id: int) -> None:
        code = ("import sys\nfrom service.jobs.execute import run_job\n"
                "from service.core.settings import Settings\n"
                "print('outcome', run_job(int(sys.argv[1]), sys.argv[2], Settings()))")
        env = dict(os.environ, DATABASE_URL=db_url, TWINBASE_DATA_DIR=str(settings.data_dir))
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(job_id), db_url],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def outcome(self, timeout: float = 120) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("outcome ")]
        assert lines, out[-3000:]
        return lines[-1].split()[1]


def _silent_worker_takes(db_url: str, queue_job_id: int) -> None:
    """The queue entry as a worker left it that fetched it and then fell silent: 'doing',
    held by a worker whose last heartbeat is an hour old."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        worker = conn.execute("INSERT INTO procrastinate_workers (last_heartbeat) "
                              "VALUES (now() - interval '1 hour') RETURNING id").fetchone()[0]
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s "
                     "WHERE id = %s", (worker, queue_job_id))


def _reap(db_url: str, settings) -> int:
    async def once() -> int:
        queue = make_queue(db_url, settings)
        async with queue.open_async():
            return await reap_stalled(queue, settings, db_url)

    return asyncio.run(once())


def _job(db_url: str, job_id: int):
    with sync_engine(db_url).connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).first()


def _queue_status(db_url: str, queue_job_id: int) -> str:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s",
                            (queue_job_id,)).fetchone()[0]


def _lidar_job(db_url: str, settings, survey: str) -> tuple[int, int]:
    source = settings.data_dir / "sources" / uuid.uuid4().hex / AUTZEN.name
    source.parent.mkdir(parents=True)
    shutil.copy(AUTZEN, source)
    with sync_engine(db_url).begin() as conn:
        dataset_id = conn.execute(new_dataset(
            "lidar", survey, source_path=str(source), sha256=None,
            size_bytes=source.stat().st_size, options={"survey": survey},
            uploaded_by="test")).scalar_one()
        job_id = submit_job(conn, "ingest_lidar", dataset_id=dataset_id, params={},
                            max_attempts=3)
    return dataset_id, job_id


def _wait(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_an_attempt_given_up_for_dead_publishes_nothing_and_the_retry_owns_the_job(
        db_url, settings):
    survey = f"fence {uuid.uuid4().hex[:8]}"
    name = "survey-" + survey.replace(" ", "-")
    dataset_id, job_id = _lidar_job(db_url, settings, survey)
    first_entry = _job(db_url, job_id).queue_job_id
    _silent_worker_takes(db_url, first_entry)

    # The attempt will stop where it shows its preview: that takes the tileset's lock,
    # which this connection holds. Meanwhile its worker counts as dead.
    blocker = psycopg.connect(db_url)
    blocker.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
    attempt = Attempt(db_url, settings, job_id)
    try:
        def waiting_for_lock() -> bool:
            with psycopg.connect(db_url) as conn:
                return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = "
                                    "'advisory' AND NOT granted").fetchone()[0] > 0
        _wait(waiting_for_lock, what="the attempt to reach its preview")
        version_dir = settings.tiles_dir / name / "v1"
        assert (version_dir / "tileset.json").is_file()  # the coarse levels are written

        assert _reap(db_url, settings) == 1
        requeued = _job(db_url, job_id)
        abandoned_files_left = version_dir.exists()
    finally:
        blocker.rollback()
        blocker.close()
        first = attempt.outcome()

    # the old attempt went on and finished its work: nothing of it may show
    assert first == "lost"
    assert requeued.status == "queued" and requeued.attempts == 1
    assert "stopped responding" in requeued.report["last_loss"]
    assert not abandoned_files_left  # the reaper removed the abandoned attempt's files
    assert not (settings.tiles_dir / name / "v1").exists()
    # the retry runs from a new queue entry: the silent worker's own entry may still be
    # ended by that worker (it is only slow), which must not end the retry
    assert requeued.queue_job_id != first_entry
    assert _queue_status(db_url, requeued.queue_job_id) == "todo"
    with sync_engine(db_url).connect() as conn:
        versions = conn.execute(select(tilesets.c.version, tilesets.c.status,
                                       tilesets.c.is_current)
                                .where(tilesets.c.name == name)).all()
        ds = conn.execute(select(datasets.c.status).where(datasets.c.id == dataset_id)
                          ).scalar_one()
    assert [(v.version, v.status, v.is_current) for v in versions] == [(1, "failed", False)]
    assert ds != "ready"
    assert _job(db_url, job_id).status == "queued"

    # the slow worker ends its entry when its attempt returns; the job is not lost by it
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)",
                     (first_entry,))
    settings.stalled_after_seconds = 0
    fail_orphans(db_url, settings)
    assert _job(db_url, job_id).status == "queued"

    # the retry publishes, and the job says so
    assert run_job(job_id, db_url, settings) == "succeeded"
    done = _job(db_url, job_id)
    assert done.status == "succeeded" and done.attempts == 2 and done.report["version"] == 2
    with sync_engine(db_url).connect() as conn:
        current = conn.execute(select(tilesets.c.version, tilesets.c.status, tilesets.c.job_id)
                               .where(tilesets.c.name == name, tilesets.c.is_current)).one()
    assert tuple(current) == (2, "published", job_id)


def test_a_success_recorded_after_the_reaper_took_the_job_is_refused(db_url, settings):
    """A job whose outcome is written by run_job itself (no data of its own)."""
    with sync_engine(db_url).begin() as conn:
        job_id = submit_job(conn, "selfcheck", params={"steps": 40, "step_seconds": 0.05})
    entry = _job(db_url, job_id).queue_job_id
    _silent_worker_takes(db_url, entry)
    attempt = Attempt(db_url, settings, job_id)
    _wait(lambda: _job(db_url, job_id).items_done >= 2, what="the attempt to count")
    assert _reap(db_url, settings) == 1
    assert attempt.outcome() == "lost"
    row = _job(db_url, job_id)
    # the old attempt's later progress did not write over the requeued row either
    assert row.status == "queued" and row.stage == "requeued"

    assert run_job(job_id, db_url, settings) == "succeeded"
    assert _job(db_url, job_id).attempts == 2


def test_the_last_transaction_of_a_lost_attempt_rolls_back_its_publication(db_url, settings):
    """The fence itself: the data, the switch of the current version and the success are one
    transaction, which a stale attempt cannot commit."""
    from service.core.db import bookkeeping_engine
    from service.jobs.context import AttemptLost, JobContext
    from service.tilesets.store import begin_version, publish_in

    engine = sync_engine(db_url)
    with engine.begin() as conn:
        job_id = submit_job(conn, "selfcheck", params={})
    with engine.begin() as conn:  # the claim run_job makes
        claimed = conn.execute(store.claim(job_id, "test:1")).one()
    name = f"fence-{uuid.uuid4().hex[:8]}"
    tv = begin_version(bookkeeping_engine(db_url), settings.tiles_dir, name, "mesh",
                       dataset_id=None, job_id=job_id)
    ctx = JobContext(job_id=job_id, kind="selfcheck", dataset_id=None, params={},
                     engine=engine, settings=settings, attempt=claimed.attempts)
    # the reaper requeues it, and the next attempt claims it
    with engine.begin() as conn:
        conn.execute(store.requeue_after_loss(job_id, "test"))
        conn.execute(store.claim(job_id, "test:2"))

    with pytest.raises(AttemptLost), engine.begin() as conn:
        publish_in(conn, tv, {"points": 1})
        ctx.succeed_in(conn, {"done": True})
    with engine.connect() as conn:
        row = conn.execute(select(tilesets.c.status, tilesets.c.is_current)
                           .where(tilesets.c.id == tv.id)).one()
        owner = conn.execute(text("SELECT status, attempts FROM jobs WHERE id = :id"),
                             {"id": job_id}).one()
    assert tuple(row) == ("building", False)
    assert tuple(owner) == ("running", 2)
    with pytest.raises(AttemptLost), engine.begin() as conn:
        ctx.hold(conn)


def test_the_reaper_leaves_alone_an_attempt_running_in_its_own_process(db_url, settings):
    """One process (the embedded default: the API with its job worker) whose heartbeat went
    stale while the database was away: its attempt is alive, and must not be given up."""
    with sync_engine(db_url).begin() as conn:
        job_id = submit_job(conn, "selfcheck", params={"steps": 30, "step_seconds": 0.05})
    _silent_worker_takes(db_url, _job(db_url, job_id).queue_job_id)
    outcome: dict[str, str] = {}
    attempt = threading.Thread(
        target=lambda: outcome.setdefault("first", run_job(job_id, db_url, settings)))
    attempt.start()
    _wait(lambda: _job(db_url, job_id).items_done >= 2, what="the attempt to count")
    assert _reap(db_url, settings) == 0
    assert _job(db_url, job_id).status == "running"
    attempt.join(60)
    assert outcome["first"] == "succeeded"
    done = _job(db_url, job_id)
    assert done.status == "succeeded" and done.attempts == 1 and done.report == {"steps": 30}
