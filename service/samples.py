"""Loading the sample data in ``data/`` so a new installation has something to show.

``data/samples.json`` lists the files with the options they need (several real samples
carry no CRS, so it is given there, as an operator would). Samples are queued once: a
dataset whose source is the sample file is not queued again.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import select

from service.db import sync_engine
from service.ingest.datasets import new_dataset
from service.ingest.kinds import ingest_job_kind, kind_for
from service.jobs.registry import known_kinds
from service.jobs.submit import submit_job
from service.models import datasets
from service.settings import Settings
from service.uploads.storage import sha256_of

log = logging.getLogger(__name__)


def queue_samples(settings: Settings, url: str) -> list[int]:
    manifest = settings.samples_dir / "samples.json"
    if not manifest.exists():
        log.info("no %s: no samples to load", manifest)
        return []
    entries = json.loads(manifest.read_text())["samples"]
    engine = sync_engine(url)
    ingestible = set(known_kinds())
    queued: list[int] = []
    for entry in entries:
        path = (settings.samples_dir / entry["file"]).resolve()
        kind = kind_for(path.name, entry.get("kind"))
        if ingest_job_kind(kind) not in ingestible:
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
