"""What a job leaves when it fails or its worker dies: the job's row, its dataset, its
unfinished tileset versions and its uploaded source, settled together."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, select, update

from service.core.settings import Settings
from service.core.tables import datasets, jobs
from service.jobs import store
from service.tilesets.store import abandon_job_versions

log = logging.getLogger(__name__)

# Kinds whose datasets can be ingested again from their stored source (POST
# /datasets/{id}/ingest re-runs an IFC model, e.g. with an anchor after a failed
# placement): their sources stay until the dataset goes.
REINGESTABLE = frozenset({"ifc"})


def fail_job_in(conn: Connection, job_id: int, message: str, *,
                report: dict[str, Any] | None = None, attempt: int | None = None,
                from_status: tuple[str, ...] = ("running",)) -> list[str] | None:
    """Fail the job, its dataset (for an ingest) and its unfinished tileset versions in
    the caller's transaction. ``None`` when the job was not changed (not in
    ``from_status``, or no longer owned by ``attempt``); else the paths of the versions
    hidden, whose files the caller removes after commit (remove_version_files)."""
    row = conn.execute(store.fail(job_id, message, report, from_status, attempt)).first()
    if row is None:
        return None
    if row.dataset_id is not None and row.kind.startswith("ingest"):
        conn.execute(
            update(datasets).where(datasets.c.id == row.dataset_id)
            .values(status="failed", updated_at=func.now(),
                    stats=datasets.c.stats.op("||")(func.jsonb_build_object("error", message))))
    return abandon_job_versions(conn, job_id)


def discard_failed_sources(engine: Engine, settings: Settings,
                           dataset_id: int | None = None) -> int:
    """Delete the uploaded files of datasets whose ingest failed for good: nothing reads
    them again (a new upload makes a new dataset), and a failed GB survey would otherwise
    hold its disk space for ever. Files outside the server's ``sources`` folder (samples,
    CLI ingests of the operator's own files) are never touched, nor the sources of kinds
    that can be ingested again, nor those of a dataset that still has a job to run.
    Returns how many files were deleted."""
    root = (settings.data_dir / "sources").resolve()
    busy = exists().where(and_(jobs.c.dataset_id == datasets.c.id,
                               jobs.c.status.in_(("queued", "running"))))
    query = (select(datasets.c.id, datasets.c.source_path)
             .where(datasets.c.status == "failed", datasets.c.source_path.is_not(None),
                    datasets.c.source_path != "", datasets.c.kind.not_in(REINGESTABLE),
                    ~busy))
    if dataset_id is not None:
        query = query.where(datasets.c.id == dataset_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    removed = 0
    for row in rows:
        path = Path(row.source_path).resolve()
        if not path.is_relative_to(root):
            continue
        with engine.begin() as conn:
            # forget the path first: a dataset never names a file that is gone
            still = conn.execute(
                update(datasets).where(datasets.c.id == row.id, datasets.c.status == "failed",
                                       datasets.c.source_path == row.source_path, ~busy)
                .values(source_path=None).returning(datasets.c.id)).first()
        if still is None:
            continue
        path.unlink(missing_ok=True)
        if path.parent != root:  # sources/<dataset id>/<file name>
            with contextlib.suppress(OSError):  # not empty: not ours to clear
                path.parent.rmdir()
        removed += 1
        log.info("dataset %s failed: its uploaded source %s was deleted", row.id, path.name)
    return removed
