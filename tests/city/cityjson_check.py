"""Validation of CityJSON 2.0 and CityJSONSeq output as the official validator (cjval) does
it: the official JSON schemas first, then its extra checks (parents / children consistency,
vertex indices, the shape of semantic values) as errors, and duplicate or unused vertices
and extra root members as warnings.

cjvalpy (cjval's Python binding) publishes no wheel for Linux and Python 3.11, and cjval is
a Rust program this machine cannot fetch crates for; the schemas are the official 2.0.2 ones
(tests/data/cim/cityjson-schemas-2.0.2, copied unmodified).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from jsonschema_rs import Draft7Validator, Registry

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "cim" / "cityjson-schemas-2.0.2"
ROOT_MEMBERS = {"type", "version", "extensions", "transform", "metadata", "CityObjects",
                "vertices", "appearance", "geometry-templates"}
FEATURE_MEMBERS = {"type", "id", "CityObjects", "vertices", "appearance"}
# nesting of "boundaries" down to surfaces, and of semantic "values" down to surface indices
DEPTH = {"MultiSurface": 1, "CompositeSurface": 1, "Solid": 2, "MultiSolid": 3,
         "CompositeSolid": 3}


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:  # valid
        return not self.errors


@lru_cache(maxsize=2)
def _validator(name: str) -> Draft7Validator:
    """The schema ``name`` with its siblings resolvable by their ids; offline, formats
    (dates, e-mail addresses, URIs) checked."""
    schemas = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
    registry = Registry([(s["$id"], s) for s in schemas.values()])
    return Draft7Validator(schemas[f"{name}.schema.json"], registry=registry,
                           validate_formats=True, offline=True)


def _schema(doc: dict[str, Any], name: str, report: Report, where: str) -> None:
    for err in _validator(name).iter_errors(doc):
        path = "/".join(map(str, err.instance_path))
        report.errors.append(f"{where}schema: {path}: {err.message[:300]}")


def _surfaces(boundaries: Any, depth: int) -> list[Any]:
    if depth == 1:
        return list(boundaries)
    return [s for child in boundaries for s in _surfaces(child, depth - 1)]


def _indices(boundaries: Any) -> list[int]:
    if isinstance(boundaries, int):
        return [boundaries]
    return [i for b in boundaries for i in _indices(b)]


def _semantic_shape(values: Any, boundaries: Any, depth: int, n_kinds: int) -> str | None:
    if depth == 1:
        if not isinstance(values, list) or len(values) != len(boundaries):
            return "semantic values do not match the surfaces one to one"
        bad = [v for v in values if v is not None and not 0 <= v < n_kinds]
        return f"semantic value {bad[0]} names no surface" if bad else None
    if not isinstance(values, list) or len(values) != len(boundaries):
        return "semantic values are not nested as the boundaries are"
    for v, b in zip(values, boundaries, strict=True):
        if (why := _semantic_shape(v, b, depth - 1, n_kinds)) is not None:
            return why
    return None


def _objects(objects: dict[str, Any], n_vertices: int, report: Report, where: str) -> list[int]:
    used: list[int] = []
    for oid, obj in objects.items():
        for child in obj.get("children", []):
            if child not in objects:
                report.errors.append(f"{where}{oid}: child {child} is not in the file")
            elif oid not in objects[child].get("parents", []):
                report.errors.append(f"{where}{oid}: child {child} does not name it a parent")
        for parent in obj.get("parents", []):
            if parent not in objects:
                report.errors.append(f"{where}{oid}: parent {parent} is not in the file")
            elif oid not in objects[parent].get("children", []):
                report.errors.append(f"{where}{oid}: parent {parent} does not list it")
        for k, geom in enumerate(obj.get("geometry", [])):
            idx = _indices(geom.get("boundaries", []))
            if any(not 0 <= i < n_vertices for i in idx):
                report.errors.append(f"{where}{oid} geometry {k}: vertex index out of range")
            used += idx
            sem = geom.get("semantics")
            depth = DEPTH.get(geom.get("type"))
            if sem is not None and depth is not None:
                why = _semantic_shape(sem.get("values"), geom["boundaries"], depth,
                                      len(sem.get("surfaces", [])))
                if why:
                    report.errors.append(f"{where}{oid} geometry {k}: {why}")
            for surface in _surfaces(geom.get("boundaries", []), depth or 1):
                for ring in surface:
                    if len(ring) < 3 or len(set(ring)) != len(ring):
                        report.warnings.append(f"{where}{oid} geometry {k}: a ring with "
                                               "repeated or fewer than 3 vertices")
    return used


def _vertices(vertices: list[Any], used: list[int], report: Report, where: str) -> None:
    counts = Counter(map(tuple, vertices))
    dups = sum(n - 1 for n in counts.values() if n > 1)
    if dups:
        report.warnings.append(f"{where}{dups} duplicate vertices")
    unused = len(vertices) - len(set(used) & set(range(len(vertices))))
    if unused:
        report.warnings.append(f"{where}{unused} unused vertices")


def validate_cityjson(doc: dict[str, Any]) -> Report:
    report = Report()
    _schema(doc, "cityjson", report, "")
    extra = set(doc) - ROOT_MEMBERS
    if extra:
        report.warnings.append(f"extra root members: {sorted(extra)}")
    used = _objects(doc.get("CityObjects", {}), len(doc.get("vertices", [])), report, "")
    _vertices(doc.get("vertices", []), used, report, "")
    return report


def validate_cityjsonseq(lines: list[str]) -> Report:
    """The first line a valid CityJSON with no objects; each next one a valid
    CityJSONFeature, complete (every child inside it), with its own vertices."""
    report = Report()
    if not lines:
        report.errors.append("empty sequence")
        return report
    head = json.loads(lines[0])
    first = validate_cityjson(head)
    report.errors += [f"line 1: {e}" for e in first.errors]
    if head.get("CityObjects") or head.get("vertices"):
        report.errors.append("line 1: the header line holds objects")
    seen: set[str] = set()
    for n, line in enumerate(lines[1:], start=2):
        feat = json.loads(line)
        where = f"line {n}: "
        _schema(feat, "cityjsonfeature", report, where)
        if set(feat) - FEATURE_MEMBERS:
            report.warnings.append(f"{where}extra members {sorted(set(feat) - FEATURE_MEMBERS)}")
        objects = feat.get("CityObjects", {})
        if feat.get("id") not in objects:
            report.errors.append(f"{where}id {feat.get('id')} is none of its objects")
        elif objects[feat["id"]].get("parents"):
            report.errors.append(f"{where}the feature's object {feat['id']} has a parent")
        again = seen & set(objects)
        if again:
            report.errors.append(f"{where}objects already in an earlier line: {sorted(again)}")
        seen |= set(objects)
        used = _objects(objects, len(feat.get("vertices", [])), report, where)
        _vertices(feat.get("vertices", []), used, report, where)
    return report


def real_vertices(doc: dict[str, Any], vertices: list[Any] | None = None) -> np.ndarray:
    """Vertices in the CRS's units: integers times scale plus translate."""
    t = doc["transform"]
    v = np.asarray(doc["vertices"] if vertices is None else vertices, float).reshape(-1, 3)
    return v * np.asarray(t["scale"]) + np.asarray(t["translate"])
