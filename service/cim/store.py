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
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Connection, bindparam, text

from readers.cim import CityObject, Problem, Surface

STAGE_COLUMNS = ("seq", "object_id", "type", "parent_object_id", "lod", "name", "geom",
                 "footprint", "height", "min_z", "max_z", "attributes", "semantics",
                 "other_lods")

_CREATE_STAGE = text("""
    CREATE TEMP TABLE city_stage (
        seq integer, object_id text, type text, parent_object_id text, lod text, name text,
        geom bytea, footprint bytea, height float8, min_z float8, max_z float8,
        attributes jsonb, semantics jsonb, other_lods jsonb
    ) ON COMMIT DROP
""")

# Exact equality: geometry "=" compares every coordinate in order (PostGIS >= 2.4), jsonb
# "=" compares values; the staged bytes are the ones the stored row was made from.
_KEEP_UNCHANGED = text("""
    WITH same AS (
        UPDATE city_objects c SET dataset_id = :dataset_id
        FROM city_stage s
        WHERE c.object_id = s.object_id AND c.valid_to IS NULL
          AND c.type = s.type
          AND c.parent_object_id IS NOT DISTINCT FROM s.parent_object_id
          AND c.lod IS NOT DISTINCT FROM s.lod AND c.name IS NOT DISTINCT FROM s.name
          AND c.geom IS NOT DISTINCT FROM ST_GeomFromWKB(s.geom, 4326)
          AND c.footprint IS NOT DISTINCT FROM ST_Multi(ST_GeomFromWKB(s.footprint, 4326))
          AND c.height IS NOT DISTINCT FROM s.height
          AND c.min_z IS NOT DISTINCT FROM s.min_z AND c.max_z IS NOT DISTINCT FROM s.max_z
          AND c.attributes IS NOT DISTINCT FROM s.attributes
          AND c.semantics IS NOT DISTINCT FROM s.semantics
          AND c.other_lods IS NOT DISTINCT FROM s.other_lods
        RETURNING s.seq
    )
    DELETE FROM city_stage WHERE seq IN (SELECT seq FROM same)
""").bindparams(bindparam("dataset_id"))

_SUPERSEDE = text("""
    UPDATE city_objects c SET valid_to = now()
    FROM city_stage s
    WHERE c.object_id = s.object_id AND c.valid_to IS NULL
""")

# now() is the transaction's start: superseded rows end exactly where their successors begin.
_INSERT = text("""
    INSERT INTO city_objects (object_id, dataset_id, type, parent_object_id, lod, name, geom,
                              footprint, height, min_z, max_z, attributes, semantics,
                              other_lods, valid_from)
    SELECT object_id, :dataset_id, type, parent_object_id, lod, name,
           ST_GeomFromWKB(geom, 4326), ST_Multi(ST_GeomFromWKB(footprint, 4326)),
           height, min_z, max_z, attributes, semantics, other_lods, now()
    FROM city_stage ORDER BY seq
""").bindparams(bindparam("dataset_id"))


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


def _geojson(surfaces: list[Surface]) -> dict[str, Any]:
    polys = [[np.vstack([r, r[:1]]).round(9).tolist() for r in s.rings] for s in surfaces]
    return {"type": "MultiPolygon", "coordinates": polys}


def multipolygon_wkb(obj: CityObject) -> bytes | None:
    """The object's surfaces as ISO WKB MultiPolygon Z.

    Stored as MultiPolygon Z rather than PolyhedralSurface Z: PostGIS cannot write a
    polyhedral surface as GeoJSON, and GDAL, QGIS and GEOS-backed functions read multipolygons.
    Both encodings are a count of Polygon Z parts, so only the type code differs.
    """
    wkb = obj.to_wkb()
    if wkb is None:
        return None
    assert wkb[:5] == struct.pack("<BI", 1, 1015), "expected little-endian PolyhedralSurface Z"
    return struct.pack("<BI", 1, 1006) + wkb[5:]


def stage_row(seq: int, obj: CityObject) -> tuple[Any, ...]:
    geom = multipolygon_wkb(obj)
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
                 ) -> LoadResult:
    """Stage ``objects`` (streamed, never all in memory as rows) and make them current.

    A second object with an id already seen in this file is skipped and reported in
    ``problems``; the first one wins.
    """
    conn.execute(_CREATE_STAGE)
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
            copy.write_row(stage_row(result.inserted, obj))
            result.inserted += 1
            result.with_geometry += obj.has_geometry
            if progress and result.inserted % 1000 == 0:
                progress(result.inserted)
    conn.execute(text("ANALYZE city_stage"))  # temp tables have no statistics otherwise
    result.unchanged = conn.execute(_KEEP_UNCHANGED, {"dataset_id": dataset_id}).rowcount
    result.superseded = conn.execute(_SUPERSEDE).rowcount
    conn.execute(_INSERT, {"dataset_id": dataset_id})
    return result
