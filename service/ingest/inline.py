"""Running an ingest inside the calling process (the CLI), with live progress.

The dataset and job rows are the same as for an upload; the job simply runs here instead of
in a worker, so its progress, report and errors are visible through the API as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service.db import sync_engine
from service.ingest.datasets import new_dataset
from service.ingest.kinds import ingest_job_kind
from service.jobs.execute import run_job
from service.jobs.submit import submit_job
from service.models import jobs
from service.settings import Settings
from service.uploads.storage import sha256_of

Watcher = Callable[[Any], None]  # called with the job row while it runs


def ingest_file(url: str, kind: str, path: Path, *, options: dict[str, Any],
                name: str | None = None, who: str = "cli", watch: Watcher | None = None,
                poll_seconds: float = 0.3, settings: Settings | None = None) -> Any:
    """Create the dataset and job for ``path`` and run the job here; return the final row."""
    path = path.resolve()
    engine = sync_engine(url)
    with engine.begin() as conn:
        dataset_id = conn.execute(new_dataset(
            kind, name or path.name, source_path=str(path), sha256=sha256_of(path),
            size_bytes=path.stat().st_size, options=options, uploaded_by=who)).scalar_one()
        job_id = submit_job(conn, ingest_job_kind(kind), dataset_id=dataset_id,
                            params=options, created_by=who, max_attempts=1, enqueue=False)
    runner = threading.Thread(target=run_job, args=(job_id, url, settings), daemon=True)
    runner.start()
    while runner.is_alive():
        if watch is not None:
            watch(_row(engine, job_id))
        runner.join(poll_seconds)
    final = _row(engine, job_id)
    if watch is not None:
        watch(final)
    return final


def _row(engine, job_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
