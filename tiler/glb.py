"""Minimal glTF 2.0 binary (GLB) assembly shared by the point-cloud and mesh writers.

One binary buffer, 4-byte aligned buffer views, accessors with the min/max that the
glTF validator requires for POSITION. Content-specific code (points, meshes, feature
metadata) builds on :class:`GltfBuilder`; nothing here knows about tiles.

The readers (:func:`read_accessor`, :func:`mesh_nodes`, :func:`read_positions`) are what
read-back checks use: positions may be normalized integers (KHR_mesh_quantization) whose
dequantization lives in the node transform, so a POSITION accessor alone is not geometry.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

# glTF componentType codes
BYTE, UNSIGNED_BYTE, SHORT, UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5120, 5121, 5122, 5123, 5125, 5126
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963

_COMPONENT = {
    np.dtype(np.int8): BYTE,
    np.dtype(np.uint8): UNSIGNED_BYTE,
    np.dtype(np.int16): SHORT,
    np.dtype(np.uint16): UNSIGNED_SHORT,
    np.dtype(np.uint32): UNSIGNED_INT,
    np.dtype(np.float32): FLOAT,
}
_TYPE = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}

GLB_MAGIC = 0x46546C67
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942


def _pad(data: bytes, fill: bytes = b"\x00") -> bytes:
    return data + fill * (-len(data) % 4)


class GltfBuilder:
    """Accumulates one buffer and the glTF JSON that describes it."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._length = 0
        self.json: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": "twinbase"},
            "buffers": [],
            "bufferViews": [],
            "accessors": [],
        }
        self.extensions_used: set[str] = set()

    def add_buffer_view(self, data: bytes, target: int | None = None, align: int = 4) -> int:
        """Append raw bytes as a buffer view (4-byte aligned, or ``align``); return its index.

        ``align=8`` is for 64-bit property-table columns (EXT_structural_metadata requires
        views aligned to their component size).
        """
        if self._length % align:
            gap = align - self._length % align
            self._chunks.append(b"\x00" * gap)
            self._length += gap
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self._length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        padded = _pad(data)
        self._chunks.append(padded)
        self._length += len(padded)
        self.json["bufferViews"].append(view)
        return len(self.json["bufferViews"]) - 1

    def add_accessor(
        self,
        array: np.ndarray,
        *,
        target: int | None = ARRAY_BUFFER,
        normalized: bool = False,
        with_bounds: bool = False,
    ) -> int:
        """Write a 1-D (SCALAR) or 2-D (VECn) array as an accessor of its own buffer view.

        Vertex attributes (``target=ARRAY_BUFFER``) whose elements are not a multiple of 4
        bytes (3 x int16 positions, 3 x int8 normals) are padded to the next multiple and the
        view gets that ``byteStride``: glTF requires every vertex attribute element to start
        on a 4-byte boundary. Everything else is tightly packed.
        """
        array = np.ascontiguousarray(array)
        if array.dtype not in _COMPONENT:
            raise TypeError(f"glTF has no component type for {array.dtype}")
        width = 1 if array.ndim == 1 else array.shape[1]
        item = array.dtype.itemsize * width
        stride = item + (-item % 4) if target == ARRAY_BUFFER else item
        if stride != item:
            rows = np.zeros((array.shape[0], stride), np.uint8)
            rows[:, :item] = array.reshape(array.shape[0], -1).view(np.uint8)
            view = self.add_buffer_view(rows.tobytes(), target)
            self.json["bufferViews"][view]["byteStride"] = stride
        else:
            view = self.add_buffer_view(array.tobytes(), target)
        accessor: dict[str, Any] = {
            "bufferView": view,
            "componentType": _COMPONENT[array.dtype],
            "count": int(array.shape[0]),
            "type": _TYPE[width],
        }
        if normalized:
            accessor["normalized"] = True
        if with_bounds and array.shape[0]:
            lo = array.min(axis=0)
            hi = array.max(axis=0)
            cast = float if array.dtype.kind == "f" else int
            accessor["min"] = [cast(v) for v in np.atleast_1d(lo)]
            accessor["max"] = [cast(v) for v in np.atleast_1d(hi)]
        self.json["accessors"].append(accessor)
        return len(self.json["accessors"]) - 1

    def use_extension(self, name: str, required: bool = False) -> None:
        self.extensions_used.add(name)
        if required:
            self.json.setdefault("extensionsRequired", [])
            if name not in self.json["extensionsRequired"]:
                self.json["extensionsRequired"].append(name)

    def to_glb(self) -> bytes:
        doc = dict(self.json)
        binary = b"".join(self._chunks)
        if binary:
            doc["buffers"] = [{"byteLength": len(binary)}]
        else:
            for key in ("buffers", "bufferViews", "accessors"):
                if not doc[key]:
                    doc.pop(key)
        if self.extensions_used:
            doc["extensionsUsed"] = sorted(self.extensions_used)
        text = _pad(json.dumps(doc, separators=(",", ":")).encode(), b" ")
        total = 12 + 8 + len(text) + (8 + len(binary) if binary else 0)
        parts = [
            struct.pack("<III", GLB_MAGIC, 2, total),
            struct.pack("<II", len(text), CHUNK_JSON),
            text,
        ]
        if binary:
            parts += [struct.pack("<II", len(binary), CHUNK_BIN), binary]
        return b"".join(parts)


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a GLB into its JSON document and binary chunk (used by read-back checks)."""
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2 or total != len(data):
        raise ValueError("not a glTF 2.0 binary")
    json_len, kind = struct.unpack_from("<II", data, 12)
    if kind != CHUNK_JSON:
        raise ValueError("first GLB chunk is not JSON")
    doc = json.loads(data[20 : 20 + json_len])
    binary = b""
    offset = 20 + json_len
    if offset < len(data):
        bin_len, kind = struct.unpack_from("<II", data, offset)
        if kind != CHUNK_BIN:
            raise ValueError("second GLB chunk is not BIN")
        binary = data[offset + 8 : offset + 8 + bin_len]
    return doc, binary


# Normalized integer -> float, as KHR_mesh_quantization specifies it (signed types clamp the
# extra negative code to -1).
_NORMALIZED = {BYTE: 127.0, UNSIGNED_BYTE: 255.0, SHORT: 32767.0, UNSIGNED_SHORT: 65535.0}


def read_accessor(doc: dict[str, Any], binary: bytes, index: int, *,
                  dequantize: bool = False) -> np.ndarray:
    """Decode one accessor (tightly packed or with a ``byteStride``) to numpy.

    The stored values by default (colours stay 0..255 bytes); ``dequantize=True`` turns a
    ``normalized`` integer accessor into the float64 values it stands for, as a renderer
    sees them (quantized normals, positions before their node transform).
    """
    arr = _read_raw(doc, binary, index)
    acc = doc["accessors"][index]
    if dequantize and acc.get("normalized"):
        return np.maximum(arr / _NORMALIZED[acc["componentType"]], -1.0)
    return arr


def _read_raw(doc: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = next(dt for dt, code in _COMPONENT.items() if code == acc["componentType"])
    width = {v: k for k, v in _TYPE.items()}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride", 0)
    item = dtype.itemsize * width
    if stride and stride != item:  # interleaved, or padded to 4-byte aligned elements
        rows = np.ndarray((acc["count"], width), dtype=dtype, buffer=binary, offset=start,
                          strides=(stride, dtype.itemsize))
        arr = rows.copy()
        return arr if width > 1 else arr[:, 0]
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width, offset=start)
    return arr.reshape(-1, width) if width > 1 else arr


def node_matrix(node: dict[str, Any]) -> np.ndarray:
    """A node's local transform as a 4x4 (column vectors): ``matrix``, or T * R * S."""
    if "matrix" in node:
        return np.asarray(node["matrix"], float).reshape(4, 4).T  # stored column-major
    m = np.diag([*node.get("scale", [1.0, 1.0, 1.0]), 1.0])
    if "rotation" in node:
        x, y, z, w = node["rotation"]
        rot = np.eye(4)
        rot[:3, :3] = [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
        m = rot @ m
    m[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return m


def mesh_nodes(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """``(node, node-to-scene matrix)`` of every node with a mesh in the default scene,
    depth first in the order the scene lists them."""
    if not doc.get("scenes"):
        return
    scene = doc["scenes"][doc.get("scene", 0)]
    stack = [(i, np.eye(4)) for i in reversed(scene.get("nodes", []))]
    while stack:
        i, parent = stack.pop()
        node = doc["nodes"][i]
        m = parent @ node_matrix(node)
        if "mesh" in node:
            yield node, m
        stack.extend((c, m) for c in reversed(node.get("children", [])))


def read_positions(doc: dict[str, Any], binary: bytes, primitive: dict[str, Any],
                   matrix: np.ndarray) -> np.ndarray:
    """A primitive's POSITION as float64 in the scene frame (glTF y-up): normalized integers
    dequantized, then ``matrix`` (the node's, from :func:`mesh_nodes`) applied, which is
    where KHR_mesh_quantization keeps the scale and offset."""
    local = read_accessor(doc, binary, primitive["attributes"]["POSITION"], dequantize=True)
    return local.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
