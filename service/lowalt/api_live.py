"""Telemetry in; live status and its stream out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from service.auth import Reader, Writer
from service.ids import header_int
from service.lowalt.live import all_states, stream
from service.lowalt.schemas import TelemetryBatch, TelemetryIn
from service.lowalt.settings import LowAltSettings, lowalt_settings
from service.lowalt.telemetry import ingest

router = APIRouter(tags=["low altitude"])
Settings = Annotated[LowAltSettings, Depends(lowalt_settings)]


@router.post("/telemetry", status_code=201, summary="Telemetry in a batch (all or nothing)")
async def telemetry_batch(body: TelemetryBatch, request: Request, _: Writer, s: Settings
                          ) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        out = await ingest(conn, body.points, s)
    request.state.audit_detail = {"telemetry": out["stored"]}
    return out


@router.post("/telemetry/one", status_code=201, summary="One telemetry report")
async def telemetry_one(body: TelemetryIn, request: Request, _: Writer, s: Settings
                        ) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        return await ingest(conn, [body], s)


@router.get("/drones-live", summary="Latest state of every drone, with conformance flags")
async def drones_live(request: Request, _: Reader, s: Settings) -> dict[str, Any]:
    return await all_states(request.app.state.engine, s)


@router.get("/drones-live/stream", summary="Server-Sent Events: every state change and "
            "every drone gone silent", response_class=StreamingResponse)
async def drones_live_stream(request: Request, _: Reader, s: Settings,
                             last_event_id: Annotated[str | None, Header()] = None
                             ) -> StreamingResponse:
    last = header_int(last_event_id, "Last-Event-ID") if last_event_id else None
    return StreamingResponse(
        stream(request.app.state.engine, s, last, request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
