"""What a running job sees: its row, a progress reporter and a place for its report."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, update

from service.db import relaxed_commit
from service.models import jobs
from service.settings import Settings


class JobFailed(Exception):
    """A job that cannot succeed, with the reason shown to the user as is (not retried)."""


@dataclass
class JobContext:
    job_id: int
    kind: str
    dataset_id: int | None
    params: dict[str, Any]
    engine: Engine
    settings: Settings
    report: dict[str, Any] = field(default_factory=dict)
    min_interval: float = 0.5
    _last_write: float = 0.0
    _stage: str = ""
    _writer: _ProgressWriter | None = None

    def progress(self, stage: str, done: int, total: int | None = None) -> None:
        """Record stage and items done; written at most every ``min_interval`` seconds,
        and always when the stage changes, so a busy loop can call it freely. The write
        happens on a background thread: the job never waits for the database here."""
        now = time.monotonic()
        if stage == self._stage and now - self._last_write < self.min_interval:
            return
        self._stage, self._last_write = stage, now
        if self._writer is None:
            self._writer = _ProgressWriter(self.engine, self.job_id)
        self._writer.post(stage, int(done), int(total) if total is not None else None)

    def close(self) -> None:
        """Stop the writer before the job's outcome is stored (a late progress write could
        not overwrite that anyway: it only touches a running job)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _ProgressWriter(threading.Thread):
    """Writes the newest progress of one job, at most every ``GAP`` seconds; values that
    came in between are skipped, which is all a progress bar needs. What is pending when
    the job ends is written then, so the final counts are exact."""

    GAP = 0.1

    def __init__(self, engine: Engine, job_id: int) -> None:
        super().__init__(name=f"job-{job_id}-progress", daemon=True)
        self.engine, self.job_id = engine, job_id
        self._pending: tuple[str, int, int | None] | None = None
        self._closing = False
        self._wake = threading.Condition()
        self.start()

    def post(self, stage: str, done: int, total: int | None) -> None:
        with self._wake:
            self._pending = (stage, done, total)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self.join()

    def run(self) -> None:
        last = time.monotonic()
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                # let a quick succession of stages settle into one write
                while not self._closing and time.monotonic() - last < self.GAP:
                    self._wake.wait(self.GAP - (time.monotonic() - last))
                item, self._pending = self._pending, None
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
            relaxed_commit(conn)
            conn.execute(
                update(jobs)
                .where(jobs.c.id == self.job_id, jobs.c.status == "running")
                .values(stage=stage, items_done=done, items_total=total,
                        progress=fraction, updated_at=func.now())
            )
