"""Water-quality layer: observation ingest (each sample classified under GB 3838-2002 as it
is stored) and the per-station assessment over a period."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.partitions import ensure
from service.layers import gb3838, store
from service.layers.batch import Field, refuse, validate
from service.layers.tables import WATER_PARTITIONS

_BOUNDS = {"ph": (0, 14), "fecal_coliform": (0, 1e9)}
OBSERVATION_FIELDS = (
    Field("station_id", "integer", required=True, min=1),
    Field("observed_at", "datetime", required=True),
    Field("water_temp", "number", min=-5, max=50),
    *(Field(p, "number", min=_BOUNDS.get(p, (0, 1e5))[0], max=_BOUNDS.get(p, (0, 1e5))[1])
      for p in gb3838.PARAMETERS),
)
_COLUMNS = store.WATER_COLUMNS


async def insert_stations(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    await conn.execute(store.upsert_stations(rows))
    return len(rows)


async def insert_waterways(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    await conn.execute(store.upsert_waterways(rows))
    return len(rows)


async def ingest_observations(conn: AsyncConnection, raw_rows: list[Any],
                              retention_days: int | None = None) -> dict[str, int]:
    rows, errors = validate(raw_rows, OBSERVATION_FIELDS)
    bodies: dict[int, str] = {}
    if rows:
        ids = sorted({r["station_id"] for r in rows})
        bodies = {r.id: r.body_type for r in
                  (await conn.execute(store.station_body_types(ids))).all()}
    seen: dict[tuple[int, datetime], int] = {}
    assessed: list[tuple[dict[str, Any], gb3838.Assessment]] = []
    for row in rows:
        n = row["_row"]
        reasons = []
        key = (row["station_id"], row["observed_at"])
        if key in seen:
            reasons.append(f"same station and time as row {seen[key]}")
        seen.setdefault(key, n)
        body = bodies.get(row["station_id"])
        result = None
        if body is None:
            reasons.append(f"station_id {row['station_id']} is not a water station")
        else:
            result = gb3838.assess({p: row[p] for p in gb3838.PARAMETERS}, body)
            if result is None:
                reasons.append("no GB 3838-2002 parameter measured (pH, DO, CODMn, NH3-N, TP...)")
        if reasons:
            errors.append({"row": n, "reasons": reasons})
        elif result is not None:
            assessed.append((row, result))
    refuse(errors, len(raw_rows))
    if assessed:
        await conn.run_sync(ensure, WATER_PARTITIONS, [r["observed_at"] for r, _ in assessed],
                            retention_days)
    await conn.execute(store.upsert_water([
        {**{c: r[c] for c in _COLUMNS}, "station_id": r["station_id"],
         "observed_at": r["observed_at"], "grade": a.grade, "deciding": ",".join(a.deciding),
         "exceedance": json.dumps(a.exceedance)} for r, a in assessed]))
    classes: dict[str, int] = {}
    for _, a in assessed:
        classes[a.label] = classes.get(a.label, 0) + 1
    return {"inserted": len(assessed), **{f"class_{k}": v for k, v in classes.items()}}


async def station(conn: AsyncConnection, station_id: int) -> Any:
    return (await conn.execute(store.station(station_id))).first()


async def assessment(conn: AsyncConnection, st: Any, start: datetime | None,
                     end: datetime | None) -> dict[str, Any]:
    """Class of the period from the arithmetic mean of each parameter (as the 2011
    assessment method does), plus how the individual samples were classed."""
    row = (await conn.execute(store.period_means(st.id, start, end))).one()
    grades = (await conn.execute(store.period_grades(st.id, start, end))).all()
    mean_values = {c: getattr(row, c) for c in gb3838.PARAMETERS}
    result = gb3838.assess(mean_values, st.body_type)
    return {
        "station": {"id": st.id, "code": st.code, "name": st.name,
                    "water_body": st.water_body, "body_type": st.body_type},
        "period": {"start": start.isoformat() if start else None,
                   "end": end.isoformat() if end else None,
                   "first_sample": row.first.isoformat() if row.first else None,
                   "last_sample": row.last.isoformat() if row.last else None},
        "samples": row.n,
        "means": {k: round(v, 5) for k, v in mean_values.items() if v is not None},
        "assessment": result.as_dict() if result else None,
        "samples_by_class": {gb3838.CLASS_LABELS[g.grade]: g.n for g in grades},
        "standard": "GB 3838-2002 Table 1, single-factor rule on period means; exceedance "
                    "multiples over the class III limit",
    }


async def observations(conn: AsyncConnection, st: Any, start: datetime | None,
                       end: datetime | None, limit: int) -> list[dict[str, Any]]:
    rows = (await conn.execute(store.samples(st.id, start, end, limit))).all()
    return [{"observed_at": r.observed_at.isoformat(),
             **{c: getattr(r, c) for c in _COLUMNS if getattr(r, c) is not None},
             "class": gb3838.CLASS_LABELS[r.grade], "grade": r.grade,
             "deciding": list(r.deciding), "exceedance": r.exceedance} for r in rows]


async def latest_per_station(conn: AsyncConnection, end: datetime) -> list[dict[str, Any]]:
    """Every station with its newest sample before ``end`` (None when it has none): one
    index look-up per station on the (station_id, observed_at) key."""
    rows = (await conn.execute(store.latest_per_station(end))).all()
    return [{"station_id": r.id, "latest": None if r.observed_at is None else {
        "observed_at": r.observed_at.isoformat(), "grade": r.grade,
        "class": gb3838.CLASS_LABELS[r.grade], "deciding": list(r.deciding)}} for r in rows]
