"""Dataset rows: created when an upload completes (or the CLI ingests a file)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Insert, Update, func, insert, update

from service.core.tables import datasets


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
