"""The layers' SQL, as SQLAlchemy Core statements over ``service/layers/tables.py``.

A batch is written as one ``INSERT ... SELECT FROM unnest(arrays)``: one bound array per
column, one statement and one round trip whatever the number of rows. An executemany of
the same upsert runs it once per row and is markedly slower on a full batch, and a multi-row
VALUES runs out of bind parameters (at most 32,767 per statement) long before a batch's
200,000 rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (
    REAL,
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    Insert,
    Integer,
    Interval,
    Select,
    SmallInteger,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

from service.layers.gb3838 import PARAMETERS
from service.layers.tables import (
    road_segments,
    traffic_observations,
    water_observations,
    water_stations,
    waterways,
)

WATER_COLUMNS = ("water_temp", *PARAMETERS)
# date_bin's origin: buckets start at whole intervals since this instant (UTC midnight)
BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

Box = tuple[float, float, float, float]


def _array(name: str, values: Sequence[Any], item: TypeEngine[Any]) -> ColumnElement[Any]:
    # the cast names the array type: asyncpg cannot infer it from unnest's argument
    return cast(bindparam(name, list(values), type_=ARRAY(item)), ARRAY(item))


def _unnest(rows: Sequence[Mapping[str, Any]],
            columns: Mapping[str, TypeEngine[Any]]) -> TableValuedAlias:
    """The rows as ``unnest(array per column) AS u(column, ...)``."""
    arrays = (_array(c, [r[c] for r in rows], t) for c, t in columns.items())
    return func.unnest(*arrays).table_valued(*columns).render_derived(name="u")


def _upsert(table: Table, columns: Iterable[str], source: Select[Any], key: Sequence[str],
            updates: Iterable[str], **set_: Any) -> Insert:
    stmt = insert(table).from_select(list(columns), source)
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={**{c: stmt.excluded[c] for c in updates}, **set_})


def _envelope(geom: ColumnElement[Any], box: Box) -> ColumnElement[bool]:
    x1, y1, x2, y2 = (literal(v, Float) for v in box)
    return func.ST_Intersects(geom, func.ST_MakeEnvelope(x1, y1, x2, y2, 4326))


# -- traffic ----------------------------------------------------------------------------------

def upsert_segments(rows: Sequence[Mapping[str, Any]]) -> Insert:
    """Road segments by ``code``; the length is measured on the ellipsoid."""
    u = _unnest(rows, {"code": Text(), "name": Text(), "road_class": Text(),
                       "lanes": SmallInteger(), "speed_limit_kmh": REAL(),
                       "free_flow_kmh": REAL(), "wkt": Text()})
    geom = func.ST_GeomFromText(u.c.wkt, 4326)
    columns = ("code", "name", "road_class", "lanes", "speed_limit_kmh", "free_flow_kmh",
               "length_m", "geom")
    source = select(u.c.code, u.c.name, u.c.road_class, u.c.lanes, u.c.speed_limit_kmh,
                    u.c.free_flow_kmh, func.ST_Length(cast(geom, Geography(srid=4326))), geom)
    return _upsert(road_segments, columns, source, ("code",), columns[1:],
                   updated_at=func.now())


def existing_segments(ids: Sequence[int]) -> Select[tuple[int]]:
    s = road_segments.c
    return select(s.id).where(s.id == any_(_array("ids", ids, BigInteger())))


def upsert_traffic(rows: Sequence[Mapping[str, Any]]) -> Insert:
    columns = {"segment_id": BigInteger(), "observed_at": DateTime(timezone=True),
               "volume": Integer(), "speed_kmh": REAL(), "occupancy": REAL()}
    u = _unnest(rows, columns)
    return _upsert(traffic_observations, columns, select(*(u.c[c] for c in columns)),
                   ("segment_id", "observed_at"), ("volume", "speed_kmh", "occupancy"))


def segment(segment_id: int) -> Select[Any]:
    s = road_segments.c
    return select(s.id, s.code, s.name, s.road_class, s.free_flow_kmh,
                  s.length_m).where(s.id == segment_id)


def _speed(speed: Any, volume: Any) -> ColumnElement[Any]:
    """Volume-weighted mean speed (space-mean-like); the plain mean when nothing was counted."""
    weighted = func.sum(speed * volume).op("/")(func.nullif(func.sum(volume), 0))
    return func.coalesce(weighted, func.avg(speed))


def series(segment_id: int, start: datetime, end: datetime, step: timedelta | None,
           limit: int) -> Select[Any]:
    """A segment's observations in [start, end): raw (``step`` None) or per bucket."""
    o = traffic_observations.c
    window = (o.segment_id == segment_id, o.observed_at >= start, o.observed_at < end)
    if step is None:
        return (select(o.observed_at.label("bucket"), o.volume, o.speed_kmh.label("speed"),
                       o.occupancy, literal(1, Integer).label("n"))
                .where(*window).order_by(o.observed_at).limit(limit))
    bucket = func.date_bin(cast(literal(step, Interval), Interval), o.observed_at,
                           literal(BUCKET_ORIGIN, DateTime(timezone=True))).label("bucket")
    # grouped and ordered by the output name: the bucket expression repeated would carry
    # its own parameters, which PostgreSQL does not see as the same expression
    return (select(bucket, cast(func.sum(o.volume), BigInteger).label("volume"),
                   _speed(o.speed_kmh, o.volume).label("speed"),
                   func.avg(o.occupancy).label("occupancy"), func.count().label("n"))
            .where(*window).group_by("bucket").order_by("bucket").limit(limit))


def area(start: datetime, end: datetime, box: Box | None) -> Select[Any]:
    """Each segment observed in [start, end) (and crossing ``box``): volume and speed."""
    s, o = road_segments.c, traffic_observations.c
    query = (select(s.id, s.code, s.road_class, s.free_flow_kmh, s.length_m,
                    cast(func.sum(o.volume), BigInteger).label("volume"),
                    _speed(o.speed_kmh, o.volume).label("speed"))
             .select_from(road_segments.join(traffic_observations, o.segment_id == s.id))
             .where(o.observed_at >= start, o.observed_at < end)
             .group_by(s.id))
    return query if box is None else query.where(_envelope(s.geom, box))


# -- water quality ----------------------------------------------------------------------------

def upsert_stations(rows: Sequence[Mapping[str, Any]]) -> Insert:
    u = _unnest(rows, {"code": Text(), "name": Text(), "water_body": Text(),
                       "body_type": Text(), "wkt": Text()})
    columns = ("code", "name", "water_body", "body_type", "geom")
    source = select(u.c.code, u.c.name, u.c.water_body, u.c.body_type,
                    func.ST_GeomFromText(u.c.wkt, 4326))
    return _upsert(water_stations, columns, source, ("code",), columns[1:],
                   updated_at=func.now())


def upsert_waterways(rows: Sequence[Mapping[str, Any]]) -> Insert:
    """Waterways by ``code``; the length is measured on the ellipsoid."""
    u = _unnest(rows, {"code": Text(), "name": Text(), "kind": Text(), "parent": Text(),
                       "wkt": Text()})
    geom = func.ST_GeomFromText(u.c.wkt, 4326)
    columns = ("code", "name", "kind", "parent", "length_m", "geom")
    source = select(u.c.code, u.c.name, u.c.kind, u.c.parent,
                    func.ST_Length(cast(geom, Geography(srid=4326))), geom)
    return _upsert(waterways, columns, source, ("code",), columns[1:], updated_at=func.now())


def station_body_types(ids: Sequence[int]) -> Select[Any]:
    s = water_stations.c
    return select(s.id, s.body_type).where(s.id == any_(_array("ids", ids, BigInteger())))


def upsert_water(rows: Sequence[Mapping[str, Any]]) -> Insert:
    """Samples with their class. ``deciding`` travels comma-joined and ``exceedance`` as JSON
    text: unnest flattens an array of arrays, and a text array carries any JSON."""
    columns: dict[str, TypeEngine[Any]] = {
        "station_id": BigInteger(), "observed_at": DateTime(timezone=True),
        **{c: Float() for c in WATER_COLUMNS}, "grade": SmallInteger(),
        "deciding": Text(), "exceedance": Text()}
    u = _unnest(rows, columns)
    source = select(*(u.c[c] for c in columns if c not in ("deciding", "exceedance")),
                    func.string_to_array(u.c.deciding, ","), cast(u.c.exceedance, JSONB))
    return _upsert(water_observations, columns, source, ("station_id", "observed_at"),
                   (*WATER_COLUMNS, "grade", "deciding", "exceedance"))


def station(station_id: int) -> Select[Any]:
    s = water_stations.c
    return select(s.id, s.code, s.name, s.water_body, s.body_type).where(s.id == station_id)


def _samples(station_id: int, start: datetime | None,
             end: datetime | None) -> list[ColumnElement[bool]]:
    w = water_observations.c
    where = [w.station_id == station_id]
    if start is not None:
        where.append(w.observed_at >= start)
    if end is not None:
        where.append(w.observed_at < end)
    return where


def period_means(station_id: int, start: datetime | None, end: datetime | None) -> Select[Any]:
    """Count, first and last time, and the mean of each GB 3838 parameter of a period."""
    w = water_observations.c
    return select(func.count().label("n"), func.min(w.observed_at).label("first"),
                  func.max(w.observed_at).label("last"),
                  *(func.avg(w[p]).label(p) for p in PARAMETERS)
                  ).where(*_samples(station_id, start, end))


def period_grades(station_id: int, start: datetime | None, end: datetime | None) -> Select[Any]:
    w = water_observations.c
    return (select(w.grade, func.count().label("n")).where(*_samples(station_id, start, end))
            .group_by(w.grade).order_by(w.grade))


def samples(station_id: int, start: datetime | None, end: datetime | None,
            limit: int) -> Select[Any]:
    """A station's samples, newest first."""
    w = water_observations.c
    return (select(w.observed_at, *(w[c] for c in WATER_COLUMNS), w.grade, w.deciding,
                   w.exceedance)
            .where(*_samples(station_id, start, end))
            .order_by(w.observed_at.desc()).limit(limit))


def latest_per_station(end: datetime) -> Select[Any]:
    """Every station with its newest sample before ``end`` (NULLs when it has none): one
    index look-up per station on the (station_id, observed_at) key."""
    s, w = water_stations.c, water_observations.c
    latest = (select(w.observed_at, w.grade, w.deciding)
              .where(w.station_id == s.id, w.observed_at < end)
              .order_by(w.observed_at.desc()).limit(1).lateral("o"))
    return (select(s.id, latest.c.observed_at, latest.c.grade, latest.c.deciding)
            .select_from(water_stations.outerjoin(latest, true())).order_by(s.id))
