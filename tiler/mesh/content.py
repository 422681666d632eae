"""One tile's glb: y-up positions placed by their node's transform (no CESIUM_RTC), flat
normals, per-vertex colours, ``_FEATURE_ID_0`` and a property table.

Opaque and translucent triangles (e.g. windows) go to two primitives sharing the vertex
accessors, so a tile is at most two draw calls whatever the number of features.

Vertex attributes are quantized with KHR_mesh_quantization (declared required: a client
without it cannot read the tile at all): 20 bytes a vertex instead of 32 float32 ones, 24
where positions stay float32:

* POSITION: UNSIGNED_SHORT normalized (3 x 2 bytes, padded to a stride of 8, since glTF
  wants every vertex attribute element on a 4-byte boundary). Codes span the node's
  bounding box: the node ``translation`` is the box's minimum corner and its ``scale`` the
  box's largest side, the same on the three axes, so the dequantization is the node
  transform and normals are not bent by it (the extension's own advice). The step is
  ``largest side / 65535``; a vertex moves by at most half a step on each axis.
* Precision guard: a node whose step would exceed :data:`MAX_POSITION_STEP` (1 mm, i.e. a
  box larger than 65.5 m) keeps float32 positions relative to the tile's (or cluster's)
  centre, as before. 1 mm is the grid of the sources themselves (CityJSON files are
  usually stored on a 1 mm grid, IFC models are drawn to the millimetre), so half a step
  (0.5 mm on each axis, 0.9 mm at most in 3D) never moves a vertex by more than the
  source's own rounding, well inside the 1 cm the round-trip checks allow. Building-sized
  tiles (BIM models, single buildings) are quantized; tiles of whole districts span
  hundreds of metres and mostly keep float32 positions.
* NORMAL: BYTE normalized (3 x 1 byte, stride 4), whatever the positions: under half a
  degree off, finer than flat shading needs.
* COLOR_0 (normalized bytes) and ``_FEATURE_ID_0`` (float32, exact integers) as before.

Far-apart features (:data:`CLUSTER_SIZE`) already go to nodes of their own; each node is
quantized, or not, by its own box, so a far, small cluster is quantized even when the
tile as a whole spans kilometres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
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


# Largest position quantization step (m) a node may have (see the module docstring): its
# box may be at most 65535 steps wide.
MAX_POSITION_STEP = 0.001
_U16 = 65535

# The Khronos validator rejects a normal whose decoded length is off 1 by more than 0.00674;
# plain rounding to 1/127 can be off by up to sqrt(3) / 254 = 0.0068.
NORMAL_LENGTH_TOLERANCE = 0.005
_ROUNDINGS = np.array(list(product((0.0, 1.0), repeat=3)))  # floor + these: the 8 neighbours


# Features more than this far apart (m) get their own glTF node and translation: float32
# positions keep ~0.5 mm up to here, but a tile that holds buildings of two cities (a coarse
# tile of a tileset spanning Rotterdam and Berlin, 600 km apart) would be off by centimetres.
CLUSTER_SIZE = 4096.0


def feature_clusters(positions: np.ndarray, feature_rows: np.ndarray, n_rows: int
                     ) -> tuple[np.ndarray, int]:
    """Cluster index of each property-table row (by its vertex centroid on a coarse grid)."""
    if n_rows == 0 or not len(positions) or np.ptp(positions, axis=0).max() <= CLUSTER_SIZE:
        return np.zeros(n_rows, np.int64), 1  # the usual case: one node
    sums = np.zeros((n_rows, 3))
    np.add.at(sums, feature_rows, positions)
    counts = np.maximum(np.bincount(feature_rows, minlength=n_rows), 1)
    cells = np.floor(sums / counts[:, None] / CLUSTER_SIZE).astype(np.int64)
    _, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max()) + 1


def weld(positions: np.ndarray, normals: np.ndarray, colors: np.ndarray, fid: np.ndarray,
         triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices that are the same corner of the same flat face of the same feature:
    equal float32 position, colour and feature id, and normals equal to 1/4096 (the flat
    normals of coplanar triangles differ in their last bits). Meshes arrive with one vertex
    per triangle corner; welded, the samples' BIM tiles hold about half the vertices, and the
    picture is unchanged. Returns (kept vertex indices, triangles re-indexed to them)."""
    if not len(positions):
        return np.arange(0), triangles
    n = len(positions)
    rows = np.concatenate([
        np.ascontiguousarray(positions, np.float32).view(np.uint8).reshape(n, 12),
        np.round(normals * 4096).astype(np.int16).view(np.uint8).reshape(n, 6),
        np.ascontiguousarray(colors, np.uint8).reshape(n, 4),
        np.ascontiguousarray(fid, np.float32).view(np.uint8).reshape(n, 4),
    ], axis=1)
    _, first, inverse = np.unique(np.ascontiguousarray(rows).view(
        np.dtype((np.void, rows.shape[1]))).reshape(-1), return_index=True,
        return_inverse=True)
    order = np.argsort(first)  # keep the vertices in their original order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)][triangles]


def quantize_positions(yup: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(codes, offset, scale)`` of y-up positions as UNSIGNED_SHORT normalized, decoded as
    ``offset + scale * codes / 65535``; None when the step would exceed the guard."""
    if not len(yup):
        return None
    lo = yup.min(axis=0)
    side = float((yup.max(axis=0) - lo).max())
    if not 0.0 < side <= MAX_POSITION_STEP * _U16:
        return None
    codes = np.clip(np.rint((yup - lo) * (_U16 / side)), 0, _U16).astype(np.uint16)
    return codes, lo, side


def quantize_normals(nrm: np.ndarray) -> np.ndarray:
    """BYTE normalized codes of unit normals: the nearest rounding, except where its length
    would be off 1 by more than :data:`NORMAL_LENGTH_TOLERANCE`; there, the rounding (up or
    down per component) closest in direction among those of acceptable length. Rounding one
    component the other way changes the length by at most 1/127, so one always qualifies."""
    scaled = np.asarray(nrm, np.float64) * 127.0
    codes = np.rint(scaled)
    bad = np.flatnonzero(np.abs(np.linalg.norm(codes, axis=1) / 127.0 - 1.0)
                         > NORMAL_LENGTH_TOLERANCE)
    if len(bad):
        cand = np.clip(np.floor(scaled[bad])[:, None, :] + _ROUNDINGS[None], -127, 127)
        length = np.maximum(np.linalg.norm(cand, axis=2), 1e-9)
        off = np.linalg.norm(cand / length[..., None] - nrm[bad][:, None, :], axis=2)
        off[np.abs(length / 127.0 - 1.0) > NORMAL_LENGTH_TOLERANCE] += 4.0  # never preferred
        codes[bad] = cand[np.arange(len(bad)), off.argmin(axis=1)]
    return codes.astype(np.int8)


@dataclass(frozen=True)
class EncodedTile:
    glb: bytes
    vertices: int  # after welding
    draw_calls: int  # glTF primitives


def tile_glb(
    positions: np.ndarray,
    normals: np.ndarray,
    colors: np.ndarray,
    feature_rows: np.ndarray,
    triangles: np.ndarray,
    centre: np.ndarray,
    rows: Sequence[dict[str, Any]],
) -> EncodedTile:
    """Encode a tile. ``positions`` / ``normals`` are local ENU (z-up), ``triangles`` index them.

    ``feature_rows[i]`` is the property-table row of vertex i (0 .. len(rows) - 1). Positions
    are quantized over their node's box, or, past the precision guard, stored as float32
    relative to ``centre`` (the node translation); features far from each other (see
    :data:`CLUSTER_SIZE`) go to separate nodes, each with its own box or centre.
    """
    b = GltfBuilder()
    n_features = len(rows)
    nrm_all = normals.astype(np.float64)
    cluster_of_row, n_clusters = feature_clusters(positions, feature_rows, n_features)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # vertices, triangles, centre
    if n_clusters == 1:
        parts.append((np.arange(len(positions)), triangles, centre))
    else:
        vcluster = cluster_of_row[feature_rows]
        tcluster = vcluster[triangles[:, 0]] if len(triangles) else np.zeros(0, np.int64)
        for k in range(n_clusters):
            verts = np.flatnonzero(vcluster == k)
            remap = np.full(len(positions), -1, np.int64)
            remap[verts] = np.arange(len(verts))
            p = positions[verts]
            local_centre = np.round((p.min(axis=0) + p.max(axis=0)) / 2, 2)
            parts.append((verts, remap[triangles[tcluster == k]], local_centre))
    materials: list[dict[str, Any]] = []
    material_of: dict[bool, int] = {}
    nodes = []
    meshes = []
    n_vertices = 0
    for verts, tris, part_centre in parts:
        rel = zup_to_yup(positions[verts] - part_centre).astype(np.float32)
        nrm = zup_to_yup(nrm_all[verts]).astype(np.float32)
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        # Feature ids as float32 (exact up to 2**24): a uint16 attribute would be padded to
        # the same 4 bytes, as glTF aligns every vertex attribute element to 4 bytes.
        fid = feature_rows[verts].astype(np.float32)
        part_colors = colors[verts]
        # Welding compares the float32 positions whichever way they are stored, so that the
        # vertices (and the counts reported) do not depend on the precision guard.
        keep, tris = weld(rel, nrm, part_colors, fid, tris)
        rel, nrm, fid, part_colors = rel[keep], nrm[keep], fid[keep], part_colors[keep]
        verts = verts[keep]
        n_vertices += len(verts)
        quantized = quantize_positions(zup_to_yup(positions[verts]))
        if quantized is None:
            node: dict[str, Any] = {
                "translation": [float(v) for v in zup_to_yup(part_centre[None])[0]]}
            position = b.add_accessor(rel, with_bounds=True)
        else:
            codes, offset, side = quantized
            node = {"translation": [float(v) for v in offset], "scale": [side] * 3}
            position = b.add_accessor(codes, normalized=True, with_bounds=True)
        attributes = {
            "POSITION": position,
            "NORMAL": b.add_accessor(quantize_normals(nrm), normalized=True),
            "COLOR_0": b.add_accessor(np.ascontiguousarray(part_colors, np.uint8),
                                      normalized=True),
            "_FEATURE_ID_0": b.add_accessor(fid),
        }
        # 16-bit indices when every index fits below the primitive-restart value 65535.
        index_type = np.uint16 if len(verts) <= 65535 else np.uint32
        translucent = part_colors[tris[:, 0], 3] < 255 if len(tris) else np.zeros(0, bool)
        primitives = []
        for flag in (False, True):
            part = tris[translucent == flag]
            if not len(part):
                continue
            if flag not in material_of:
                material_of[flag] = len(materials)
                materials.append(_material(flag))
            primitives.append({
                "attributes": attributes,
                "indices": b.add_accessor(part.astype(index_type).ravel(),
                                          target=ELEMENT_ARRAY_BUFFER),
                "material": material_of[flag],
                "mode": 4,
                "extensions": {"EXT_mesh_features": {"featureIds": [
                    {"featureCount": n_features, "attribute": 0, "propertyTable": 0}]}},
            })
        if not primitives:
            continue
        nodes.append({"mesh": len(meshes), **node})
        meshes.append({"primitives": primitives})
    b.use_extension("EXT_mesh_features")
    if meshes:  # byte normals at least
        b.use_extension("KHR_mesh_quantization", required=True)
    add_property_table(b, rows)
    b.json["materials"] = materials
    b.json["meshes"] = meshes
    b.json["nodes"] = nodes
    b.json["scenes"] = [{"nodes": list(range(len(nodes)))}]
    b.json["scene"] = 0
    return EncodedTile(b.to_glb(), n_vertices, sum(len(m["primitives"]) for m in meshes))


__all__ = ["ARRAY_BUFFER", "EncodedTile", "tile_glb"]
