"""One tile's glb: positions relative to the tile centre (node translation, no CESIUM_RTC),
y-up, flat normals, per-vertex colours, ``_FEATURE_ID_0`` and a property table.

Opaque and translucent triangles (e.g. windows) go to two primitives sharing the vertex
accessors, so a tile is at most two draw calls whatever the number of features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tiler.frames import zup_to_yup
from tiler.glb import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, GltfBuilder

from .metadata import add_property_table


def _material(translucent: bool) -> dict[str, Any]:
    mat: dict[str, Any] = {
        "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0,
                                 "roughnessFactor": 1.0},
        # Source rings are often wound the wrong way; both sides must show.
        "doubleSided": True,
    }
    if translucent:
        mat["alphaMode"] = "BLEND"
    return mat


def tile_glb(
    positions: np.ndarray,
    normals: np.ndarray,
    colors: np.ndarray,
    feature_rows: np.ndarray,
    triangles: np.ndarray,
    centre: np.ndarray,
    rows: Sequence[dict[str, Any]],
) -> bytes:
    """Encode a tile. ``positions`` / ``normals`` are local ENU (z-up), ``triangles`` index them.

    ``feature_rows[i]`` is the property-table row of vertex i (0 .. len(rows) - 1).
    """
    b = GltfBuilder()
    rel = zup_to_yup(positions - centre).astype(np.float32)
    nrm = zup_to_yup(normals).astype(np.float32)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    n_features = len(rows)
    # Feature ids as float32 (exact up to 2**24): a tightly packed uint16 attribute would break
    # glTF's 4-byte alignment of vertex attributes.
    fid = feature_rows.astype(np.float32)
    attributes = {
        "POSITION": b.add_accessor(rel, with_bounds=True),
        "NORMAL": b.add_accessor(nrm),
        "COLOR_0": b.add_accessor(np.ascontiguousarray(colors, np.uint8), normalized=True),
        "_FEATURE_ID_0": b.add_accessor(fid),
    }
    # 16-bit indices when every index fits below the primitive-restart value 65535.
    index_type = np.uint16 if len(positions) <= 65535 else np.uint32
    translucent = colors[triangles[:, 0], 3] < 255 if len(triangles) else np.zeros(0, bool)
    primitives, materials = [], []
    for flag in (False, True):
        part = triangles[translucent == flag]
        if not len(part):
            continue
        materials.append(_material(flag))
        primitives.append({
            "attributes": attributes,
            "indices": b.add_accessor(part.astype(index_type).ravel(),
                                      target=ELEMENT_ARRAY_BUFFER),
            "material": len(materials) - 1,
            "mode": 4,
            "extensions": {"EXT_mesh_features": {"featureIds": [
                {"featureCount": n_features, "attribute": 0, "propertyTable": 0}]}},
        })
    b.use_extension("EXT_mesh_features")
    add_property_table(b, rows)
    b.json["materials"] = materials
    b.json["meshes"] = [{"primitives": primitives}]
    b.json["nodes"] = [{"mesh": 0, "translation": [float(v) for v in zup_to_yup(centre[None])[0]]}]
    b.json["scenes"] = [{"nodes": [0]}]
    b.json["scene"] = 0
    return b.to_glb()


__all__ = ["ARRAY_BUFFER", "tile_glb"]
