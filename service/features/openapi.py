"""The API definition at /api: FastAPI's document plus one items path per collection, each
listing its queryables as query parameters and ``filter-lang`` with its values.

GDAL's OAPIF driver reads exactly this: it sends ``-where`` clauses to the server only when
``filter-lang`` lists ``cql-text``, and ``field=value`` only for fields listed as
parameters of the collection's own items path."""

from __future__ import annotations

import copy
from typing import Any

from service.features import crs as crs_mod
from service.features.params import DEFAULT_LIMIT, MAX_LIMIT
from service.features.registry import Collection

FILTER_LANGS = ["cql2-text", "cql2-json", "cql-text"]
_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
          "datetime": "string", "date": "string"}


def _param(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **extra}


COMMON = [
    _param("limit", f"Features per page (max {MAX_LIMIT})",
           {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
    _param("offset", "Features to skip (next links carry it)", {"type": "integer",
                                                                  "minimum": 0}),
    _param("bbox", "minx,miny,maxx,maxy (or 6 numbers with heights) in bbox-crs",
           {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
           style="form", explode=False),
    _param("bbox-crs", "CRS of bbox", {"type": "string", "format": "uri",
                                       "enum": crs_mod.LISTED}),
    _param("datetime", "Instant or interval (start/end, '..' for open)", {"type": "string"}),
    _param("crs", "Output CRS", {"type": "string", "format": "uri", "enum": crs_mod.LISTED}),
    _param("filter", "CQL2 filter", {"type": "string"}),
    _param("filter-lang", "Language of filter", {"type": "string", "enum": FILTER_LANGS,
                                                 "default": "cql2-text"}),
    _param("filter-crs", "CRS of geometries in filter", {"type": "string", "format": "uri",
                                                         "enum": crs_mod.LISTED}),
    _param("properties", "Properties to return, comma-separated", {"type": "string"}),
    _param("sortby", "Sort keys, comma-separated, '-' for descending", {"type": "string"}),
]


def items_path(c: Collection) -> dict[str, Any]:
    params = list(COMMON)
    for p in c.properties:
        if p.queryable and p.type in _TYPES:
            schema: dict[str, Any] = {"type": _TYPES[p.type]}
            if p.type in ("datetime", "date"):
                schema["format"] = "date-time" if p.type == "datetime" else "date"
            if p.enum:
                schema["enum"] = list(p.enum)
            params.append(_param(p.name, f"Features whose {p.name} equals this", schema))
    return {"get": {
        "summary": f"{c.title}: features",
        "operationId": f"getItems_{c.id}",
        "tags": ["features"],
        "parameters": params,
        "responses": {"200": {"description": "GeoJSON FeatureCollection",
                              "content": {"application/geo+json": {"schema": {
                                  "type": "object"}}}},
                      "400": {"description": "Bad query (the detail says why)",
                              "content": {"application/problem+json": {}}}},
    }}


GENERIC_PATHS = ("/collections/{collectionId}/items",
                 "/collections/{collectionId}/items/{featureId}",
                 "/collections/{collectionId}/tiles/WebMercatorQuad/{z}/{x}/{y}")


def api_document(base_doc: dict[str, Any], collections: list[Collection]) -> dict[str, Any]:
    """``base_doc`` with the items, item and tile paths (kept when it has them already)
    and one items path per collection."""
    doc = copy.deepcopy(base_doc)
    paths = doc.setdefault("paths", {})
    if all(p in paths for p in GENERIC_PATHS):
        for c in collections:
            paths[f"/collections/{c.id}/items"] = items_path(c)
        return doc
    cid = {"name": "collectionId", "in": "path", "required": True, "schema": {"type": "string"}}
    paths["/collections/{collectionId}/items"] = {"get": {
        "summary": "Features of a collection (GeoJSON)", "operationId": "getFeatures",
        "tags": ["features"], "parameters": [cid, *COMMON],
        "responses": {"200": {"description": "GeoJSON FeatureCollection"}}}}
    paths["/collections/{collectionId}/items/{featureId}"] = {"get": {
        "summary": "One feature (GeoJSON)", "operationId": "getFeature", "tags": ["features"],
        "parameters": [cid, {"name": "featureId", "in": "path", "required": True,
                             "schema": {"type": "string"}},
                       *(p for p in COMMON if p["name"] in ("crs", "properties"))],
        "responses": {"200": {"description": "GeoJSON Feature"},
                      "404": {"description": "No such feature"}}}}
    paths["/collections/{collectionId}/tiles/WebMercatorQuad/{z}/{x}/{y}"] = {"get": {
        "summary": "Mapbox Vector Tile", "operationId": "getTile", "tags": ["features"],
        "parameters": [cid, *({"name": n, "in": "path", "required": True,
                               "schema": {"type": "integer"}} for n in ("z", "x", "y")),
                       *(p for p in COMMON if p["name"] in ("filter", "filter-lang",
                                                             "filter-crs"))],
        "responses": {"200": {"description": "MVT",
                              "content": {"application/vnd.mapbox-vector-tile": {}}}}}}
    for c in collections:
        paths[f"/collections/{c.id}/items"] = items_path(c)
    return doc
