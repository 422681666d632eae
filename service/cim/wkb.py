"""Polygons out of the WKB PostGIS returns for 3D city geometry.

GEOS (and so shapely) cannot read PolyhedralSurface or TIN WKB, and dumping every face into
its own row costs a round trip per face; reading the rings straight from ``ST_AsBinary`` with
numpy views costs one ``frombuffer`` per ring instead.
"""

from __future__ import annotations

import struct

import numpy as np

# Geometry type codes (ISO WKB base type; Z / M are +1000 / +2000, or EWKB flag bits).
POLYGON, MULTIPOLYGON, COLLECTION, POLYHEDRAL, TIN, TRIANGLE = 3, 6, 7, 15, 16, 17
_EWKB_Z, _EWKB_M, _EWKB_SRID = 0x80000000, 0x40000000, 0x20000000


class WkbError(ValueError):
    """The bytes are not WKB of a polygonal geometry."""


def _header(buf: bytes, off: int) -> tuple[str, int, int, int]:
    """(endian, base type, coordinate dimensions, offset after the header)."""
    endian = "<" if buf[off] == 1 else ">"
    (code,) = struct.unpack_from(endian + "I", buf, off + 1)
    off += 5
    if code & (_EWKB_Z | _EWKB_M | _EWKB_SRID):
        dims = 2 + bool(code & _EWKB_Z) + bool(code & _EWKB_M)
        if code & _EWKB_SRID:
            off += 4
        base = code & 0xFFFF
    else:
        base, flavour = code % 1000, code // 1000
        dims = {0: 2, 1: 3, 2: 3, 3: 4}.get(flavour, 0)
    if not dims:
        raise WkbError(f"unknown WKB geometry type {code}")
    return endian, base, dims, off


def _polygon(buf: bytes, off: int, endian: str, dims: int) -> tuple[list[np.ndarray], int]:
    (nrings,) = struct.unpack_from(endian + "I", buf, off)
    off += 4
    rings = []
    dtype = np.dtype(endian + "f8")
    for _ in range(nrings):
        (n,) = struct.unpack_from(endian + "I", buf, off)
        off += 4
        coords = np.frombuffer(buf, dtype, n * dims, off).reshape(n, dims)
        off += 8 * dims * n
        ring = coords[:, :3] if dims >= 3 else np.column_stack([coords, np.zeros(n)])
        # WKB rings are closed; the tiler and the parser use open rings
        if n > 1 and np.array_equal(ring[0], ring[-1]):
            ring = ring[:-1]
        rings.append(ring)
    return rings, off


def polygons_from_wkb(buf: bytes) -> list[list[np.ndarray]]:
    """The faces of a Polygon / MultiPolygon / PolyhedralSurface / TIN (Z), each a list of open
    (n, 3) rings, exterior first; in the order they are stored."""
    out: list[list[np.ndarray]] = []

    def read(off: int) -> int:
        endian, base, dims, off = _header(buf, off)
        if base in (POLYGON, TRIANGLE):
            rings, off = _polygon(buf, off, endian, dims)
            out.append(rings)
            return off
        if base in (MULTIPOLYGON, POLYHEDRAL, TIN, COLLECTION):
            (count,) = struct.unpack_from(endian + "I", buf, off)
            off += 4
            for _ in range(count):
                off = read(off)
            return off
        raise WkbError(f"WKB geometry type {base} is not polygonal")

    try:
        read(0)
    except (struct.error, ValueError) as exc:
        if isinstance(exc, WkbError):
            raise
        raise WkbError(f"truncated or corrupt WKB: {exc}") from exc
    return out
