"""Traffic layer: observation ingest, per-segment series, congestion and the area TPI."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.layers import gbt33171
from service.layers.batch import Field, refuse, validate

OBSERVATION_FIELDS = (
    Field("segment_id", "integer", required=True, min=1),
    Field("observed_at", "datetime", required=True),
    Field("volume", "integer", required=True, min=0, max=100_000),
    Field("speed_kmh", "number", required=True, min=0, max=250),
    Field("occupancy", "number", min=0, max=100),
)
INTERVALS = {"5min": timedelta(minutes=5), "1h": timedelta(hours=1), "1d": timedelta(days=1)}


async def insert_segments(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    await conn.execute(text(
        "INSERT INTO road_segments (code, name, road_class, lanes, speed_limit_kmh,"
        " free_flow_kmh, length_m, geom)"
        " SELECT code, name, road_class, lanes, sl, ff,"
        " ST_Length(ST_GeomFromText(wkt, 4326)::geography), ST_GeomFromText(wkt, 4326)"
        " FROM unnest(CAST(:code AS text[]), CAST(:name AS text[]), CAST(:rc AS text[]),"
        " CAST(:lanes AS smallint[]), CAST(:sl AS real[]), CAST(:ff AS real[]),"
        " CAST(:wkt AS text[])) AS u(code, name, road_class, lanes, sl, ff, wkt)"
        " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,"
        " road_class = EXCLUDED.road_class, lanes = EXCLUDED.lanes,"
        " speed_limit_kmh = EXCLUDED.speed_limit_kmh, free_flow_kmh = EXCLUDED.free_flow_kmh,"
        " length_m = EXCLUDED.length_m, geom = EXCLUDED.geom, updated_at = now()"),
        {"code": [r["code"] for r in rows], "name": [r["name"] for r in rows],
         "rc": [r["road_class"] for r in rows], "lanes": [r["lanes"] for r in rows],
         "sl": [r["speed_limit_kmh"] for r in rows], "ff": [r["free_flow_kmh"] for r in rows],
         "wkt": [r["wkt"] for r in rows]})
    return len(rows)


async def ingest_observations(conn: AsyncConnection, raw_rows: list[Any]) -> int:
    rows, errors = validate(raw_rows, OBSERVATION_FIELDS)
    seen: dict[tuple[int, datetime], int] = {}
    for row in rows:
        key = (row["segment_id"], row["observed_at"])
        if key in seen:
            errors.append({"row": row["_row"],
                           "reasons": [f"same segment and time as row {seen[key]}"]})
        seen.setdefault(key, row["_row"])
    ids = sorted({r["segment_id"] for r in rows})
    found = {r[0] for r in (await conn.execute(
        text("SELECT id FROM road_segments WHERE id = ANY(CAST(:ids AS bigint[]))"),
        {"ids": ids})).all()} if ids else set()
    for row in rows:
        if row["segment_id"] not in found:
            errors.append({"row": row["_row"], "reasons": [
                f"segment_id {row['segment_id']} is not a road segment"]})
    refuse(errors, len(raw_rows))
    await conn.execute(text(
        "INSERT INTO traffic_observations (segment_id, observed_at, volume, speed_kmh, occupancy)"
        " SELECT * FROM unnest(CAST(:s AS bigint[]), CAST(:t AS timestamptz[]),"
        " CAST(:v AS integer[]), CAST(:sp AS real[]), CAST(:o AS real[]))"
        " ON CONFLICT (segment_id, observed_at) DO UPDATE SET volume = EXCLUDED.volume,"
        " speed_kmh = EXCLUDED.speed_kmh, occupancy = EXCLUDED.occupancy"),
        {"s": [r["segment_id"] for r in rows], "t": [r["observed_at"] for r in rows],
         "v": [r["volume"] for r in rows], "sp": [r["speed_kmh"] for r in rows],
         "o": [r["occupancy"] for r in rows]})
    return len(rows)


async def segment(conn: AsyncConnection, segment_id: int) -> Any:
    return (await conn.execute(text(
        "SELECT id, code, name, road_class, free_flow_kmh, length_m FROM road_segments"
        " WHERE id = CAST(:id AS bigint)"), {"id": segment_id})).first()


async def series(conn: AsyncConnection, seg: Any, start: datetime, end: datetime,
                 interval: str, limit: int) -> list[dict[str, Any]]:
    params = {"id": seg.id, "a": start, "b": end, "n": limit}
    if interval == "raw":
        sql = ("SELECT observed_at AS bucket, volume, speed_kmh AS speed, occupancy, 1 AS n"
               " FROM traffic_observations WHERE segment_id = CAST(:id AS bigint)"
               " AND observed_at >= CAST(:a AS timestamptz) AND observed_at < CAST(:b AS"
               " timestamptz) ORDER BY observed_at LIMIT CAST(:n AS integer)")
    else:
        params["step"] = INTERVALS[interval]
        # speed of a bucket: volume-weighted mean (space-mean-like), plain mean if no volume
        sql = ("SELECT date_bin(CAST(:step AS interval), observed_at,"
               " '2000-01-01T00:00:00Z'::timestamptz) AS bucket, sum(volume)::bigint AS volume,"
               " coalesce(sum(speed_kmh * volume) / NULLIF(sum(volume), 0), avg(speed_kmh))"
               " AS speed, avg(occupancy) AS occupancy, count(*) AS n"
               " FROM traffic_observations WHERE segment_id = CAST(:id AS bigint)"
               " AND observed_at >= CAST(:a AS timestamptz) AND observed_at < CAST(:b AS"
               " timestamptz) GROUP BY 1 ORDER BY 1 LIMIT CAST(:n AS integer)")
    out = []
    for r in (await conn.execute(text(sql), params)).all():
        level = gbt33171.congestion(seg.road_class, float(r.speed), seg.free_flow_kmh)
        out.append({"time": r.bucket.isoformat(), "volume": int(r.volume),
                    "speed_kmh": round(float(r.speed), 2),
                    "occupancy": None if r.occupancy is None else round(float(r.occupancy), 2),
                    "observations": int(r.n), **level.as_dict()})
    return out


def _area_sql(bbox: bool) -> str:
    return (
        "SELECT s.id, s.code, s.road_class, s.free_flow_kmh, s.length_m,"
        " sum(o.volume)::bigint AS volume,"
        " coalesce(sum(o.speed_kmh * o.volume) / NULLIF(sum(o.volume), 0), avg(o.speed_kmh))"
        " AS speed FROM road_segments s JOIN traffic_observations o ON o.segment_id = s.id"
        " WHERE o.observed_at >= CAST(:a AS timestamptz)"
        " AND o.observed_at < CAST(:b AS timestamptz)"
        + (" AND ST_Intersects(s.geom, ST_MakeEnvelope(CAST(:x1 AS double precision),"
           " CAST(:y1 AS double precision), CAST(:x2 AS double precision),"
           " CAST(:y2 AS double precision), 4326))" if bbox else "")
        + " GROUP BY s.id"
    )


async def area(conn: AsyncConnection, start: datetime, end: datetime,
               bbox: tuple[float, float, float, float] | None) -> list[Any]:
    params: dict[str, Any] = {"a": start, "b": end}
    if bbox:
        params.update(zip(("x1", "y1", "x2", "y2"), bbox, strict=True))
    return list((await conn.execute(text(_area_sql(bbox is not None)), params)).all())


def tpi_report(rows: list[Any]) -> dict[str, Any]:
    weighted = [(r.road_class, float(r.speed), float(r.free_flow_kmh),
                 float(r.volume) * float(r.length_m) / 1000.0) for r in rows]
    tpi = gbt33171.area_tpi(weighted)
    levels = [0] * 5
    by_class: dict[str, list[tuple[str, float, float, float]]] = {}
    for w in weighted:
        levels[gbt33171.level_of(w[0], w[1])] += 1
        by_class.setdefault(w[0], []).append(w)
    report: dict[str, Any] = {
        "segments": len(rows),
        "vkt_km": round(sum(w[3] for w in weighted), 1),
        "tpi": None if tpi is None else round(tpi, 2),
        "segments_by_level": {gbt33171.LEVELS[i]: n for i, n in enumerate(levels)},
        "by_road_class": {k: round(v, 2) for k, v in
                          ((c, gbt33171.area_tpi(ws)) for c, ws in by_class.items())
                          if v is not None},
        "method": "GB/T 33171-2016 levels; VKT-weighted mean of segment indices "
                  "(service/layers/gbt33171.py documents the formula)",
    }
    if tpi is not None:
        level = gbt33171.level_for_index(tpi)
        report["level"] = gbt33171.LEVELS[level]
        report["level_en"] = gbt33171.LEVELS_EN[level]
    return report
