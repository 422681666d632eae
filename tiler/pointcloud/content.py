"""glb content of one point-cloud tile, and its read-back.

One POINTS primitive. Positions are float32 offsets from the tile centre, which goes into
the glTF node translation (not CESIUM_RTC), in the tileset's local ENU frame, stored y-up
(glTF's convention; 3D Tiles 1.1 clients rotate y-up to z-up). Colour is COLOR_0 normalized
unsigned byte or short, intensity and classification are EXT_structural_metadata property
attributes (``_INTENSITY``, ``_CLASSIFICATION``) of the class ``point``.

All attributes share one interleaved buffer view: one ``tobytes`` per tile, and every
attribute's offset and the stride are multiples of 4 as glTF requires for vertex data
(tightly packed 1- and 2-byte attributes are not).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tiler.glb import (
    ARRAY_BUFFER,
    FLOAT,
    UNSIGNED_BYTE,
    UNSIGNED_SHORT,
    GltfBuilder,
    read_accessor,
    read_glb,
)

METADATA_SCHEMA: dict[str, Any] = {
    "id": "twinbase_lidar",
    "classes": {
        "point": {
            "name": "LiDAR point",
            "properties": {
                "intensity": {"type": "SCALAR", "componentType": "UINT16",
                              "description": "LAS intensity"},
                "classification": {"type": "SCALAR", "componentType": "UINT8",
                                   "description": "ASPRS LAS classification code"},
            },
        }
    },
}


def _record_dtype(colour: str) -> np.dtype:
    fields: list[tuple[str, Any, Any]] = [("position", "<f4", (3,))]
    if colour == "u8":
        fields += [("color", "u1", (3,)), ("_pad0", "u1", (1,))]
    elif colour == "u16":
        fields += [("color", "<u2", (3,)), ("_pad0", "<u2", (1,))]
    fields += [("intensity", "<u2", (1,)), ("_pad1", "<u2", (1,)),
               ("classification", "u1", (1,)), ("_pad2", "u1", (3,))]
    return np.dtype([(n, t, s) for n, t, s in fields])


def points_glb(enu: np.ndarray, rgb: np.ndarray | None, intensity: np.ndarray,
               classification: np.ndarray, colour: str) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Encode one tile. ``enu`` is (n, 3) float64 in the local frame (z up); ``colour`` is
    ``"u8"``, ``"u16"`` or ``"none"``. Returns the glb and the float64 bounds of its points
    as they will be decoded (float32 rounding included)."""
    # per-column work: axis-0 reductions over an (n, 3) array are several times slower
    cols = [np.ascontiguousarray(enu[:, i]) for i in range(3)]
    lo = np.array([c.min() for c in cols])
    hi = np.array([c.max() for c in cols])
    center = (lo + hi) / 2
    rel = [(c - m).astype(np.float32) for c, m in zip(cols, center, strict=True)]
    rel[1] = -rel[1]
    yup = (rel[0], rel[2], rel[1])  # glTF y-up: (x, y, z) -> (x, z, -y)
    rec = np.zeros(len(enu), _record_dtype(colour))
    pos = rec["position"]
    for i in range(3):
        pos[:, i] = yup[i]
    if colour != "none":
        rec["color"] = rgb
    rec["intensity"][:, 0] = intensity
    rec["classification"][:, 0] = classification

    b = GltfBuilder()
    view = b.add_buffer_view(rec.tobytes(), ARRAY_BUFFER)
    b.json["bufferViews"][view]["byteStride"] = rec.dtype.itemsize
    pmin = np.array([c.min() for c in yup])
    pmax = np.array([c.max() for c in yup])
    acc = b.json["accessors"]

    def accessor(field: str, ctype: int, kind: str, **extra: Any) -> int:
        acc.append({"bufferView": view, "byteOffset": rec.dtype.fields[field][1],
                    "componentType": ctype, "count": len(rec), "type": kind, **extra})
        return len(acc) - 1

    attributes = {"POSITION": accessor("position", FLOAT, "VEC3", min=[float(v) for v in pmin],
                                       max=[float(v) for v in pmax])}
    if colour != "none":
        attributes["COLOR_0"] = accessor(
            "color", UNSIGNED_BYTE if colour == "u8" else UNSIGNED_SHORT, "VEC3", normalized=True)
    attributes["_INTENSITY"] = accessor("intensity", UNSIGNED_SHORT, "SCALAR")
    attributes["_CLASSIFICATION"] = accessor("classification", UNSIGNED_BYTE, "SCALAR")
    b.json["meshes"] = [{"primitives": [{
        "mode": 0,
        "attributes": attributes,
        "extensions": {"EXT_structural_metadata": {"propertyAttributes": [0]}},
    }]}]
    # glTF y-up: local (x, y, z) -> (x, z, -y); the translation carries the tile centre.
    b.json["nodes"] = [{"mesh": 0, "translation": [float(center[0]), float(center[2]),
                                                   float(-center[1])]}]
    b.json["scenes"] = [{"nodes": [0]}]
    b.json["scene"] = 0
    b.json["extensions"] = {"EXT_structural_metadata": {
        "schema": METADATA_SCHEMA,
        "propertyAttributes": [{"class": "point", "properties": {
            "intensity": {"attribute": "_INTENSITY"},
            "classification": {"attribute": "_CLASSIFICATION"},
        }}],
    }}
    b.use_extension("EXT_structural_metadata")
    # bounds of the decoded float32 positions, back in the local z-up frame
    dec_lo = center + np.array([pmin[0], -pmax[2], pmin[1]], float)
    dec_hi = center + np.array([pmax[0], -pmin[2], pmax[1]], float)
    return b.to_glb(), np.minimum(dec_lo, lo), np.maximum(dec_hi, hi)


def read_points_glb(data: bytes) -> dict[str, np.ndarray]:
    """Decode a tile written by :func:`points_glb` (or any single POINTS primitive with the
    same attributes): ``position`` (n, 3) in the local z-up frame, ``color``, ``intensity``,
    ``classification`` where present."""
    doc, binary = read_glb(data)
    prim = doc["meshes"][0]["primitives"][0]
    node = doc["nodes"][doc["scenes"][doc.get("scene", 0)]["nodes"][0]]
    t = np.array(node.get("translation", [0.0, 0.0, 0.0]), float)
    yup = read_accessor(doc, binary, prim["attributes"]["POSITION"]).astype(float) + t
    out = {"position": np.column_stack([yup[:, 0], -yup[:, 2], yup[:, 1]])}
    names = {"COLOR_0": "color", "_INTENSITY": "intensity", "_CLASSIFICATION": "classification"}
    for attr, name in names.items():
        if attr in prim["attributes"]:
            out[name] = read_accessor(doc, binary, prim["attributes"][attr])
    return out
