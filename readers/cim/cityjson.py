"""CityJSON 1.0 / 1.1 / 2.0 documents and CityJSON Text Sequences (``.city.jsonl``) -> raw
objects."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .build import RawObject, RawSurface
from .errors import CityFileError

SUPPORTED = ("1.0", "1.1", "2.0")
_VERSION = re.compile(r"^(\d+\.\d+)(?:\.\d+)?$")
SURFACE_TYPES = {"MultiSurface": 1, "CompositeSurface": 1, "Solid": 2, "MultiSolid": 3,
                 "CompositeSolid": 3}
NON_SURFACE_TYPES = {"MultiPoint": "points", "MultiLineString": "lines"}


@dataclass
class CityJsonHeader:
    version: str
    crs: str | None
    scale: np.ndarray
    translate: np.ndarray
    templates: list[dict[str, Any]]
    template_vertices: np.ndarray


def _check_version(doc: dict[str, Any]) -> str:
    version = str(doc.get("version", "")).strip()
    m = _VERSION.match(version)
    if not m or m.group(1) not in SUPPORTED:
        raise CityFileError(f"unknown CityJSON version {version or '(none)'!r}: "
                            f"supported are {', '.join(SUPPORTED)}")
    return m.group(1)


def parse_header(doc: Any, where: str = "CityJSON") -> CityJsonHeader:
    if not isinstance(doc, dict) or doc.get("type") != "CityJSON":
        raise CityFileError(f"not a CityJSON file: {where} has no \"type\": \"CityJSON\"")
    version = _check_version(doc)
    transform = doc.get("transform")
    if transform is None:
        if version != "1.0":
            raise CityFileError(f"CityJSON {version} requires \"transform\" (scale and translate), "
                                "which this file lacks")
        scale, translate = np.ones(3), np.zeros(3)
    else:
        try:
            scale = np.asarray(transform["scale"], float).reshape(3)
            translate = np.asarray(transform["translate"], float).reshape(3)
        except (KeyError, TypeError, ValueError) as exc:
            raise CityFileError("\"transform\" needs \"scale\" and \"translate\" of 3 numbers") \
                from exc
        if not (np.isfinite(scale).all() and np.isfinite(translate).all()) or (scale == 0).any():
            raise CityFileError("\"transform\" has a zero or non-finite scale or translate")
    meta = doc.get("metadata") or {}
    crs = meta.get("referenceSystem") if isinstance(meta, dict) else None
    tmpl = doc.get("geometry-templates") or {}
    tverts = np.asarray(tmpl.get("vertices-templates") or np.zeros((0, 3)), float).reshape(-1, 3)
    return CityJsonHeader(version, crs if isinstance(crs, str) else None, scale, translate,
                          list(tmpl.get("templates") or []), tverts)


def _vertices(raw: Any, header: CityJsonHeader, where: str) -> np.ndarray:
    try:
        v = np.asarray(raw if raw is not None else [], dtype=float)
        v = v.reshape(-1, 3) if v.size else np.zeros((0, 3))
    except (TypeError, ValueError) as exc:
        raise CityFileError(f"{where}: \"vertices\" must be a list of [x, y, z] numbers") from exc
    return v * header.scale + header.translate


def _surfaces(boundaries: Any, values: Any, depth: int) -> Iterator[tuple[list, Any]]:
    """Walk a boundary tree down to surfaces (lists of rings), pairing semantic indices."""
    if depth == 1:
        for i, surface in enumerate(boundaries):
            yield surface, (values[i] if isinstance(values, list) and i < len(values) else None)
        return
    for i, child in enumerate(boundaries):
        sub = values[i] if isinstance(values, list) and i < len(values) else None
        yield from _surfaces(child, sub, depth - 1)


class _BadGeometry(Exception):
    pass


def _gather(rings: list[list[list[int]]], verts: np.ndarray) -> list[list[np.ndarray]]:
    """Index the vertex array once for all rings of all surfaces of a geometry."""
    flat: list[int] = []
    sizes: list[int] = []
    for surface in rings:
        if not isinstance(surface, list) or not surface:
            raise _BadGeometry("malformed boundaries (a surface is not a list of rings)")
        for ring in surface:
            if not isinstance(ring, list):
                raise _BadGeometry("malformed boundaries (a ring is not a list of indices)")
            flat.extend(ring)
            sizes.append(len(ring))
    try:
        idx = np.asarray(flat, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise _BadGeometry("malformed boundaries (vertex indices must be integers)") from exc
    if idx.ndim != 1:
        raise _BadGeometry("malformed boundaries (nested deeper than the geometry type allows)")
    if idx.size and (idx.min() < 0 or idx.max() >= len(verts)):
        bad = int(idx.max() if idx.max() >= len(verts) else idx.min())
        raise _BadGeometry(f"vertex index {bad} out of range (the file has {len(verts)} vertices)")
    pts = verts[idx]
    cut = np.cumsum(sizes)[:-1]
    parts = np.split(pts, cut)
    out, k = [], 0
    for surface in rings:
        out.append(parts[k:k + len(surface)])
        k += len(surface)
    return out


def _instance(
    geom: dict[str, Any], header: CityJsonHeader, verts: np.ndarray
) -> tuple[dict, np.ndarray]:
    """A GeometryInstance as a plain geometry with its own vertices (the template, placed)."""
    try:
        tmpl = header.templates[int(geom["template"])]
        ref = verts[int(geom["boundaries"][0])]
        m = np.asarray(geom.get("transformationMatrix", np.eye(4).ravel()), float).reshape(4, 4)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise _BadGeometry("GeometryInstance with a missing template or reference point") from exc
    tv = header.template_vertices
    placed = tv @ m[:3, :3].T + m[:3, 3] + ref
    return tmpl, placed


def _skip_reason(geom: dict[str, Any]) -> str:
    kind = str(geom.get("type"))
    lod = geom.get("lod")
    what = f"LoD {lod} {kind}" if lod is not None else kind
    if kind in NON_SURFACE_TYPES:
        return f"{what}: {NON_SURFACE_TYPES[kind]}, no surface to store or tile"
    return f"{what}: not a CityJSON geometry type this service reads"


def _raw_object(
    oid: str, obj: dict[str, Any], verts: np.ndarray, header: CityJsonHeader
) -> RawObject:
    attrs = obj.get("attributes") or {}
    parents = obj.get("parents") or []
    raw = RawObject(
        id=str(oid),
        type=str(obj.get("type", "GenericCityObject")),
        parent_id=str(parents[0]) if parents else None,
        children=[str(c) for c in obj.get("children") or []],
        attributes=dict(attrs) if isinstance(attrs, dict) else {},
        name=attrs.get("name") if isinstance(attrs, dict) and isinstance(attrs.get("name"), str)
        else None,
    )
    try:
        for geom in obj.get("geometry") or []:
            gverts = verts
            if geom.get("type") == "GeometryInstance":
                geom, gverts = _instance(geom, header, verts)
            depth = SURFACE_TYPES.get(geom.get("type"))
            if depth is None:
                raw.skip(_skip_reason(geom))
                continue
            sem = geom.get("semantics") or {}
            kinds = [s.get("type") if isinstance(s, dict) else None
                     for s in sem.get("surfaces") or []]
            pairs = list(_surfaces(geom.get("boundaries") or [], sem.get("values"), depth))
            gathered = _gather([p[0] for p in pairs], gverts)
            lod = geom.get("lod")
            for (_, value), rings in zip(pairs, gathered, strict=True):
                kind = kinds[value] if isinstance(value, int) and 0 <= value < len(kinds) else None
                raw.add(None if lod is None else str(lod), RawSurface(rings, kind))
    except _BadGeometry as exc:
        raw.error = str(exc)
    except (TypeError, AttributeError) as exc:
        raw.error = f"malformed geometry ({exc})"
    return raw


def _objects(city_objects: Any, verts: np.ndarray, header: CityJsonHeader) -> Iterator[RawObject]:
    if not isinstance(city_objects, dict):
        raise CityFileError("\"CityObjects\" must be an object keyed by id")
    for oid, obj in city_objects.items():
        if not isinstance(obj, dict):
            yield RawObject(str(oid), "Unknown", error="city object is not a JSON object")
            continue
        yield _raw_object(oid, obj, verts, header)


def _loads(text: bytes | str, where: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CityFileError(f"invalid JSON in {where}: {exc}") from exc


def read_cityjson(data: bytes) -> tuple[CityJsonHeader, Iterator[RawObject]]:
    doc = _loads(data, "the file")
    header = parse_header(doc, "the document")
    verts = _vertices(doc.get("vertices"), header, "the document")
    return header, _objects(doc.get("CityObjects") or {}, verts, header)


def read_cityjsonseq(lines: Iterable[bytes]) -> tuple[CityJsonHeader, Iterator[RawObject]]:
    """CityJSON Text Sequences: a CityJSON header line, then one CityJSONFeature per line."""
    it = iter(lines)
    first = next((ln for ln in it if ln.strip()), None)
    if first is None:
        raise CityFileError("empty CityJSON Text Sequence")
    header = parse_header(_loads(first, "line 1"), "line 1")

    def features() -> Iterator[RawObject]:
        for n, line in enumerate(it, start=2):
            if not line.strip():
                continue
            feat = _loads(line, f"line {n}")
            if not isinstance(feat, dict) or feat.get("type") != "CityJSONFeature":
                raise CityFileError(f"line {n} is not a CityJSONFeature")
            verts = _vertices(feat.get("vertices"), header, f"line {n}")
            yield from _objects(feat.get("CityObjects") or {}, verts, header)

    return header, features()
