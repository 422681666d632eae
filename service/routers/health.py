"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from service.db import current_revision, head_revision
from service.errors import ServiceUnavailable
from service.observe import metrics_payload

router = APIRouter(tags=["operations"])


@router.get("/health", summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The database answers and its schema is at the latest migration")
async def ready(request: Request) -> dict[str, object]:
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            revision = await current_revision(conn)
    except Exception as exc:
        raise ServiceUnavailable(f"database unreachable: {type(exc).__name__}: {exc}") from exc
    head = head_revision()
    if revision != head:
        raise ServiceUnavailable(f"database schema is at {revision}, code expects {head}: "
                                 "run `twinbase db upgrade`")
    return {"status": "ready", "database": "ok", "migration": revision}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    body, content_type = metrics_payload()
    return Response(body, media_type=content_type)
