"""Datasets: every upload, its status, CRS, footprint, bounds and statistics."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request
from geoalchemy2.functions import ST_AsGeoJSON
from sqlalchemy import select

from service.core.auth import Reader
from service.core.errors import NotFound
from service.core.ids import Id
from service.core.tables import datasets, jobs, tilesets

router = APIRouter(prefix="/datasets", tags=["datasets"])

_COLUMNS = [c for c in datasets.c if c.name not in ("footprint", "source_path")]


def dataset_view(row: Any) -> dict[str, Any]:
    data = {c.name: getattr(row, c.name) for c in _COLUMNS}
    data["footprint"] = json.loads(row.footprint_geojson) if row.footprint_geojson else None
    data["links"] = {"self": f"/datasets/{row.id}", "jobs": f"/jobs?dataset={row.id}"}
    return data


def _query():
    return select(*_COLUMNS, ST_AsGeoJSON(datasets.c.footprint, 7).label("footprint_geojson"))


@router.get("", summary="Datasets, newest first")
async def list_datasets(request: Request, _: Reader, kind: str | None = None,
                        limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    query = _query().order_by(datasets.c.id.desc()).limit(limit)
    if kind:
        query = query.where(datasets.c.kind == kind)
    async with request.app.state.engine.connect() as conn:
        return [dataset_view(r) for r in (await conn.execute(query)).all()]


@router.get("/{dataset_id}", summary="One dataset with its jobs and tileset versions")
async def get_dataset(dataset_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(_query().where(datasets.c.id == dataset_id))).first()
        if row is None:
            raise NotFound(f"no dataset {dataset_id}")
        job_rows = (await conn.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.stage, jobs.c.progress)
            .where(jobs.c.dataset_id == dataset_id).order_by(jobs.c.id))).mappings().all()
        ts_rows = (await conn.execute(
            select(tilesets.c.name, tilesets.c.version, tilesets.c.status,
                   tilesets.c.is_current, tilesets.c.published_at)
            .where(tilesets.c.dataset_id == dataset_id).order_by(tilesets.c.version)
        )).mappings().all()
    view = dataset_view(row)
    view["jobs"] = [dict(r) for r in job_rows]
    view["tilesets"] = [
        dict(r, url=f"/tiles/{r['name']}/v{r['version']}/tileset.json") for r in ts_rows
    ]
    return view
