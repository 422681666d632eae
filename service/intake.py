"""How datasets enter the service: a completed upload, a file given on the command line,
and the sample data of a new installation. Each becomes a ``datasets`` row and its ingest
job in one transaction; the job kinds that exist are those of ``JOB_HANDLERS``.

The uploads package knows nothing of datasets or jobs: the app hands it
:class:`UploadIntake`, whose ``kind_of`` refuses a file no handler can ingest before its
bytes are sent, and whose ``admit`` turns the finished file into a dataset and a job.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.db import sync_engine
from service.core.errors import Unprocessable
from service.core.settings import Settings
from service.core.tables import datasets, jobs
from service.datasets.kinds import ingest_job_kind, kind_for
from service.datasets.store import new_dataset
from service.jobs.execute import run_job
from service.jobs.registry import handler_map
from service.jobs.submit import submit_job, submit_job_async
from service.uploads.storage import sha256_of

log = logging.getLogger(__name__)
Watcher = Callable[[Any], None]  # called with the job row while it runs


def ingestible(settings: Settings, kind: str) -> bool:
    return ingest_job_kind(kind) in handler_map(settings.job_handlers)


class UploadIntake:
    """What the uploads package calls: the app's rules for files arriving over tus."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _source(self, dataset_id: int, filename: str) -> Path:
        """Where a dataset's uploaded file is kept: sources/<dataset id>/<file name>."""
        return self.settings.data_dir / "sources" / str(dataset_id) / filename

    def kind_of(self, filename: str, declared: str | None) -> str:
        kind = kind_for(filename, declared)
        if not ingestible(self.settings, kind):
            raise Unprocessable(f"{kind} files cannot be ingested by this server yet")
        return kind

    async def admit(self, conn: AsyncConnection, upload: Any, part: Path, digest: str,
                    who: str) -> tuple[int, int]:
        """In the caller's transaction: the upload's dataset, its file moved from ``part``
        to the dataset's sources folder, and its ingest job; (dataset id, job id). If the
        transaction fails after the move, the file is moved back so the upload can finish
        again."""
        dataset_id = (await conn.execute(new_dataset(
            upload.kind, upload.options.get("name") or upload.filename, source_path="",
            sha256=digest, size_bytes=upload.length, options=dict(upload.options),
            uploaded_by=who))).scalar_one()
        target = self._source(dataset_id, upload.filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
        try:
            await conn.execute(update(datasets).where(datasets.c.id == dataset_id)
                               .values(source_path=str(target)))
            job_id = await submit_job_async(
                conn, ingest_job_kind(upload.kind), dataset_id=dataset_id,
                params=dict(upload.options), created_by=who,
                max_attempts=self.settings.job_max_attempts)
        except BaseException:
            os.replace(target, part)
            raise
        return dataset_id, job_id

    def undo(self, part: Path, dataset_id: int, filename: str) -> None:
        """The caller's transaction did not commit after :meth:`admit`: put the file back."""
        target = self._source(dataset_id, filename)
        if target.exists():
            os.replace(target, part)


def ingest_file(url: str, kind: str, path: Path, *, options: dict[str, Any],
                name: str | None = None, who: str = "cli", watch: Watcher | None = None,
                poll_seconds: float = 0.3, settings: Settings | None = None,
                job_params: dict[str, Any] | None = None) -> Any:
    """Create the dataset and job for ``path`` and run the job in this process (the CLI),
    with live progress; return the job's final row. Its progress, report and errors are
    visible through the API as for an upload. ``options`` are the dataset's (kept with it);
    ``job_params`` are this run's only."""
    path = path.resolve()
    engine = sync_engine(url)
    with engine.begin() as conn:
        dataset_id = conn.execute(new_dataset(
            kind, name or path.name, source_path=str(path), sha256=sha256_of(path),
            size_bytes=path.stat().st_size, options=options, uploaded_by=who)).scalar_one()
        job_id = submit_job(conn, ingest_job_kind(kind), dataset_id=dataset_id,
                            params={**options, **(job_params or {})}, created_by=who,
                            max_attempts=1, enqueue=False)
    runner = threading.Thread(target=run_job, args=(job_id, url, settings), daemon=True)
    runner.start()
    while runner.is_alive():
        if watch is not None:
            watch(_job_row(engine, job_id))
        runner.join(poll_seconds)
    final = _job_row(engine, job_id)
    if watch is not None:
        watch(final)
    return final


def _job_row(engine, job_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).first()


def queue_samples(settings: Settings, url: str) -> list[int]:
    """Queue the sample data in ``data/`` so a new installation has something to show.

    ``data/samples.json`` lists the files with the options they need (several real samples
    carry no CRS, so it is given there, as an operator would). Samples are queued once: a
    dataset whose source is the sample file is not queued again."""
    manifest = settings.samples_dir / "samples.json"
    if not manifest.exists():
        log.info("no %s: no samples to load", manifest)
        return []
    entries = json.loads(manifest.read_text())["samples"]
    engine = sync_engine(url)
    queued: list[int] = []
    for entry in entries:
        path = (settings.samples_dir / entry["file"]).resolve()
        kind = kind_for(path.name, entry.get("kind"))
        if not ingestible(settings, kind):
            log.info("sample %s: %s ingest is not available, skipped", path.name, kind)
            continue
        with engine.begin() as conn:
            seen = conn.execute(select(datasets.c.id)
                                .where(datasets.c.source_path == str(path))).first()
            if seen:
                continue
            options = dict(entry.get("options", {}))
            dataset_id = conn.execute(new_dataset(
                kind, entry.get("name") or path.name, source_path=str(path),
                sha256=sha256_of(path), size_bytes=path.stat().st_size, options=options,
                uploaded_by="samples")).scalar_one()
            submit_job(conn, ingest_job_kind(kind), dataset_id=dataset_id, params=options,
                       created_by="samples", max_attempts=settings.job_max_attempts)
        queued.append(dataset_id)
        log.info("sample %s queued as dataset %s", path.name, dataset_id)
    return queued
