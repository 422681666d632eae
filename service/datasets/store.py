"""Statements on the ``datasets`` table: rows created when an upload completes (or the CLI
ingests a file), and what the API reads of them."""

from __future__ import annotations

from typing import Any

from geoalchemy2.functions import ST_AsGeoJSON
from sqlalchemy import Engine, Insert, Select, Update, func, insert, select, update

from service.core.tables import datasets, jobs, tilesets


def new_dataset(kind: str, name: str, *, source_path: str, sha256: str | None,
                size_bytes: int, options: dict[str, Any], uploaded_by: str | None) -> Insert:
    return (
        insert(datasets)
        .values(kind=kind, name=name, source_path=source_path, sha256=sha256,
                size_bytes=size_bytes, options=options, uploaded_by=uploaded_by,
                status="uploaded")
        .returning(datasets.c.id)
    )


def mark_dataset_failed(engine: Engine, dataset_id: int, message: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(datasets).where(datasets.c.id == dataset_id)
            .values(status="failed", updated_at=func.now(),
                    stats=datasets.c.stats.op("||")(func.jsonb_build_object("error", message)))
        )


def start_ingest(dataset_id: int) -> Update:
    """The dataset's row, marked as being ingested (run with the claim of its job)."""
    return (update(datasets).where(datasets.c.id == dataset_id)
            .values(status="ingesting", updated_at=func.now()).returning(*datasets.c))


# what the API shows of a dataset: everything but the raw footprint and the server's path
VIEW_COLUMNS = [c for c in datasets.c if c.name not in ("footprint", "source_path")]


def view() -> Select:
    """Datasets as the API shows them, the footprint as GeoJSON text."""
    return select(*VIEW_COLUMNS,
                  ST_AsGeoJSON(datasets.c.footprint, 7).label("footprint_geojson"))


def listing(*, kind: str | None, limit: int) -> Select:
    query = view().order_by(datasets.c.id.desc()).limit(limit)
    return query.where(datasets.c.kind == kind) if kind else query


def one(dataset_id: int) -> Select:
    return view().where(datasets.c.id == dataset_id)


def jobs_of(dataset_id: int) -> Select:
    return (select(jobs.c.id, jobs.c.status, jobs.c.stage, jobs.c.progress)
            .where(jobs.c.dataset_id == dataset_id).order_by(jobs.c.id))


def versions_of(dataset_id: int) -> Select:
    return (select(tilesets.c.name, tilesets.c.version, tilesets.c.status,
                   tilesets.c.is_current, tilesets.c.published_at)
            .where(tilesets.c.dataset_id == dataset_id).order_by(tilesets.c.version))
