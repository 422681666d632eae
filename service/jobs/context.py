"""What a running job sees: its row, a progress reporter and a place for its report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, update

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

    def progress(self, stage: str, done: int, total: int | None = None) -> None:
        """Record stage and items done; written at most every ``min_interval`` seconds,
        and always when the stage changes, so a busy loop can call it freely."""
        now = time.monotonic()
        if stage == self._stage and now - self._last_write < self.min_interval:
            return
        self._stage, self._last_write = stage, now
        fraction = min(1.0, done / total) if total else 0.0
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == self.job_id, jobs.c.status == "running")
                .values(stage=stage, items_done=int(done),
                        items_total=int(total) if total is not None else None,
                        progress=fraction, updated_at=func.now())
            )
