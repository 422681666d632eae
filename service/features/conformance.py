"""The conformance classes this server declares: exactly the ones its tests exercise.

QGIS pushes filters to the server only when Part 3 ``filter`` and ``features-filter``,
CQL2 text and basic CQL2 are all declared (and /queryables exists)."""

from __future__ import annotations

_F1 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
_F2 = "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/"
_F3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"

CONFORMS_TO: list[str] = [
    _F1 + "core",
    _F1 + "oas30",
    _F1 + "geojson",
    _F2 + "crs",
    _F3 + "queryables",
    _F3 + "queryables-query-parameters",
    _F3 + "filter",
    _F3 + "features-filter",
    _CQL2 + "cql2-text",
    _CQL2 + "cql2-json",
    _CQL2 + "basic-cql2",
    _CQL2 + "advanced-comparison-operators",
    _CQL2 + "case-insensitive-comparison",
    _CQL2 + "basic-spatial-functions",
    _CQL2 + "basic-spatial-functions-plus",
    _CQL2 + "spatial-functions",
    _CQL2 + "temporal-functions",
    _CQL2 + "property-property",
    _CQL2 + "arithmetic",
]
