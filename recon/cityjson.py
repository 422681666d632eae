"""Reconstructed buildings as CityJSON 2.0: one CityJSONFeature per building.

Each feature holds one ``Building`` city object with up to two ``Solid`` geometries (LoD 1.2
and LoD 2.2), each with its semantic surfaces (RoofSurface, WallSurface, GroundSurface), and
the building's quality figures as attributes. Vertices are integers under the document's
``transform`` (millimetres by default), as CityJSON 2.0 requires.

:func:`to_cityjson` gives one document with every building; :func:`cityjsonseq_lines` gives
the same as CityJSONSeq (a header line, then one feature a line), which streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from recon.buildings import BuildingModel
from recon.solids import Solid

__all__ = [
    "building_feature",
    "cityjson_header",
    "cityjsonseq_lines",
    "crs_uri",
    "to_cityjson",
]

_SURFACE_ORDER = ("RoofSurface", "WallSurface", "GroundSurface")


def crs_uri(crs: str) -> str:
    """``EPSG:7415`` as the OGC URI CityJSON's ``referenceSystem`` wants."""
    if crs.startswith("http"):
        return crs
    auth, _, code = crs.partition(":")
    return f"https://www.opengis.net/def/crs/{auth.upper()}/0/{code}"


def _transform_of(models: Sequence[BuildingModel], scale: float) -> dict[str, list[float]]:
    mins = [m.lod12.vertices.min(axis=0) for m in models if m.lod12 is not None]
    mins += [m.lod22.vertices.min(axis=0) for m in models if m.lod22 is not None]
    origin = np.min(mins, axis=0) if mins else np.zeros(3)
    origin = np.floor(origin)
    return {"scale": [scale, scale, scale], "translate": [float(v) for v in origin]}


def cityjson_header(models: Sequence[BuildingModel], crs: str, *, scale: float = 0.001
                    ) -> dict[str, Any]:
    """The CityJSON 2.0 document around the features: version, transform, CRS."""
    return {
        "type": "CityJSON",
        "version": "2.0",
        "transform": _transform_of(models, scale),
        "metadata": {"referenceSystem": crs_uri(crs)},
        "CityObjects": {},
        "vertices": [],
    }


def _geometry(solid: Solid, lod: str, vmap: dict[int, int]) -> dict[str, Any]:
    shell = [[[vmap[v] for v in ring] for ring in face] for face in solid.faces]
    kinds = [k for k in _SURFACE_ORDER if k in solid.semantics]
    values = [kinds.index(k) for k in solid.semantics]
    return {
        "type": "Solid",
        "lod": lod,
        "boundaries": [shell],
        "semantics": {"surfaces": [{"type": k} for k in kinds], "values": [values]},
    }


def building_feature(model: BuildingModel, transform: dict[str, list[float]]
                     ) -> dict[str, Any] | None:
    """One building as a CityJSONFeature; None when it has no geometry at all."""
    solids = [(s, lod) for s, lod in ((model.lod12, "1.2"), (model.lod22, "2.2")) if s is not None]
    if not solids:
        return None
    scale = np.asarray(transform["scale"])
    translate = np.asarray(transform["translate"])
    vertices: list[list[int]] = []
    index: dict[tuple[int, int, int], int] = {}
    geoms = []
    for solid, lod in solids:
        q = np.rint((solid.vertices - translate) / scale).astype(np.int64)
        vmap = {}
        for i, row in enumerate(q):
            key = (int(row[0]), int(row[1]), int(row[2]))
            j = index.get(key)
            if j is None:
                j = index[key] = len(vertices)
                vertices.append(list(key))
            vmap[i] = j
        geoms.append(_geometry(solid, lod, vmap))
    attrs = {k: v for k, v in model.summary().items() if v is not None and v != [] and k != "id"}
    if model.height is not None:
        attrs["measuredHeight"] = round(model.height, 3)
    return {
        "type": "CityJSONFeature",
        "id": model.id,
        "CityObjects": {model.id: {"type": "Building", "attributes": attrs, "geometry": geoms}},
        "vertices": vertices,
    }


def to_cityjson(models: Sequence[BuildingModel], crs: str, *, scale: float = 0.001
                ) -> dict[str, Any]:
    """All buildings with a geometry in one CityJSON 2.0 document."""
    doc = cityjson_header(models, crs, scale=scale)
    tf = doc["transform"]
    for m in models:
        feat = building_feature(m, tf)
        if feat is None:
            continue
        offset = len(doc["vertices"])
        doc["vertices"].extend(feat["vertices"])
        for oid, obj in feat["CityObjects"].items():
            for g in obj["geometry"]:
                g["boundaries"] = [[[[v + offset for v in ring] for ring in face]
                                    for face in shell] for shell in g["boundaries"]]
            doc["CityObjects"][oid] = obj
    return doc


def cityjsonseq_lines(models: Sequence[BuildingModel], crs: str, *, scale: float = 0.001
                      ) -> Iterator[str]:
    """CityJSONSeq: the header, then one feature per line."""
    header = cityjson_header(models, crs, scale=scale)
    yield json.dumps(header, separators=(",", ":"))
    for m in models:
        feat = building_feature(m, header["transform"])
        if feat is not None:
            yield json.dumps(feat, separators=(",", ":"))
