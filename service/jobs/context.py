"""What a running job sees: its row, a progress reporter and a place for its report."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, update
from sqlalchemy.engine import RootTransaction

from service.core.settings import Settings
from service.core.tables import jobs
from service.datasets.store import start_ingest
from service.jobs import store

# (stage, items done, items total) as last reported by the job
Progress = tuple[str, int, int | None]


class JobFailed(Exception):
    """A job that cannot succeed, with the reason shown to the user as is (not retried)."""


class AttemptLost(Exception):
    """This attempt no longer owns its job: the reaper took it for dead (its worker was
    silent, e.g. while the database was away) and requeued or failed the job. What the
    attempt made must not be published, and its outcome must not be recorded."""


@dataclass
class JobContext:
    job_id: int
    kind: str
    dataset_id: int | None
    params: dict[str, Any]
    engine: Engine
    settings: Settings
    bookkeeping: Engine | None = None  # for writes a crash may lose (db.bookkeeping_engine)
    attempt: int = 0  # the claim's attempt number: the fencing token of every write below
    dataset: Any = None  # the dataset row, marked as ingesting when the job was claimed
    report: dict[str, Any] = field(default_factory=dict)
    succeeded: bool = False
    waiting: bool = False  # the job goes on in jobs of its own (wait_in)
    min_interval: float = 0.5
    _last_write: float = 0.0
    _stage: str = ""
    _writer: _ProgressWriter | None = None
    _final: bool = False  # the last transaction has begun: no more progress writes
    _held: Progress | None = None  # progress not yet written when it began
    _holding: RootTransaction | None = None  # the transaction that holds the job's row

    def __post_init__(self) -> None:
        if self.bookkeeping is None:  # a context made outside run_job: durable writes
            self.bookkeeping = self.engine

    def progress(self, stage: str, done: int, total: int | None = None) -> None:
        """Record stage and items done; written at most every ``min_interval`` seconds,
        and always when the stage changes, so a busy loop can call it freely. The write
        happens on a background thread: the job never waits for the database here."""
        if self._final:
            return
        now = time.monotonic()
        if stage == self._stage and now - self._last_write < self.min_interval:
            return
        self._stage, self._last_write = stage, now
        if self._writer is None:
            self._writer = _ProgressWriter(self.bookkeeping, self.job_id, self.attempt)
        self._writer.post(stage, int(done), int(total) if total is not None else None)

    def close(self, write_pending: bool = True) -> Progress | None:
        """Stop the writer before the job's outcome is stored (a late progress write could
        not overwrite that anyway: it only touches a running job). Returns the progress
        not yet written; it is written first unless ``write_pending`` is false, for the
        caller that stores it with the outcome."""
        writer, self._writer = self._writer, None
        return writer.close(write_pending) if writer is not None else None

    def hold(self, conn: Connection) -> None:
        """Start the handler's last transaction by locking the job's row for this attempt;
        :class:`AttemptLost` (the transaction is then rolled back) when the attempt no
        longer owns the job. Once held, holding again in the same transaction does nothing:
        a handler may lock the job before it writes its rows, and publish then."""
        if self._holding is not None and self._holding is conn.get_transaction():
            return
        # the progress writer updates the same row on its own connection: were it stopped
        # later (in succeed_in), it would wait for this lock, and this transaction for it
        self._held = self.close(write_pending=False)
        self._final = True
        if conn.execute(store.owned(self.job_id, self.attempt)).first() is None:
            raise AttemptLost(f"job {self.job_id}: attempt {self.attempt} no longer owns it")
        self._holding = conn.get_transaction()

    def succeed_in(self, conn: Connection, report: dict[str, Any]) -> None:
        """Record the job's success inside the handler's last transaction: the job reads
        'succeeded' exactly when what it wrote becomes visible, and a separate commit that
        waits for the disk is saved. The handler's return value is then not stored.
        :class:`AttemptLost` when the attempt no longer owns the job: the transaction, and
        the publication in it, is rolled back."""
        last = self.close(write_pending=False) or self._held
        self.report.update(report)
        if conn.execute(store.succeed(self.job_id, self.attempt, self.report, last)
                        ).first() is None:
            raise AttemptLost(f"job {self.job_id}: attempt {self.attempt} no longer owns it")
        self.succeeded = True


    def wait_in(self, conn: Connection, stage: str, done: int, total: int | None) -> None:
        """The job goes on in other jobs (the chunks of a split survey), one of which ends
        it: it stays 'running', owned by this attempt number, but no worker or queue entry
        holds it any longer, so the reaper does not take it for dead when this attempt
        returns. Inside the handler's last transaction, after :meth:`hold`."""
        self.hold(conn)
        conn.execute(update(jobs).where(jobs.c.id == self.job_id,
                                        jobs.c.attempts == self.attempt)
                     .values(worker=None, queue_job_id=None, stage=stage, items_done=done,
                             items_total=total, progress=min(1.0, done / total) if total
                             else 0.0, report=store._merged(self.report),
                             updated_at=func.now()))
        self.waiting = True


class _ProgressWriter(threading.Thread):
    """Writes the newest progress of one job, at most every ``GAP`` seconds; values that
    came in between are skipped, which is all a progress bar needs. What is pending when
    the job ends is written then, or handed over to be stored with the job's outcome, so
    the final counts are exact."""

    GAP = 0.1

    def __init__(self, engine: Engine, job_id: int, attempt: int) -> None:
        super().__init__(name=f"job-{job_id}-progress", daemon=True)
        self.engine, self.job_id, self.attempt = engine, job_id, attempt
        self._pending: Progress | None = None
        self._write_pending = True
        self._closing = False
        self._wake = threading.Condition()
        self.start()

    def post(self, stage: str, done: int, total: int | None) -> None:
        with self._wake:
            self._pending = (stage, done, total)
            self._wake.notify()

    def close(self, write_pending: bool = True) -> Progress | None:
        with self._wake:
            self._closing, self._write_pending = True, write_pending
            self._wake.notify()
        self.join()
        return self._pending

    def _take(self) -> Progress | None:
        """The item to write now, if any (called holding ``_wake``)."""
        if self._closing and not self._write_pending:
            return None  # left in _pending for close() to hand over
        item, self._pending = self._pending, None
        return item

    def run(self) -> None:
        last = time.monotonic()
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                # let a quick succession of stages settle into one write
                while not self._closing and time.monotonic() - last < self.GAP:
                    self._wake.wait(self.GAP - (time.monotonic() - last))
                item = self._take()
                closing = self._closing
            last = time.monotonic()
            if item is not None:
                # progress is advisory: a failed write must not end a job
                with contextlib.suppress(Exception):
                    self._write(*item)
            if closing:
                return

    def _write(self, stage: str, done: int, total: int | None) -> None:
        fraction = min(1.0, done / total) if total else 0.0
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == self.job_id, jobs.c.status == "running",
                       jobs.c.attempts == self.attempt)
                .values(stage=stage, items_done=done, items_total=total,
                        progress=fraction, updated_at=func.now())
            )


def load_dataset(ctx: JobContext) -> Any:
    """The row of the dataset an ingest job reads, with its file checked."""
    row = ctx.dataset
    if row is None:
        with ctx.engine.begin() as conn:
            row = conn.execute(start_ingest(ctx.dataset_id)).first()
    if row is None:
        raise JobFailed(f"dataset {ctx.dataset_id} no longer exists")
    if not row.source_path or not Path(row.source_path).is_file():
        raise JobFailed(f"the file of dataset {row.id} is missing on the server")
    return row
