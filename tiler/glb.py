"""Minimal glTF 2.0 binary (GLB) assembly shared by the point-cloud and mesh writers.

One binary buffer, 4-byte aligned buffer views, accessors with the min/max that the
glTF validator requires for POSITION. Content-specific code (points, meshes, feature
metadata) builds on :class:`GltfBuilder`; nothing here knows about tiles.
"""

from __future__ import annotations

import json
import struct
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
        """Write a 1-D (SCALAR) or 2-D (VECn) array as a tightly packed accessor."""
        array = np.ascontiguousarray(array)
        if array.dtype not in _COMPONENT:
            raise TypeError(f"glTF has no component type for {array.dtype}")
        width = 1 if array.ndim == 1 else array.shape[1]
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


def read_accessor(doc: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    """Decode one accessor (tightly packed or interleaved with ``byteStride``) to numpy."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = next(dt for dt, code in _COMPONENT.items() if code == acc["componentType"])
    width = {v: k for k, v in _TYPE.items()}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride", 0)
    item = dtype.itemsize * width
    if stride and stride != item:  # interleaved vertex data
        rows = np.ndarray((acc["count"], width), dtype=dtype, buffer=binary, offset=start,
                          strides=(stride, dtype.itemsize))
        arr = rows.copy()
        return arr if width > 1 else arr[:, 0]
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width, offset=start)
    return arr.reshape(-1, width) if width > 1 else arr
