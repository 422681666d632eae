"""Landing page, collection descriptions (with cached extents) and queryables documents."""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg

from service.features import crs as crs_mod
from service.features.engine import ReadPool
from service.features.query import extent_sql
from service.features.registry import Collection

log = logging.getLogger(__name__)
GEOJSON = "application/geo+json"
JSON = "application/json"
EXTENT_TTL = 60.0  # seconds an extent is reused; extents drift slowly and cost a scan
_extents: dict[str, tuple[float, dict[str, Any]]] = {}

_SCHEMA_TYPES = {
    "string": {"type": "string"}, "integer": {"type": "integer"},
    "number": {"type": "number"}, "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "object": {"type": "object"}, "array": {"type": "array"},
}
_GEOMETRY_SCHEMA = {
    "Point": "geometry-point", "LineString": "geometry-linestring",
    "Polygon": "geometry-polygon", "MultiPoint": "geometry-multipoint",
    "MultiLineString": "geometry-multilinestring", "MultiPolygon": "geometry-multipolygon",
    "Geometry": "geometry-any",
}


def landing(base: str, title: str, version: str) -> dict[str, Any]:
    return {
        "title": title,
        "description": "City digital-twin spatial data: OGC API - Features over every "
                       "vector layer, 3D Tiles, uploads and jobs.",
        "version": version,
        "links": [
            {"rel": "self", "type": JSON, "title": "This document", "href": f"{base}/"},
            {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0",
             "title": "The API definition", "href": f"{base}/api"},
            {"rel": "service-doc", "type": "text/html", "title": "API documentation",
             "href": f"{base}/docs"},
            {"rel": "conformance", "type": JSON, "title": "Conformance classes",
             "href": f"{base}/conformance"},
            {"rel": "data", "type": JSON, "title": "Feature collections",
             "href": f"{base}/collections"},
            {"rel": "health", "type": JSON, "href": f"{base}/health"},
            {"rel": "ready", "type": JSON, "href": f"{base}/ready"},
            {"rel": "datasets", "type": JSON, "href": f"{base}/datasets"},
            {"rel": "jobs", "type": JSON, "href": f"{base}/jobs"},
            {"rel": "tilesets", "type": JSON, "title": "3D Tiles", "href": f"{base}/tiles"},
            {"rel": "uploads", "title": "Resumable uploads (tus)", "href": f"{base}/uploads"},
        ],
    }


async def extent(reads: ReadPool, c: Collection) -> dict[str, Any]:
    cached = _extents.get(c.id)
    if cached and time.monotonic() - cached[0] < EXTENT_TTL:
        return cached[1]
    await reads.acquire()
    try:
        assert reads.pool is not None
        async with reads.pool.acquire() as conn:
            row = await conn.fetchrow(extent_sql(c))
    # one broken layer (or a lost connection) must not take the whole catalogue down
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        log.exception("no extent for collection %s", c.id)
        return {}
    finally:
        reads.gate.release()
    result: dict[str, Any] = {}
    if row is not None and row["x1"] is not None:
        result["spatial"] = {"bbox": [[row["x1"], row["y1"], row["x2"], row["y2"]]],
                             "crs": crs_mod.CRS84}
    if c.temporal is not None:
        lo, hi = (row["lo"], row["hi"]) if row is not None else (None, None)
        interval = [lo.isoformat() if lo else None, hi.isoformat() if hi else None]
        if c.temporal[1] is not None:
            interval[1] = None  # open: current objects stay valid
        result["temporal"] = {"interval": [interval],
                              "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    _extents[c.id] = (time.monotonic(), result)
    return result


def collection_doc(base: str, c: Collection, ext: dict[str, Any]) -> dict[str, Any]:
    href = f"{base}/collections/{c.id}"
    return {
        "id": c.id, "title": c.title, "description": c.description,
        "keywords": list(c.keywords), "itemType": "feature",
        "extent": ext,
        "crs": crs_mod.LISTED, "storageCrs": crs_mod.CRS84,
        "links": [
            {"rel": "self", "type": JSON, "href": href},
            {"rel": "items", "type": GEOJSON, "title": "Features", "href": f"{href}/items"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "Queryables",
             "href": f"{href}/queryables"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
             "type": JSON, "title": "Vector tiles", "href": f"{href}/tiles"},
        ],
    }


def queryables_doc(base: str, c: Collection) -> dict[str, Any]:
    props: dict[str, Any] = {
        "geometry": {"format": _GEOMETRY_SCHEMA.get(c.geometry_type, "geometry-any"),
                     "title": "Geometry (2D" + (", filtered by footprint" if
                                                c.filter_geometry_column else "") + ")"},
    }
    if c.temporal is not None:
        props["datetime"] = {"type": "string", "format": "date-time",
                             "title": "The feature's time (or validity interval)"}
    props["id"] = {"type": c.id_type, "title": "Feature id"}
    for p in c.properties:
        if not p.queryable:
            continue
        schema = dict(_SCHEMA_TYPES[p.type])
        if p.title:
            schema["title"] = p.title
        if p.enum:
            schema["enum"] = list(p.enum)
        props[p.name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base}/collections/{c.id}/queryables",
        "type": "object", "title": c.title, "properties": props,
        "additionalProperties": False,
    }
