"""Jobs through real worker processes: progress while running, retry after a killed worker,
failure with a reason when attempts run out."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from service.core.db import sync_engine
from service.core.tables import jobs
from service.jobs.submit import submit_job

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(db_url: str, log: Path, **extra_env: str) -> Iterator[subprocess.Popen]:
    env = dict(os.environ, DATABASE_URL=db_url, TWINBASE_HEARTBEAT_SECONDS="0.5",
               TWINBASE_STALLED_AFTER_SECONDS="3", TWINBASE_LOG_LEVEL="info", **extra_env)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _job(db_url: str, job_id: int):
    with sync_engine(db_url).connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).first()


def wait_for(db_url: str, job_id: int, predicate, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _job(db_url, job_id)
        if predicate(row):
            return row
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never got there; last state {row._asdict()}")


def submit(db_url: str, params: dict, max_attempts: int = 3) -> int:
    with sync_engine(db_url).begin() as conn:
        return submit_job(conn, "selfcheck", params=params, max_attempts=max_attempts)


def test_progress_is_visible_while_running_and_complete_at_the_end(db_url, tmp_path):
    job_id = submit(db_url, {"steps": 20, "step_seconds": 0.15})
    with worker_process(db_url, tmp_path / "worker.log"):
        mid = wait_for(db_url, job_id, lambda r: r.status == "running" and r.items_done >= 3)
        assert 0 < mid.progress < 1
        assert mid.items_total == 20 and mid.stage == "counting"
        assert mid.started_at is not None and mid.finished_at is None
        done = wait_for(db_url, job_id, lambda r: r.status == "succeeded")
    assert done.progress == 1.0 and done.items_done == 20
    assert done.finished_at >= done.started_at
    assert done.report == {"steps": 20}


def test_a_failing_job_records_its_reason(db_url, tmp_path):
    job_id = submit(db_url, {"steps": 5, "step_seconds": 0, "fail_at": 2})
    with worker_process(db_url, tmp_path / "worker.log"):
        row = wait_for(db_url, job_id, lambda r: r.status in ("failed", "succeeded"))
    assert row.status == "failed"
    assert row.error == "selfcheck asked to fail at step 2"
    assert row.attempts == 1  # a job that fails on its own is not retried


def test_job_of_a_killed_worker_is_retried_by_the_next_worker(db_url, tmp_path):
    job_id = submit(db_url, {"steps": 30, "step_seconds": 0.1}, max_attempts=3)
    log = tmp_path / "worker.log"
    with worker_process(db_url, log) as first:
        wait_for(db_url, job_id, lambda r: r.status == "running" and r.items_done >= 2)
        first.kill()  # SIGKILL: no cleanup, no goodbye
        first.wait()
    assert _job(db_url, job_id).status == "running"  # what a dead worker leaves behind
    with worker_process(db_url, log):
        row = wait_for(db_url, job_id, lambda r: r.status in ("succeeded", "failed"))
    assert row.status == "succeeded", row.error
    assert row.attempts == 2
    assert "stopped responding" in row.report["last_loss"]


def test_job_of_a_killed_worker_fails_with_a_reason_when_out_of_attempts(db_url, tmp_path):
    job_id = submit(db_url, {"steps": 50, "step_seconds": 0.1}, max_attempts=1)
    log = tmp_path / "worker.log"
    with worker_process(db_url, log) as first:
        wait_for(db_url, job_id, lambda r: r.status == "running" and r.items_done >= 1)
        first.kill()
        first.wait()
    with worker_process(db_url, log):
        row = wait_for(db_url, job_id, lambda r: r.status != "running")
    assert row.status == "failed"
    assert "stopped responding" in row.error and "no attempts left" in row.error
    assert "stage 'counting'" in row.error
    assert row.finished_at is not None


def _spawned_children(pid: int) -> list[str]:
    """Command lines of the multiprocessing children of a process."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"multiprocessing" in cmd:
                out.append(cmd.decode(errors="replace"))
    return out


def test_warm_start_prepares_the_worker_before_the_first_job(db_url, tmp_path):
    """With warm start (the default outside the tests) a worker loads the job libraries,
    freezes them out of the garbage collector and starts the IFC geometry processes."""
    probe = subprocess.run(
        [sys.executable, "-c", "import gc, sys\n"
         "from service.jobs.registry import prepare_worker_process\n"
         "before = gc.get_freeze_count()\n"
         "prepare_worker_process('service.domains:JOB_HANDLERS')\n"
         "print(before, gc.get_freeze_count(), 'ifcopenshell.geom' in sys.modules)"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    before, frozen, loaded = probe.stdout.split()
    assert before == "0" and int(frozen) > 10_000 and loaded == "True"

    with worker_process(db_url, tmp_path / "worker.log", TWINBASE_WARM_START="true") as proc:
        deadline = time.monotonic() + 60
        while len(_spawned_children(proc.pid)) < (os.cpu_count() or 1):
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "no geometry processes were started"
            time.sleep(0.2)
        job_id = submit(db_url, {"steps": 2, "step_seconds": 0.01})
        done = wait_for(db_url, job_id, lambda r: r.status in ("succeeded", "failed"))
    assert done.status == "succeeded", done.error


def test_a_worker_goes_on_taking_jobs_after_the_database_was_away(tmp_path):
    """Its heartbeat fails while the database is down (longer than the connection pool's
    30 s wait, after which procrastinate's worker ends itself); once the database is back,
    jobs run again without a restart of the worker."""
    import tempfile

    from service.core import db
    from service.runtime.embedded_pg import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="twinbase-test-outage-"))
    os.chmod(base, 0o755)  # the cluster runs as the postgres user when we are root
    pg = EmbeddedPostgres(base / "cluster")
    pg.start()
    try:
        url = pg.url
        db.upgrade(url)
        log = tmp_path / "worker.log"
        with worker_process(url, log) as proc:
            before = submit(url, {"steps": 2, "step_seconds": 0.01})
            wait_for(url, before, lambda r: r.status == "succeeded")
            pg.stop()
            time.sleep(36)
            pg.start()
            assert proc.poll() is None, log.read_text()[-3000:]
            after = submit(url, {"steps": 2, "step_seconds": 0.01})
            row = wait_for(url, after, lambda r: r.status in ("succeeded", "failed"), 60)
            assert row.status == "succeeded", row.error
    finally:
        pg.destroy()
        shutil.rmtree(base, ignore_errors=True)
