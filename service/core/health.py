"""Liveness, readiness and metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from service.core.auth import Reader
from service.core.db import current_revision, head_revision
from service.core.errors import ServiceUnavailable
from service.core.observe import metrics_payload

log = logging.getLogger(__name__)
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
        # the driver's message names hosts, ports, users and databases: the log has it
        log.warning("readiness check: the database did not answer: %s: %s",
                    type(exc).__name__, exc)
        raise ServiceUnavailable("the database is unreachable; the server log says why") \
            from exc
    head = head_revision()
    if revision != head:
        raise ServiceUnavailable(f"database schema is at {revision}, code expects {head}: "
                                 "run `twinbase db upgrade`")
    return {"status": "ready", "database": "ok", "migration": revision}


@router.get("/metrics", summary="Prometheus metrics (needs a key when reads do)",
            response_class=Response)
async def metrics(_: Reader) -> Response:
    body, content_type = metrics_payload()
    return Response(body, media_type=content_type)
