"""A quantized-mesh-1.0 reader written from the format's specification (CesiumGS
quantized-mesh README), independent of the encoder the service uses: header, zig-zag delta
vertices, high-water-mark indices, edge indices and extensions."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

HEADER = struct.Struct("<3d2f4d3d")  # centre, min / max height, sphere, horizon point
QUANT = 32767


@dataclass
class Mesh:
    center: tuple[float, float, float]
    min_h: float
    max_h: float
    sphere: tuple[float, float, float, float]
    horizon: tuple[float, float, float]
    u: np.ndarray
    v: np.ndarray
    hq: np.ndarray
    triangles: np.ndarray  # (T, 3)
    edges: dict[str, np.ndarray]
    extensions: dict[int, bytes] = field(default_factory=dict)

    def lonlath(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        w, s, e, n = bounds
        lon = w + (e - w) * self.u / QUANT
        lat = s + (n - s) * self.v / QUANT
        h = self.min_h + (self.max_h - self.min_h) * self.hq / QUANT
        return np.column_stack([lon, lat, h])

    @property
    def height_step(self) -> float:
        return (self.max_h - self.min_h) / QUANT


def _zigzag(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.int64)
    return (a >> 1) ^ -(a & 1)


def decode(data: bytes) -> Mesh:
    vals = HEADER.unpack_from(data, 0)
    pos = HEADER.size
    (n,) = struct.unpack_from("<I", data, pos)
    pos += 4
    arrays = []
    for _ in range(3):
        raw = np.frombuffer(data, "<u2", n, pos)
        pos += 2 * n
        arrays.append(np.cumsum(_zigzag(raw)) & 0xFFFF)
    u, v, hq = arrays
    wide = n > 65536
    size = 4 if wide else 2
    if pos % size:
        pos += size - pos % size
    (t,) = struct.unpack_from("<I", data, pos)
    pos += 4
    codes = np.frombuffer(data, "<u4" if wide else "<u2", 3 * t, pos).astype(np.int64)
    pos += size * 3 * t
    highest = 0
    idx = np.empty(3 * t, np.int64)
    for k, code in enumerate(codes):  # high-water mark
        idx[k] = highest - code
        if code == 0:
            highest += 1
    edges = {}
    for name in ("west", "south", "east", "north"):
        (m,) = struct.unpack_from("<I", data, pos)
        pos += 4
        edges[name] = np.frombuffer(data, "<u4" if wide else "<u2", m, pos).astype(np.int64)
        pos += size * m
    ext = {}
    while pos < len(data):
        eid, length = struct.unpack_from("<BI", data, pos)
        pos += 5
        ext[eid] = data[pos:pos + length]
        pos += length
    return Mesh(vals[0:3], vals[3], vals[4], vals[5:9], vals[9:12], u, v, hq,
                idx.reshape(-1, 3), edges, ext)


def interpolate(mesh: Mesh, bounds: tuple[float, float, float, float], lon: np.ndarray,
                lat: np.ndarray) -> np.ndarray:
    """The mesh's height at lon / lat (linear in its triangle); NaN outside every triangle."""
    p = mesh.lonlath(bounds)
    out = np.full(len(lon), np.nan)
    a, b, c = (p[mesh.triangles[:, k]] for k in range(3))
    for i, (x, y) in enumerate(zip(lon, lat, strict=True)):
        d = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
        l1 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / d
        l2 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / d
        l3 = 1 - l1 - l2
        eps = -1e-9
        hit = np.flatnonzero((l1 >= eps) & (l2 >= eps) & (l3 >= eps))
        if hit.size:
            k = hit[0]
            out[i] = l1[k] * a[k, 2] + l2[k] * b[k, 2] + l3[k] * c[k, 2]
    return out
