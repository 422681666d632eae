"""Traffic layer: observation ingest, per-segment series, congestion and the area TPI."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.partitions import ensure
from service.layers import gbt33171, store
from service.layers.batch import Field, refuse, validate
from service.layers.tables import TRAFFIC_PARTITIONS

OBSERVATION_FIELDS = (
    Field("segment_id", "integer", required=True, min=1),
    Field("observed_at", "datetime", required=True),
    Field("volume", "integer", required=True, min=0, max=100_000),
    Field("speed_kmh", "number", required=True, min=0, max=250),
    Field("occupancy", "number", min=0, max=100),
)
INTERVALS = {"5min": timedelta(minutes=5), "1h": timedelta(hours=1), "1d": timedelta(days=1)}


async def insert_segments(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    await conn.execute(store.upsert_segments(rows))
    return len(rows)


async def ingest_observations(conn: AsyncConnection, raw_rows: list[Any],
                              retention_days: int | None = None) -> int:
    rows, errors = validate(raw_rows, OBSERVATION_FIELDS)
    seen: dict[tuple[int, datetime], int] = {}
    for row in rows:
        key = (row["segment_id"], row["observed_at"])
        if key in seen:
            errors.append({"row": row["_row"],
                           "reasons": [f"same segment and time as row {seen[key]}"]})
        seen.setdefault(key, row["_row"])
    ids = sorted({r["segment_id"] for r in rows})
    found = set((await conn.execute(store.existing_segments(ids))).scalars()) if ids else set()
    for row in rows:
        if row["segment_id"] not in found:
            errors.append({"row": row["_row"], "reasons": [
                f"segment_id {row['segment_id']} is not a road segment"]})
    refuse(errors, len(raw_rows))
    if rows:
        await conn.run_sync(ensure, TRAFFIC_PARTITIONS, [r["observed_at"] for r in rows],
                            retention_days)
    await conn.execute(store.upsert_traffic(rows))
    return len(rows)


async def segment(conn: AsyncConnection, segment_id: int) -> Any:
    return (await conn.execute(store.segment(segment_id))).first()


async def series(conn: AsyncConnection, seg: Any, start: datetime, end: datetime,
                 interval: str, limit: int) -> list[dict[str, Any]]:
    step = None if interval == "raw" else INTERVALS[interval]
    out = []
    for r in (await conn.execute(store.series(seg.id, start, end, step, limit))).all():
        level = gbt33171.congestion(seg.road_class, float(r.speed), seg.free_flow_kmh)
        out.append({"time": r.bucket.isoformat(), "volume": int(r.volume),
                    "speed_kmh": round(float(r.speed), 2),
                    "occupancy": None if r.occupancy is None else round(float(r.occupancy), 2),
                    "observations": int(r.n), **level.as_dict()})
    return out


async def area(conn: AsyncConnection, start: datetime, end: datetime,
               bbox: tuple[float, float, float, float] | None) -> list[Any]:
    return list((await conn.execute(store.area(start, end, bbox))).all())


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
