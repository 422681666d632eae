"""Road segments, water stations and waterways in as a GeoJSON FeatureCollection (lon/lat, CRS84),
validated whole before one transaction writes them (upserted by ``code``)."""

from __future__ import annotations

import json
from typing import Any

from shapely.geometry import shape

from service.core.errors import BadRequest
from service.layers.gbt33171 import ROAD_CLASSES
from service.layers.tables import WATERWAY_KINDS

MAX_FEATURES = 100_000


def read_features(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or \
            not isinstance(data.get("features"), list):
        raise BadRequest("send a GeoJSON FeatureCollection")
    if not data["features"]:
        raise BadRequest("the FeatureCollection is empty")
    if len(data["features"]) > MAX_FEATURES:
        raise BadRequest(f"at most {MAX_FEATURES} features per request")
    return data["features"]


def _geometry(feature: Any, expected: str, reasons: list[str]) -> str | None:
    geom = feature.get("geometry") if isinstance(feature, dict) else None
    if not isinstance(geom, dict) or geom.get("type") != expected:
        reasons.append(f"geometry must be a {expected}")
        return None
    try:
        shp = shape(geom)
    except Exception as exc:  # shapely says what is malformed
        reasons.append(f"geometry is malformed: {exc}")
        return None
    if shp.is_empty or not shp.is_valid:
        reasons.append("geometry is empty or invalid")
        return None
    minx, miny, maxx, maxy = shp.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        reasons.append("coordinates must be longitude, latitude (CRS84)")
        return None
    return shp.wkt


def _text(props: dict[str, Any], name: str, reasons: list[str], required: bool) -> str | None:
    value = props.get(name)
    if value is None or value == "":
        if required:
            reasons.append(f"{name} is required")
        return None
    if not isinstance(value, str) or len(value) > 500:
        reasons.append(f"{name} must be text of at most 500 characters")
        return None
    return value


def _number(props: dict[str, Any], name: str, lo: float, hi: float,
            reasons: list[str]) -> float | None:
    value = props.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        reasons.append(f"{name} must be a number in {lo:g}..{hi:g}")
        return None
    return float(value)


def _properties(feature: Any, reasons: list[str]) -> dict[str, Any]:
    props = feature.get("properties") if isinstance(feature, dict) else None
    if props is None:
        return {}
    if not isinstance(props, dict):
        reasons.append(f"properties must be an object, not {type(props).__name__}")
        return {}
    return props


def _unique_codes(rows: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
    """A code twice in one request: the upsert could not tell which one should win."""
    first: dict[str, int] = {}
    for row in rows:
        n = first.setdefault(row["code"], row["_row"])
        if n != row["_row"]:
            errors.append({"row": row["_row"], "reasons": [
                f"code {row['code']!r} is also in feature {n}; send each code once"]})
    rows[:] = [r for r in rows if first[r["code"]] == r["_row"]]
    errors.sort(key=lambda e: e["row"])


def segment_rows(features: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, errors = [], []
    for n, f in enumerate(features, start=1):
        reasons: list[str] = []
        props = _properties(f, reasons)
        wkt = _geometry(f, "LineString", reasons)
        road_class = props.get("road_class")
        if road_class not in ROAD_CLASSES:
            reasons.append(f"road_class must be one of {', '.join(ROAD_CLASSES)}")
        lanes = props.get("lanes")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 16:
            reasons.append("lanes must be a whole number in 1..16")
        row = {
            "code": _text(props, "code", reasons, True),
            "name": _text(props, "name", reasons, False),
            "road_class": road_class, "lanes": lanes,
            "speed_limit_kmh": _number(props, "speed_limit_kmh", 1, 150, reasons),
            "free_flow_kmh": _number(props, "free_flow_kmh", 1, 150, reasons)
            if props.get("free_flow_kmh") is not None else None, "wkt": wkt,
        }
        if row["free_flow_kmh"] is None and row["speed_limit_kmh"] is not None:
            row["free_flow_kmh"] = row["speed_limit_kmh"]  # no probe data yet: the limit
        row["_row"] = n
        (errors.append({"row": n, "reasons": reasons}) if reasons else rows.append(row))
    _unique_codes(rows, errors)
    return rows, errors


def station_rows(features: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, errors = [], []
    for n, f in enumerate(features, start=1):
        reasons: list[str] = []
        props = _properties(f, reasons)
        wkt = _geometry(f, "Point", reasons)
        body_type = props.get("body_type")
        if body_type in ("reservoir", "lake_reservoir"):
            body_type = "lake"  # GB 3838 treats lakes and reservoirs alike
        if body_type not in ("river", "lake"):
            reasons.append("body_type must be river, lake or reservoir")
        row = {"code": _text(props, "code", reasons, True),
               "name": _text(props, "name", reasons, True),
               "water_body": _text(props, "water_body", reasons, True),
               "body_type": body_type, "wkt": wkt, "_row": n}
        (errors.append({"row": n, "reasons": reasons}) if reasons else rows.append(row))
    _unique_codes(rows, errors)
    return rows, errors


def waterway_rows(features: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rivers, streams and canals as lines; ``parent`` names the river a tributary joins."""
    rows, errors = [], []
    for n, f in enumerate(features, start=1):
        reasons: list[str] = []
        props = _properties(f, reasons)
        wkt = _geometry(f, "LineString", reasons)
        kind = props.get("kind", "river")
        if kind not in WATERWAY_KINDS:
            reasons.append(f"kind must be one of {', '.join(WATERWAY_KINDS)}")
        row = {"code": _text(props, "code", reasons, True),
               "name": _text(props, "name", reasons, True),
               "kind": kind, "parent": _text(props, "parent", reasons, False),
               "wkt": wkt, "_row": n}
        (errors.append({"row": n, "reasons": reasons}) if reasons else rows.append(row))
    _unique_codes(rows, errors)
    return rows, errors
