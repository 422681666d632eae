"""SQL for items, one item and counts, generated from the registry and bound parameters.

GeoJSON is built inside PostgreSQL (ST_AsGeoJSON and json_build_object, joined as text)
and handed over as one bytea, so Python never parses or re-serialises a feature: the
response body is the database's bytes between a header and a footer.

numberMatched is exact up to ``COUNT_CAP`` matches and is left out above it (counting a
whole large result on every page is what makes big bbox queries slow; a client that needs
the full count follows the next links). The cap is counted with a LIMIT, so it costs at
most COUNT_CAP index entries per request. Without any filter the whole collection is
counted exactly (one index-only scan), so clients get a total for the layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.features.binds import Binds
from service.features.crs import Crs, output_geometry
from service.features.params import BBox
from service.features.registry import Collection

COUNT_CAP = 10_000


@dataclass
class ItemsQuery:
    bbox: tuple[BBox, Crs] | None = None
    interval: tuple[datetime | None, datetime | None] | None = None
    filter_sql: str | None = None
    equals: dict[str, Any] = field(default_factory=dict)  # queryable=value parameters
    limit: int = 10
    offset: int = 0
    sortby: list[tuple[str, bool]] = field(default_factory=list)
    properties: list[str] | None = None
    crs: Crs | None = None
    # False: no numberMatched; one row past the page tells whether another page follows
    count: bool = True
    skip_geometry: bool = False  # features with "geometry": null (nothing is transformed)


def feature_sql(c: Collection, crs: Crs, props: list[str] | None,
                geometry: bool = True) -> str:
    """A text expression: one GeoJSON Feature for the row ``t``."""
    chosen = [c.props_by_name[n] for n in props] if props is not None else list(c.properties)
    pairs = ", ".join(f"'{p.name}', {p.expr}" for p in chosen)
    properties = f"json_build_object({pairs})::text" if chosen else "'{}'"
    # options 0: no "crs" member (the CRS travels in the Content-Crs header)
    shape = (f"coalesce(ST_AsGeoJSON({output_geometry(c.geom, crs)}, {crs.decimals}, 0), "
             "'null')" if geometry else "'null'")
    return (
        "'{\"type\":\"Feature\",\"id\":' || to_json(" + c.fid + ")::text"
        " || ',\"geometry\":' || " + shape +
        " || ',\"properties\":' || " + properties + " || '}'"
    )


def where_clauses(c: Collection, q: ItemsQuery, binds: Binds) -> list[str]:
    where: list[str] = []
    if q.bbox is not None:
        box, bcrs = q.bbox
        env = (f"ST_MakeEnvelope({binds.add(box.minx, 'double precision')}, "
               f"{binds.add(box.miny, 'double precision')}, "
               f"{binds.add(box.maxx, 'double precision')}, "
               f"{binds.add(box.maxy, 'double precision')}, {bcrs.srid})")
        if bcrs.srid != 4326:
            env = f"ST_Transform({env}, 4326)"
        where.append(f"ST_Intersects({c.filter_geom}, {env})")
        if c.has_z and box.minz is not None:
            where.append(f"ST_ZMax({c.geom}) >= {binds.add(box.minz, 'double precision')}")
            where.append(f"ST_ZMin({c.geom}) <= {binds.add(box.maxz, 'double precision')}")
    if q.interval is not None and c.temporal is not None:
        start_sql, end_sql = c.interval_sql
        start, end = q.interval
        if end is not None:
            where.append(f"{start_sql} <= {binds.add(end, 'timestamptz')}")
        if start is not None:
            where.append(f"{end_sql} >= {binds.add(start, 'timestamptz')}")
    elif c.current_only:
        where.append(c.current_only)
    for name, value in q.equals.items():
        prop = c.props_by_name[name]
        sql_type = {"integer": "bigint", "number": "double precision", "boolean": "boolean",
                    "datetime": "timestamptz", "date": "date"}.get(prop.type, "text")
        where.append(f"{prop.expr} = {binds.add(value, sql_type)}")
    if q.filter_sql:
        where.append(q.filter_sql)
    return where


def order_sql(c: Collection, sortby: list[tuple[str, bool]]) -> str:
    keys = []
    for name, desc in sortby:
        expr = c.fid if name == "id" else c.props_by_name[name].expr
        if name != "id" and not c.props_by_name[name].nullable:
            keys.append(f"{expr} {'DESC' if desc else 'ASC'}")
        else:
            keys.append(f"{expr} {'DESC NULLS LAST' if desc else 'ASC NULLS FIRST'}")
    if not any(name == "id" for name, _ in sortby):
        keys.append(f"{c.fid} ASC")  # a total order, so pages never overlap or skip
    return ", ".join(keys)


def items_sql(c: Collection, q: ItemsQuery, binds: Binds, crs: Crs) -> str:
    """One row: ``returned``, ``body`` (the features joined by commas, UTF-8) and
    ``matched`` (NULL when not counted); without a count also ``more``."""
    where = where_clauses(c, q, binds)
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    feature = feature_sql(c, crs, q.properties, not q.skip_geometry)
    if not q.count:
        # the page and one row past it; array_agg keeps the order string_agg would
        keep = binds.add(q.limit, "integer")
        return (
            f"SELECT least(count(*), {keep}) AS returned, convert_to(coalesce("
            f"array_to_string((array_agg(f))[1:{keep}], ','), ''), 'UTF8') AS body,"
            f" NULL::bigint AS matched, count(*) > {keep} AS more FROM ("
            f"SELECT {feature} AS f FROM {c.from_sql}{cond} ORDER BY {order_sql(c, q.sortby)}"
            f" LIMIT {binds.add(q.limit + 1, 'bigint')}"
            f" OFFSET {binds.add(q.offset, 'bigint')}) s"
        )
    limit = binds.add(q.limit, "bigint")
    offset = binds.add(q.offset, "bigint")
    if [w for w in where if w != c.current_only]:
        cap = binds.add(COUNT_CAP + 1, "bigint")
        count = f"(SELECT count(*) FROM (SELECT 1 FROM {c.from_sql}{cond} LIMIT {cap}) m)"
    else:  # the whole collection: an exact count is one index-only scan
        count = f"(SELECT count(*) FROM {c.from_sql}{cond})"
    return (
        "SELECT p.returned, convert_to(coalesce(p.body, ''), 'UTF8') AS body,"
        f" {count} AS matched"
        " FROM (SELECT count(*) AS returned, string_agg(f, ',') AS body FROM ("
        f"SELECT {feature} AS f FROM {c.from_sql}{cond}"
        f" ORDER BY {order_sql(c, q.sortby)} LIMIT {limit} OFFSET {offset}) s) p"
    )


def item_sql(c: Collection, fid: Any, binds: Binds, crs: Crs,
             props: list[str] | None) -> str:
    key = binds.add(fid, "bigint" if c.id_type == "integer" else "text")
    return (f"SELECT convert_to({feature_sql(c, crs, props)}, 'UTF8') AS body"
            f" FROM {c.from_sql} WHERE {c.fid} = {key}")


def extent_sql(c: Collection) -> str:
    cond = f" WHERE {c.current_only}" if c.current_only else ""
    temporal = "NULL::timestamptz AS lo, NULL::timestamptz AS hi"
    if c.temporal is not None:
        start, end = c.temporal
        temporal = f'min(t."{start}") AS lo, max(t."{end or start}") AS hi'
    return ("SELECT ST_XMin(e) AS x1, ST_YMin(e) AS y1, ST_XMax(e) AS x2, ST_YMax(e) AS y2,"
            f" lo, hi FROM (SELECT ST_Extent({c.filter_geom}) AS e, {temporal}"
            f" FROM {c.from_sql}{cond}) x")
