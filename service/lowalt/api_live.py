"""Telemetry in; live status and its stream out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.auth import Reader, Writer
from service.core.db import make_async_engine
from service.core.ids import header_int
from service.lowalt.live import all_states, stream
from service.lowalt.schemas import TelemetryBatch, TelemetryIn
from service.lowalt.settings import LowAltSettings, lowalt_settings
from service.lowalt.telemetry import ingest

router = APIRouter(tags=["low altitude"])
Settings = Annotated[LowAltSettings, Depends(lowalt_settings)]


_TELEMETRY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a report stamped more than 5 s (``clock_ahead_s``) ahead of the "
                         "server clock (problem+json with point, ahead_s, server_time); "
                         "nothing was stored"},
    422: {"description": "unknown drone, naive time, position outside the metric CRS's "
                         "area, or values out of range; nothing was stored"},
}


_TELEMETRY_DOC = (
    "Reports stamped more than 5 s (`clock_ahead_s`, the ASTM F3548-21 clock bound) ahead of "
    "the server clock are refused with 400. The answer: `stored`, `drones`, `flagged` (each "
    "report's flags: outside_corridor, outside_altitude_band, outside_time_window, "
    "no_approved_route, above_height_limit: over 120 m above ground, 50 m for micro drones, "
    "off a route approved with an authorisation) and `latest` per drone: height_agl_m, "
    "ground_reference (city_model, lidar_survey or egm96_sea_level) and ground_note where "
    "no ground is known and sea level is used.")


def _telemetry_engine(request: Request) -> AsyncEngine:
    """The engine telemetry writes through: the app's database, in autocommit. A batch is
    two statements (the second writes everything at once, so it is all or nothing by
    itself); a transaction around them would add BEGIN and COMMIT. Its pool pings only a
    connection that sat idle (``make_async_engine``). Made on first use; the app disposes
    of it at shutdown (``app.state.more_engines``)."""
    state = request.app.state
    engine = getattr(state, "telemetry_engine", None)
    if engine is None:
        engine = state.telemetry_engine = make_async_engine(
            state.database_url, isolation_level="AUTOCOMMIT", pool_size=5, max_overflow=10)
        state.more_engines = [*getattr(state, "more_engines", ()), engine]
    return engine


@router.post("/telemetry", status_code=201, summary="Telemetry in a batch (all or nothing)",
             description=_TELEMETRY_DOC, responses=_TELEMETRY_ERRORS)
async def telemetry_batch(body: TelemetryBatch, request: Request, _: Writer, s: Settings
                          ) -> dict[str, Any]:
    async with _telemetry_engine(request).connect() as conn:
        out = await ingest(conn, body.points, s,
                           request.app.state.settings.telemetry_retention_days, autocommit=True)
    request.state.audit_detail = {"telemetry": out["stored"]}
    request.state.audit_batch = True  # a POST a second per ground station: rows in batches
    return out


@router.post("/telemetry/one", status_code=201, summary="One telemetry report",
             description=_TELEMETRY_DOC, responses=_TELEMETRY_ERRORS)
async def telemetry_one(body: TelemetryIn, request: Request, _: Writer, s: Settings
                        ) -> dict[str, Any]:
    async with _telemetry_engine(request).connect() as conn:
        out = await ingest(conn, [body], s,
                           request.app.state.settings.telemetry_retention_days, autocommit=True)
    request.state.audit_batch = True
    return out


@router.get("/drones-live", summary="Latest state of every drone, with conformance flags",
            description="GeoJSON features; properties include flags, conforming, "
                        "height_agl_m, ground_reference and, where sea level stood in for "
                        "the ground, ground_note.")
async def drones_live(request: Request, _: Reader, s: Settings) -> dict[str, Any]:
    return await all_states(request.app.state.engine, s)


@router.get("/drones-live/stream", summary="Server-Sent Events: every state change, "
            "every drone gone silent, and notices", response_class=StreamingResponse,
            description="Events `state` and `silent` (a drone's live state as GeoJSON), and "
                        "`notice` (an emergency dispatched by the fleet dispatcher: task, "
                        "drone, eta, pre-empted tasks and flights). States and notices share "
                        "one id sequence: a client that reconnects with `Last-Event-ID` gets "
                        "what it missed of both.")
async def drones_live_stream(request: Request, _: Reader, s: Settings,
                             last_event_id: Annotated[str | None, Header()] = None
                             ) -> StreamingResponse:
    last = header_int(last_event_id, "Last-Event-ID") if last_event_id else None
    return StreamingResponse(
        stream(request.app.state.engine, s, last, request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
