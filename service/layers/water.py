"""Water-quality layer: observation ingest (each sample classified under GB 3838-2002 as it
is stored) and the per-station assessment over a period."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.layers import gb3838
from service.layers.batch import Field, refuse, validate

_BOUNDS = {"ph": (0, 14), "fecal_coliform": (0, 1e9)}
OBSERVATION_FIELDS = (
    Field("station_id", "integer", required=True, min=1),
    Field("observed_at", "datetime", required=True),
    Field("water_temp", "number", min=-5, max=50),
    *(Field(p, "number", min=_BOUNDS.get(p, (0, 1e5))[0], max=_BOUNDS.get(p, (0, 1e5))[1])
      for p in gb3838.PARAMETERS),
)
_COLUMNS = ("water_temp", *gb3838.PARAMETERS)


async def insert_stations(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    await conn.execute(text(
        "INSERT INTO water_stations (code, name, water_body, body_type, geom)"
        " SELECT code, name, wb, bt, ST_GeomFromText(wkt, 4326)"
        " FROM unnest(CAST(:code AS text[]), CAST(:name AS text[]), CAST(:wb AS text[]),"
        " CAST(:bt AS text[]), CAST(:wkt AS text[])) AS u(code, name, wb, bt, wkt)"
        " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,"
        " water_body = EXCLUDED.water_body, body_type = EXCLUDED.body_type,"
        " geom = EXCLUDED.geom, updated_at = now()"),
        {k: [r[f] for r in rows] for k, f in (("code", "code"), ("name", "name"),
                                                ("wb", "water_body"), ("bt", "body_type"),
                                                ("wkt", "wkt"))})
    return len(rows)


async def ingest_observations(conn: AsyncConnection, raw_rows: list[Any]) -> dict[str, int]:
    rows, errors = validate(raw_rows, OBSERVATION_FIELDS)
    bodies: dict[int, str] = {}
    if rows:
        ids = sorted({r["station_id"] for r in rows})
        bodies = {r.id: r.body_type for r in (await conn.execute(
            text("SELECT id, body_type FROM water_stations WHERE id = ANY(CAST(:ids AS "
                 "bigint[]))"), {"ids": ids})).all()}
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
    cols = ", ".join(_COLUMNS)
    arrays = ", ".join(f"CAST(:{c} AS double precision[])" for c in _COLUMNS)
    params: dict[str, Any] = {c: [r[c] for r, _ in assessed] for c in _COLUMNS}
    params.update({
        "s": [r["station_id"] for r, _ in assessed],
        "t": [r["observed_at"] for r, _ in assessed],
        "g": [a.grade for _, a in assessed],
        "d": [",".join(a.deciding) for _, a in assessed],
        "e": [json.dumps(a.exceedance) for _, a in assessed],
    })
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*_COLUMNS, "grade", "deciding",
                                                        "exceedance"))
    await conn.execute(text(
        f"INSERT INTO water_observations (station_id, observed_at, {cols}, grade, deciding,"
        " exceedance)"
        f" SELECT s, t, {cols}, g, string_to_array(d, ','), CAST(e AS jsonb) FROM unnest("
        f"CAST(:s AS bigint[]), CAST(:t AS timestamptz[]), {arrays}, CAST(:g AS smallint[]),"
        f" CAST(:d AS text[]), CAST(:e AS text[])) AS u(s, t, {cols}, g, d, e)"
        f" ON CONFLICT (station_id, observed_at) DO UPDATE SET {updates}"), params)
    classes: dict[str, int] = {}
    for _, a in assessed:
        classes[a.label] = classes.get(a.label, 0) + 1
    return {"inserted": len(assessed), **{f"class_{k}": v for k, v in classes.items()}}


async def station(conn: AsyncConnection, station_id: int) -> Any:
    return (await conn.execute(text(
        "SELECT id, code, name, water_body, body_type FROM water_stations"
        " WHERE id = CAST(:id AS bigint)"), {"id": station_id})).first()


async def assessment(conn: AsyncConnection, st: Any, start: datetime | None,
                     end: datetime | None) -> dict[str, Any]:
    """Class of the period from the arithmetic mean of each parameter (as the 2011
    assessment method does), plus how the individual samples were classed."""
    means = ", ".join(f"avg({c}) AS {c}" for c in gb3838.PARAMETERS)
    params = {"id": st.id, "a": start, "b": end}
    window = (" AND (CAST(:a AS timestamptz) IS NULL OR observed_at >= CAST(:a AS timestamptz))"
              " AND (CAST(:b AS timestamptz) IS NULL OR observed_at < CAST(:b AS timestamptz))")
    row = (await conn.execute(text(
        f"SELECT count(*) AS n, min(observed_at) AS first, max(observed_at) AS last, {means}"
        f" FROM water_observations WHERE station_id = CAST(:id AS bigint){window}"),
        params)).one()
    grades = (await conn.execute(text(
        "SELECT grade, count(*) AS n FROM water_observations WHERE station_id ="
        f" CAST(:id AS bigint){window} GROUP BY grade ORDER BY grade"), params)).all()
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
    cols = ", ".join(_COLUMNS)
    rows = (await conn.execute(text(
        f"SELECT observed_at, {cols}, grade, deciding, exceedance FROM water_observations"
        " WHERE station_id = CAST(:id AS bigint)"
        " AND (CAST(:a AS timestamptz) IS NULL OR observed_at >= CAST(:a AS timestamptz))"
        " AND (CAST(:b AS timestamptz) IS NULL OR observed_at < CAST(:b AS timestamptz))"
        " ORDER BY observed_at DESC LIMIT CAST(:n AS integer)"),
        {"id": st.id, "a": start, "b": end, "n": limit})).all()
    return [{"observed_at": r.observed_at.isoformat(),
             **{c: getattr(r, c) for c in _COLUMNS if getattr(r, c) is not None},
             "class": gb3838.CLASS_LABELS[r.grade], "grade": r.grade,
             "deciding": list(r.deciding), "exceedance": r.exceedance} for r in rows]


async def latest_per_station(conn: AsyncConnection, end: datetime) -> list[dict[str, Any]]:
    """Every station with its newest sample before ``end`` (None when it has none): one
    index look-up per station on the (station_id, observed_at) key."""
    rows = (await conn.execute(text(
        "SELECT s.id, o.observed_at, o.grade, o.deciding FROM water_stations s"
        " LEFT JOIN LATERAL (SELECT observed_at, grade, deciding FROM water_observations w"
        "   WHERE w.station_id = s.id AND w.observed_at < CAST(:b AS timestamptz)"
        "   ORDER BY w.observed_at DESC LIMIT 1) o ON true"
        " ORDER BY s.id"), {"b": end})).all()
    return [{"station_id": r.id, "latest": None if r.observed_at is None else {
        "observed_at": r.observed_at.isoformat(), "grade": r.grade,
        "class": gb3838.CLASS_LABELS[r.grade], "deciding": list(r.deciding)}} for r in rows]
