"""3D Tiles 1.1 ``tileset.json`` helpers shared by the point-cloud and mesh tilers.

Bounding volumes (``box`` and ``region``), containment tests, the tileset document itself and
atomic file writes. Atomic writes matter because a dashboard may fetch ``tileset.json`` at any
moment while a tiler is still running: a reader must see either the previous complete file
or the new complete file, never half of one. Content files are written the same way so a
name that a published ``tileset.json`` references always points at a whole file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TILES_VERSION = "1.1"
REFINE_VALUES = ("ADD", "REPLACE")


# --- atomic writes ---------------------------------------------------------------------

def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and
    ``os.replace`` it into place (atomic on POSIX within one file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike[str], doc: Any) -> int:
    """Atomically write ``doc`` as compact JSON; return the number of bytes written."""
    data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    write_bytes_atomic(path, data)
    return len(data)


# --- bounding volumes ------------------------------------------------------------------

def box_from_bounds(lo: Sequence[float], hi: Sequence[float], pad: float = 0.0) -> list[float]:
    """An axis-aligned ``box`` (centre + three half axes) around ``lo``..``hi``.

    ``pad`` widens every half axis; it also keeps a flat or single-point content from giving
    a degenerate (zero-thickness) box.
    """
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    c = (lo_a + hi_a) / 2
    h = (hi_a - lo_a) / 2 + pad
    return [float(c[0]), float(c[1]), float(c[2]),
            float(h[0]), 0.0, 0.0,
            0.0, float(h[1]), 0.0,
            0.0, 0.0, float(h[2])]


def box_center_axes(box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(box, float)
    if b.shape != (12,):
        raise ValueError("a box has 12 numbers")
    return b[:3], b[3:].reshape(3, 3)


def box_aabb(box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The axis-aligned bounds of a (possibly rotated) box."""
    c, axes = box_center_axes(box)
    ext = np.abs(axes).sum(axis=0)
    return c - ext, c + ext


def box_corners(box: Sequence[float]) -> np.ndarray:
    c, axes = box_center_axes(box)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    return c + signs @ axes


def points_in_box(box: Sequence[float], points: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Boolean mask of the ``(n, 3)`` points inside ``box`` (``tol`` in the box's units)."""
    c, axes = box_center_axes(box)
    pts = np.atleast_2d(np.asarray(points, float)) - c
    inside = np.ones(len(pts), bool)
    for a in axes:
        length = float(np.linalg.norm(a))
        if length == 0.0:  # degenerate axis: points must lie on the plane
            continue
        proj = np.abs(pts @ (a / length))
        inside &= proj <= length + tol
    # a degenerate axis adds no constraint above; check its plane through the other axes
    return inside


def box_contains_box(outer: Sequence[float], inner: Sequence[float], tol: float = 1e-6) -> bool:
    return bool(points_in_box(outer, box_corners(inner), tol).all())


def region_from_degrees(west: float, south: float, east: float, north: float,
                        hmin: float, hmax: float) -> list[float]:
    """A ``region`` bounding volume: radians west, south, east, north, metres min/max height."""
    return [math.radians(west), math.radians(south), math.radians(east), math.radians(north),
            float(hmin), float(hmax)]


def region_contains_region(outer: Sequence[float], inner: Sequence[float],
                           tol_rad: float = 1e-9, tol_m: float = 1e-3) -> bool:
    w, s, e, n, lo, hi = outer
    w2, s2, e2, n2, lo2, hi2 = inner
    return (w2 >= w - tol_rad and e2 <= e + tol_rad and s2 >= s - tol_rad and n2 <= n + tol_rad
            and lo2 >= lo - tol_m and hi2 <= hi + tol_m)


def points_in_region(region: Sequence[float], lon_lat_h: np.ndarray,
                     tol_rad: float = 1e-9, tol_m: float = 1e-3) -> np.ndarray:
    """Mask of ``(n, 3)`` longitude, latitude (degrees), height points inside ``region``."""
    w, s, e, n, lo, hi = region
    p = np.atleast_2d(np.asarray(lon_lat_h, float))
    lon, lat = np.radians(p[:, 0]), np.radians(p[:, 1])
    return ((lon >= w - tol_rad) & (lon <= e + tol_rad) & (lat >= s - tol_rad)
            & (lat <= n + tol_rad) & (p[:, 2] >= lo - tol_m) & (p[:, 2] <= hi + tol_m))


# --- tileset documents -----------------------------------------------------------------

def tileset_document(root: dict[str, Any], geometric_error: float, *,
                     generator: str = "twinbase", extras: dict[str, Any] | None = None,
                     schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wrap a root tile into a 3D Tiles 1.1 tileset (``asset.version`` "1.1", no gltfUpAxis:
    glTF content is y-up and 1.1 clients rotate it to z-up themselves)."""
    doc: dict[str, Any] = {
        "asset": {"version": TILES_VERSION, "generator": generator},
        "geometricError": float(geometric_error),
        "root": root,
    }
    if schema is not None:
        doc["schema"] = schema
    if extras:
        doc["asset"]["extras"] = extras
    return doc


def iter_tiles(tile: dict[str, Any], depth: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
    """Every tile of a tree with its depth, parents before children (no recursion limit)."""
    stack = [(tile, depth)]
    while stack:
        t, d = stack.pop()
        yield t, d
        stack.extend((c, d + 1) for c in reversed(t.get("children", [])))


def content_uris(tile: dict[str, Any]) -> list[str]:
    uris = []
    for t, _ in iter_tiles(tile):
        if "content" in t:
            uris.append(t["content"]["uri"])
        uris.extend(c["uri"] for c in t.get("contents", []))
    return uris
