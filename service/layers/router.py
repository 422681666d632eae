"""Layer services: ingest (operator/admin keys) and the traffic and water-quality reads.
The layers' features themselves are served by the OGC API - Features endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request

from service.core.auth import Reader, Writer
from service.core.db import bounded_read
from service.core.errors import BadRequest, NotFound
from service.core.ids import Id
from service.features.params import parse_bbox, parse_instant
from service.layers import batch, features_in, gb3838, gbt33171, traffic, water

router = APIRouter(prefix="/layers", tags=["layers"])
MAX_WINDOW = timedelta(days=400)


def _time(value: str | None, what: str, default: datetime | None) -> datetime | None:
    return parse_instant(value, what)[0] if value else default


def _window(start: str | None, end: str | None, default_days: int) -> tuple[datetime, datetime]:
    b = _time(end, "end", datetime.now(UTC))
    try:
        a = _time(start, "start", b - timedelta(days=default_days))
    except OverflowError:
        raise BadRequest(f"end {end!r} leaves no room for the default window of "
                         f"{default_days} days before it; give start") from None
    if a >= b:
        raise BadRequest("start must be before end")
    if b - a > MAX_WINDOW:
        raise BadRequest(f"a window is at most {MAX_WINDOW.days} days")
    return a, b


async def _rows(request: Request) -> list[Any]:
    return batch.read_rows(await request.body(), request.headers.get("content-type", ""))


@router.get("", summary="Layer services and the standards they follow")
async def index(_: Reader) -> dict[str, Any]:
    return {
        "traffic": {"standard": "GB/T 33171-2016", "levels": list(gbt33171.LEVELS),
                    "speed_bands_kmh": gbt33171.SPEED_BANDS,
                    "collection": "/collections/road_segments"},
        "water": {"standard": "GB 3838-2002 Table 1",
                  "classes": list(gb3838.CLASS_LABELS.values()),
                  "limits": {lim.name: {"label": lim.label, "unit": lim.unit,
                                        "kind": lim.kind, "I..V": lim.limits,
                                        "lake_I..V": lim.lake_limits,
                                        "lake_only": lim.lake_only} for lim in gb3838.LIMITS},
                  "collection": "/collections/water_stations",
                  "waterways": "/collections/waterways"},
    }


@router.post("/traffic/segments", status_code=201,
             summary="Add or update road segments (GeoJSON FeatureCollection, upsert by code)")
async def post_segments(request: Request, principal: Writer) -> dict[str, Any]:
    rows, errors = features_in.segment_rows(features_in.read_features(await request.body()))
    batch.refuse(errors, len(rows) + len(errors))
    async with request.app.state.engine.begin() as conn:
        n = await traffic.insert_segments(conn, rows)
    request.state.audit_detail = {"layer": "road_segments", "rows": n}
    return {"written": n}


@router.post("/traffic/observations", status_code=201,
             summary="Bulk traffic observations: JSON array, NDJSON or CSV; all or nothing")
async def post_traffic(request: Request, principal: Writer) -> dict[str, Any]:
    rows = await _rows(request)
    async with request.app.state.engine.begin() as conn:
        n = await traffic.ingest_observations(
            conn, rows, request.app.state.settings.observations_retention_days)
    request.state.audit_detail = {"layer": "traffic_observations", "rows": n}
    return {"inserted": n}


@router.get("/traffic/segments/{segment_id}/series",
            summary="A segment's observations, raw or per 5 min / 1 h / 1 day, with levels")
async def traffic_series(segment_id: Id, request: Request, _: Reader,
                         start: str | None = None, end: str | None = None,
                         interval: str = Query("raw", pattern="^(raw|5min|1h|1d)$"),
                         limit: int = Query(5000, ge=1, le=50_000)) -> dict[str, Any]:
    a, b = _window(start, end, 1)
    async with bounded_read(request.app.state.engine) as conn:
        seg = await traffic.segment(conn, segment_id)
        if seg is None:
            raise NotFound(f"no road segment {segment_id}")
        points = await traffic.series(conn, seg, a, b, interval, limit)
    return {"segment": {"id": seg.id, "code": seg.code, "name": seg.name,
                        "road_class": seg.road_class, "free_flow_kmh": seg.free_flow_kmh},
            "start": a.isoformat(), "end": b.isoformat(), "interval": interval,
            "points": points}


@router.get("/traffic/congestion",
            summary="Congestion level of each segment in an area and window (GB/T 33171-2016)")
async def congestion(request: Request, _: Reader, bbox: str | None = None,
                     start: str | None = None, end: str | None = None,
                     limit: int = Query(1000, ge=1, le=10_000)) -> dict[str, Any]:
    a, b = _window(start, end, 1)
    box = parse_bbox(bbox, None)
    async with bounded_read(request.app.state.engine) as conn:
        rows = await traffic.area(conn, a, b, _box(box))
    segments = [{"id": r.id, "code": r.code, "road_class": r.road_class,
                 "speed_kmh": round(float(r.speed), 2), "volume": int(r.volume),
                 **gbt33171.congestion(r.road_class, float(r.speed),
                                       float(r.free_flow_kmh)).as_dict()}
                for r in rows]
    segments.sort(key=lambda s: -s["index"])
    return {"start": a.isoformat(), "end": b.isoformat(), "segments_total": len(segments),
            "segments": segments[:limit]}


@router.get("/traffic/tpi", summary="Traffic performance index (0-10) of an area and window")
async def tpi(request: Request, _: Reader, bbox: str | None = None, start: str | None = None,
              end: str | None = None) -> dict[str, Any]:
    a, b = _window(start, end, 1)
    box = parse_bbox(bbox, None)
    async with bounded_read(request.app.state.engine) as conn:
        rows = await traffic.area(conn, a, b, _box(box))
    return {"start": a.isoformat(), "end": b.isoformat(), "bbox": bbox,
            **traffic.tpi_report(rows)}


def _box(parsed: Any) -> tuple[float, float, float, float] | None:
    if parsed is None:
        return None
    box, _ = parsed
    return box.minx, box.miny, box.maxx, box.maxy


@router.post("/water/stations", status_code=201,
             summary="Add or update water stations (GeoJSON FeatureCollection, upsert by code)")
async def post_stations(request: Request, principal: Writer) -> dict[str, Any]:
    rows, errors = features_in.station_rows(features_in.read_features(await request.body()))
    batch.refuse(errors, len(rows) + len(errors))
    async with request.app.state.engine.begin() as conn:
        n = await water.insert_stations(conn, rows)
    request.state.audit_detail = {"layer": "water_stations", "rows": n}
    return {"written": n}


@router.post("/water/waterways", status_code=201,
             summary="Add or update rivers, streams and canals (GeoJSON LineStrings, upsert by "
                     "code)")
async def post_waterways(request: Request, principal: Writer) -> dict[str, Any]:
    rows, errors = features_in.waterway_rows(features_in.read_features(await request.body()))
    batch.refuse(errors, len(rows) + len(errors))
    async with request.app.state.engine.begin() as conn:
        n = await water.insert_waterways(conn, rows)
    request.state.audit_detail = {"layer": "waterways", "rows": n}
    return {"written": n}


@router.post("/water/observations", status_code=201,
             summary="Bulk water samples (JSON, NDJSON or CSV), classed under GB 3838-2002")
async def post_water(request: Request, principal: Writer) -> dict[str, Any]:
    rows = await _rows(request)
    async with request.app.state.engine.begin() as conn:
        result = await water.ingest_observations(
            conn, rows, request.app.state.settings.observations_retention_days)
    request.state.audit_detail = {"layer": "water_observations", "rows": result["inserted"]}
    return result


@router.get("/water/stations/latest",
            summary="Every station's newest sample before a time, with its class (for maps)")
async def water_latest(request: Request, _: Reader,
                       end: str | None = Query(None, description="an instant (default: now); "
                                               "samples before it count")) -> dict[str, Any]:
    b = _time(end, "end", datetime.now(UTC))
    async with bounded_read(request.app.state.engine) as conn:
        stations = await water.latest_per_station(conn, b)
    return {"end": b.isoformat(), "stations": stations}


@router.get("/water/stations/{station_id}/assessment",
            summary="GB 3838-2002 class of a station over a period (single-factor rule)")
async def water_assessment(station_id: Id, request: Request, _: Reader,
                           start: str | None = None, end: str | None = None) -> dict[str, Any]:
    a, b = _time(start, "start", None), _time(end, "end", None)
    if a and b and a >= b:
        raise BadRequest("start must be before end")
    async with bounded_read(request.app.state.engine) as conn:
        st = await water.station(conn, station_id)
        if st is None:
            raise NotFound(f"no water station {station_id}")
        return await water.assessment(conn, st, a, b)


@router.get("/water/stations/{station_id}/observations",
            summary="A station's samples, newest first, each with its class")
async def water_observations(station_id: Id, request: Request, _: Reader,
                             start: str | None = None, end: str | None = None,
                             limit: int = Query(500, ge=1, le=10_000)) -> dict[str, Any]:
    a, b = _time(start, "start", None), _time(end, "end", None)
    async with bounded_read(request.app.state.engine) as conn:
        st = await water.station(conn, station_id)
        if st is None:
            raise NotFound(f"no water station {station_id}")
        rows = await water.observations(conn, st, a, b, limit)
    return {"station_id": st.id, "observations": rows}
