"""Datasets: every upload, its status, CRS, footprint, bounds and statistics."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request

from service.core.auth import Reader
from service.core.errors import NotFound
from service.core.ids import Id
from service.datasets import store

router = APIRouter(prefix="/datasets", tags=["datasets"])


def dataset_view(row: Any) -> dict[str, Any]:
    data = {c.name: getattr(row, c.name) for c in store.VIEW_COLUMNS}
    data["footprint"] = json.loads(row.footprint_geojson) if row.footprint_geojson else None
    data["links"] = {"self": f"/datasets/{row.id}", "jobs": f"/jobs?dataset={row.id}"}
    return data


@router.get("", summary="Datasets, newest first")
async def list_datasets(request: Request, _: Reader, kind: str | None = None,
                        limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(store.listing(kind=kind, limit=limit))).all()
    return [dataset_view(r) for r in rows]


@router.get("/{dataset_id}", summary="One dataset with its jobs and tileset versions")
async def get_dataset(dataset_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(store.one(dataset_id))).first()
        if row is None:
            raise NotFound(f"no dataset {dataset_id}")
        job_rows = (await conn.execute(store.jobs_of(dataset_id))).mappings().all()
        ts_rows = (await conn.execute(store.versions_of(dataset_id))).mappings().all()
    view = dataset_view(row)
    view["jobs"] = [dict(r) for r in job_rows]
    view["tilesets"] = [
        dict(r, url=f"/tiles/{r['name']}/v{r['version']}/tileset.json") for r in ts_rows
    ]
    return view
