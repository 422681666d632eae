"""Jobs: what is running, how far it got, and why it failed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from service.core.auth import Admin, Reader
from service.core.errors import NotFound
from service.core.ids import Id
from service.jobs import store
from service.jobs.submit import submit_job_async

router = APIRouter(prefix="/jobs", tags=["jobs"])


def job_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind, "dataset_id": row.dataset_id, "status": row.status,
        "stage": row.stage,
        "progress": {"fraction": round(row.progress, 4), "items_done": row.items_done,
                     "items_total": row.items_total},
        "attempts": row.attempts, "max_attempts": row.max_attempts, "error": row.error,
        "report": row.report, "created_by": row.created_by, "created_at": row.created_at,
        "started_at": row.started_at, "updated_at": row.updated_at,
        "finished_at": row.finished_at,
        "links": {"self": f"/jobs/{row.id}",
                  "dataset": f"/datasets/{row.dataset_id}" if row.dataset_id else None},
    }


@router.get("", summary="Recent jobs, newest first")
async def list_jobs(request: Request, _: Reader,
                    status: str | None = Query(None, description="queued, running, ..."),
                    dataset: Id | None = Query(None, description="jobs of this dataset"),
                    limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    query = store.recent(status=status, dataset_id=dataset, limit=limit)
    async with request.app.state.engine.connect() as conn:
        return [job_view(r) for r in (await conn.execute(query)).all()]


@router.get("/{job_id}", summary="One job: stage, progress, timestamps, error, report")
async def get_job(job_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(store.one(job_id))).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return job_view(row)


class SelfcheckRequest(BaseModel):
    steps: int = Field(10, ge=1, le=10_000)
    step_seconds: float = Field(0.1, ge=0, le=60)
    fail_at: int | None = Field(None, ge=0, description="fail on purpose at this step")


@router.post("/selfcheck", status_code=202,
             summary="Queue a diagnostic job that only counts, to see workers at work")
async def selfcheck(body: SelfcheckRequest, request: Request, principal: Admin
                    ) -> dict[str, Any]:
    settings = request.app.state.settings
    async with request.app.state.engine.begin() as conn:
        job_id = await submit_job_async(conn, "selfcheck", params=body.model_dump(),
                                        created_by=principal.name,
                                        max_attempts=settings.job_max_attempts)
    request.state.audit_detail = {"job": job_id}
    return {"job_id": job_id, "links": {"job": f"/jobs/{job_id}"}}
