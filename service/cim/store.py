"""Loading parsed city objects into ``city_objects``: COPY into a staging table, then one
INSERT ... SELECT, superseding the current versions of the same objects (history is kept).
An object delivered again exactly as it is stored (geometry, footprint, heights, attributes,
surfaces) keeps its current row, which passes to the new dataset: re-surveying a district
adds history only where something changed.

Everything runs on the caller's connection and transaction, so a failure anywhere (a file
that turns out to be truncated halfway, a tiling error) rolls the whole load back.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Delete,
    Double,
    Insert,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Update,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from readers.cim import CityObject, Problem, Surface
from service.cim.tables import city_objects

# One per load, gone at commit: the rows of the file as they will be stored, before they are
# compared with the current ones. Its own MetaData: no schema code should ever create it.
city_stage = Table(
    "city_stage", MetaData(),
    Column("seq", Integer), Column("object_id", Text), Column("type", Text),
    Column("parent_object_id", Text), Column("lod", Text), Column("name", Text),
    Column("geom", LargeBinary), Column("footprint", LargeBinary),
    Column("height", Double), Column("min_z", Double), Column("max_z", Double),
    Column("attributes", JSONB), Column("semantics", JSONB), Column("other_lods", JSONB),
    prefixes=["TEMPORARY"], postgresql_on_commit="DROP",
)
STAGE_COLUMNS = tuple(c.name for c in city_stage.c)


def _geom() -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The staged WKB as the stored columns are made from it."""
    s = city_stage.c
    return (func.ST_GeomFromWKB(s.geom, 4326),
            func.ST_Multi(func.ST_GeomFromWKB(s.footprint, 4326)))


def keep_unchanged(dataset_id: int) -> Delete:
    """Hand each current row equal to its staged object to the new dataset, and unstage
    that object; the statement's row count is how many were kept.

    Exact equality: geometry "=" compares every coordinate in order (PostGIS >= 2.4), jsonb
    "=" compares values; the staged bytes are the ones the stored row was made from."""
    c, s = city_objects.c, city_stage.c
    geom, footprint = _geom()
    same = (update(city_objects).values(dataset_id=dataset_id)
            .where(c.object_id == s.object_id, c.valid_to.is_(None), c.type == s.type,
                   *(c[k].is_not_distinct_from(s[k])
                     for k in ("parent_object_id", "lod", "name")),
                   c.geom.is_not_distinct_from(geom),
                   c.footprint.is_not_distinct_from(footprint),
                   *(c[k].is_not_distinct_from(s[k])
                     for k in ("height", "min_z", "max_z", "attributes", "semantics",
                               "other_lods")))
            .returning(s.seq).cte("same"))
    return delete(city_stage).where(s.seq.in_(select(same.c.seq))).add_cte(same)


def supersede(at: datetime | None = None) -> Update:
    """End the current version of every staged object (at ``at``, default: now)."""
    c, s = city_objects.c, city_stage.c
    return (update(city_objects).values(valid_to=func.now() if at is None else at)
            .where(c.object_id == s.object_id, c.valid_to.is_(None)))


def insert_staged(dataset_id: int, at: datetime | None = None) -> Insert:
    """The staged objects as the current versions, in file order, valid from ``at`` (default:
    now(), the transaction's start). Superseded rows end exactly where their successors
    begin: :func:`supersede` is given the same instant."""
    s = city_stage.c
    geom, footprint = _geom()
    columns = ("object_id", "dataset_id", "type", "parent_object_id", "lod", "name", "geom",
               "footprint", "height", "min_z", "max_z", "attributes", "semantics",
               "other_lods", "valid_from")
    rows = (select(s.object_id, literal(dataset_id, BigInteger), s.type, s.parent_object_id, s.lod,
                   s.name, geom, footprint, s.height, s.min_z, s.max_z, s.attributes,
                   s.semantics, s.other_lods, func.now() if at is None else literal(at))
            .order_by(s.seq))
    return insert(city_objects).from_select(columns, rows)


@dataclass
class LoadResult:
    inserted: int = 0  # objects read from the file and staged
    with_geometry: int = 0
    superseded: int = 0
    unchanged: int = 0  # of the inserted: equal to their current row, which was kept


def _finite(value: Any) -> Any:
    """JSON without NaN / infinity (PostgreSQL's jsonb refuses them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any) -> str:
    try:
        doc = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:
        doc = json.dumps(_finite(value), ensure_ascii=False, default=str)
    # jsonb cannot hold NUL characters; they only ever come from broken writers
    return doc.replace("\\u0000", "")


def _closed_rings(surfaces: list[Surface]) -> tuple[np.ndarray, np.ndarray]:
    """Every ring of the surfaces closed (its first vertex repeated at its end), all in one
    (N, 3) array made in one numpy pass, and the closed length of each ring."""
    rings = [r for sf in surfaces for r in sf.rings]
    n = np.fromiter((len(r) for r in rings), dtype=np.int64, count=len(rings))
    coords = np.concatenate(rings) if rings else np.empty((0, 3))
    closed_n = n + 1
    ring_of = np.repeat(np.arange(len(rings)), closed_n)
    first = np.cumsum(closed_n) - closed_n
    pos = np.arange(int(closed_n.sum())) - first[ring_of]
    pos[pos == n[ring_of]] = 0  # the closing vertex is the ring's first
    starts = np.cumsum(n) - n
    return coords[starts[ring_of] + pos], closed_n


def _geojson(surfaces: list[Surface]) -> dict[str, Any]:
    # one round and one tolist for all rings: per ring, they were most of the time of
    # staging a reconstructed building's LoD1.2
    coords, closed_n = _closed_rings(surfaces)
    flat = coords.round(9).tolist()
    ends = np.cumsum(closed_n).tolist()
    polys, k, at = [], 0, 0
    for sf in surfaces:
        poly = []
        for _ in sf.rings:
            poly.append(flat[at:ends[k]])
            at = ends[k]
            k += 1
        polys.append(poly)
    return {"type": "MultiPolygon", "coordinates": polys}


def multipolygon_wkb(obj: CityObject) -> bytes | None:
    """The object's surfaces as ISO WKB (little-endian) MultiPolygon Z (type 1006) of
    Polygon Z (1003), rings closed.

    Stored as MultiPolygon Z rather than PolyhedralSurface Z: PostGIS cannot write a
    polyhedral surface as GeoJSON, and GDAL, QGIS and GEOS-backed functions read multipolygons.
    The bytes are those of ``obj.to_wkb()`` with the type code changed, made in one numpy
    pass over all rings: closing each ring with its own ``vstack`` was most of the time of
    staging a reconstructed building (tens of surfaces each).
    """
    surfaces = obj.surfaces
    if not surfaces:
        return None
    coords, closed_n = _closed_rings(surfaces)
    first = np.cumsum(closed_n) - closed_n
    buf = np.ascontiguousarray(coords, dtype="<f8").tobytes()
    parts = [struct.pack("<BII", 1, 1006, len(surfaces))]
    k = 0
    for sf in surfaces:
        parts.append(struct.pack("<BII", 1, 1003, len(sf.rings)))
        for _ in sf.rings:
            at, size = int(first[k]) * 24, int(closed_n[k]) * 24
            parts.append(struct.pack("<I", int(closed_n[k])))
            parts.append(buf[at:at + size])
            k += 1
    return b"".join(parts)


Footprint = Polygon | MultiPolygon


def stage_row(seq: int, obj: CityObject, footprint: Footprint | None = None
              ) -> tuple[Any, ...]:
    """The staging row of ``obj``; ``footprint`` (lon/lat), when the caller knows it, spares
    making it again from the object's ground surfaces."""
    geom = multipolygon_wkb(obj)
    if footprint is None:
        footprint = obj.footprint
    zmin = zmax = None
    if obj.surfaces:
        z = np.concatenate([r[:, 2] for s in obj.surfaces for r in s.rings])
        zmin, zmax = float(z.min()), float(z.max())
    other = {lod: {"surfaces": [s.semantic for s in surfaces], "geometry": _geojson(surfaces)}
             for lod, surfaces in obj.other_lods.items() if surfaces}
    return (
        seq, obj.id, obj.type[:64], obj.parent_id, None if obj.lod is None else str(obj.lod)[:8],
        obj.name, geom, None if footprint is None else shapely.to_wkb(footprint),
        obj.height, zmin, zmax, to_json(obj.attributes),
        to_json({"surfaces": [s.semantic for s in obj.surfaces]}), to_json(other),
    )


def load_objects(conn: Connection, objects: Iterable[CityObject], dataset_id: int,
                 problems: list[Problem], *, progress: Callable[[int], None] | None = None,
                 valid_from: datetime | None = None,
                 footprint_of: Callable[[CityObject], Footprint | None] | None = None
                 ) -> LoadResult:
    """Stage ``objects`` (streamed, never all in memory as rows) and make them current.

    A second object with an id already seen in this file is skipped and reported in
    ``problems``; the first one wins. ``valid_from`` is when the new versions begin (and the
    ones they replace end): default now(); a survey gives its acquisition time.
    ``footprint_of(obj)``: the object's footprint in lon/lat when the caller has it (a
    reconstruction starts from it), else None to make it from the ground surfaces.
    """
    city_stage.create(conn)
    raw = conn.connection.driver_connection  # psycopg 3: COPY needs the driver's cursor
    result = LoadResult()
    seen: set[str] = set()
    columns = ", ".join(STAGE_COLUMNS)
    with raw.cursor() as cur, cur.copy(f"COPY city_stage ({columns}) FROM STDIN") as copy:
        for obj in objects:
            if obj.id in seen:
                problems.append(Problem(obj.id, "the id occurs twice in the file; the first "
                                                "object with it was loaded, this one skipped"))
                continue
            seen.add(obj.id)
            fp = footprint_of(obj) if footprint_of is not None else None
            copy.write_row(stage_row(result.inserted, obj, fp))
            result.inserted += 1
            result.with_geometry += obj.has_geometry
            if progress and result.inserted % 1000 == 0:
                progress(result.inserted)
    # temp tables have no statistics otherwise; ANALYZE has no Core construct
    conn.execute(text("ANALYZE city_stage"))
    result.unchanged = conn.execute(keep_unchanged(dataset_id)).rowcount
    result.superseded = conn.execute(supersede(valid_from)).rowcount
    conn.execute(insert_staged(dataset_id, valid_from))
    return result
