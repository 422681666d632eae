"""The city tileset: one 3D Tiles entry point whose children are the current version of every
published tileset (point-cloud surveys, the CIM model, BIM models) as external tilesets.

It is derived from the database on each request rather than written on each publish: the
current version of every tileset switches in one transaction (``service.tilesets.store.publish``),
so one SELECT of the current rows is always a consistent picture, and no publish path (LiDAR,
CIM, BIM, or any later one) has to remember to rewrite a second file, which could crash half
way or race another publish. Children are referenced by their *versioned* tileset.json, so a
client that fetched one city tileset gets one consistent set of children, and the city
tileset's bytes (hence its ETag) change whenever any child is republished.

Bounding volumes: each child's root volume (box, sphere or region, with the root transform) is
turned into a geographic region (radians, ellipsoidal metres) by sampling the box; the root
region is the union of the children's. Regions are not affected by transforms, so the child
tiles need none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from service.tilesets.storage import LocalTileStore, TileStore
from tiler.frames import ecef_to_geodetic

# The URL name of the aggregate; no data tileset may take it.
AGGREGATE_NAME = "city"
# a curved earth under a flat box: sampled points miss the faces' bulge by about
# extent^2 / (2 R); a fixed pad (metres, and radians ~ 1 m) covers tilesets of a few km
HEIGHT_PAD_M = 1.0
ANGLE_PAD = 1.6e-7
EMPTY_REGION = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


@dataclass(frozen=True)
class Child:
    """A current tileset version as the tilesets table holds it."""

    name: str
    version: int
    kind: str
    status: str
    path: str  # relative to the tile store


@dataclass(frozen=True)
class ChildVolume:
    region: tuple[float, ...]  # west, south, east, north (rad), min h, max h (m)
    geometric_error: float


def box_samples(box: Sequence[float], n: int = 5) -> np.ndarray:
    """Points on a grid through an oriented box (centre + three half-axes), (n^3, 3)."""
    centre = np.asarray(box[:3], dtype=float)
    axes = np.asarray(box[3:12], dtype=float).reshape(3, 3)
    t = np.linspace(-1.0, 1.0, n)
    grid = np.stack(np.meshgrid(t, t, t, indexing="ij"), axis=-1).reshape(-1, 3)
    return centre + grid @ axes


def _local_points(volume: dict[str, Any]) -> np.ndarray | None:
    if "box" in volume:
        return box_samples(volume["box"])
    if "sphere" in volume:
        x, y, z, r = volume["sphere"]
        return box_samples([x, y, z, r, 0, 0, 0, r, 0, 0, 0, r])
    return None


def region_of(volume: dict[str, Any], transform: Sequence[float] | None) -> tuple[float, ...]:
    """A region (radians, metres) that contains a 3D Tiles bounding volume."""
    if "region" in volume:
        return tuple(float(v) for v in volume["region"])
    points = _local_points(volume)
    if points is None:
        raise ValueError(f"unknown bounding volume {sorted(volume)}")
    if transform is not None:
        m = np.asarray(transform, dtype=float).reshape(4, 4).T  # column-major in 3D Tiles
        points = points @ m[:3, :3].T + m[:3, 3]
    lonlath = ecef_to_geodetic(points)
    lon, lat = np.radians(lonlath[:, 0]), np.radians(lonlath[:, 1])
    h = lonlath[:, 2]
    return (float(lon.min()) - ANGLE_PAD, float(lat.min()) - ANGLE_PAD,
            float(lon.max()) + ANGLE_PAD, float(lat.max()) + ANGLE_PAD,
            float(h.min()) - HEIGHT_PAD_M, float(h.max()) + HEIGHT_PAD_M)


def union(regions: Iterable[Sequence[float]]) -> list[float]:
    """The smallest region holding all. Regions across the antimeridian (west > east) are
    not merged specially: the union then spans the long way round, still containing them."""
    rs = np.asarray(list(regions), dtype=float)
    if rs.size == 0:
        return list(EMPTY_REGION)
    west = np.minimum(rs[:, 0], rs[:, 2]).min()
    east = np.maximum(rs[:, 0], rs[:, 2]).max()
    return [float(west), float(rs[:, 1].min()), float(east), float(rs[:, 3].max()),
            float(rs[:, 4].min()), float(rs[:, 5].max())]


def region_size_m(region: Sequence[float]) -> float:
    """Rough diagonal of a region in metres (for a geometric error that always refines)."""
    w, s, e, n, lo, hi = region
    r = 6_378_137.0
    dx = (e - w) * r * math.cos((s + n) / 2)
    dy = (n - s) * r
    return math.sqrt(dx * dx + dy * dy + (hi - lo) ** 2)


@lru_cache(maxsize=512)
def _volume_of_file(path: str, mtime_ns: int, size: int) -> ChildVolume:
    # keyed by mtime and size too: a version's tileset.json is replaced once (preview, then
    # complete); its content files never change
    return _volume_of(json.loads(Path(path).read_bytes()))


def _volume_of(doc: dict[str, Any]) -> ChildVolume:
    root = doc["root"]
    region = region_of(root["boundingVolume"], root.get("transform"))
    return ChildVolume(region, float(doc.get("geometricError", root.get("geometricError", 0))))


# (store, version path, status) -> volume: a version's tileset.json is replaced only when a
# preview becomes complete, so one GET per version and status is enough
_OBJECT_VOLUMES: dict[tuple[str, str, str], ChildVolume] = {}
OBJECT_VOLUMES_KEPT = 512


def _volume_of_object(store: TileStore, child: Child) -> ChildVolume | None:
    key = (store.ident, child.path, child.status)
    hit = _OBJECT_VOLUMES.get(key)
    if hit is None:
        body = store.read_bytes(f"{child.path}/tileset.json")
        if body is None:
            return None
        hit = _volume_of(json.loads(body))
        if len(_OBJECT_VOLUMES) >= OBJECT_VOLUMES_KEPT:
            _OBJECT_VOLUMES.clear()
        _OBJECT_VOLUMES[key] = hit
    return hit


def child_volume(where: TileStore | Path, child: Child) -> ChildVolume | None:
    """The region and geometric error of a child, or None when its files are gone."""
    store = where if isinstance(where, TileStore) else LocalTileStore(where)
    folder = store.local_dir(child.path)
    if folder is None:  # an object store
        try:
            return _volume_of_object(store, child)
        except (ValueError, KeyError):
            return None
    path = folder / "tileset.json"
    try:
        st = path.stat()
        return _volume_of_file(str(path), st.st_mtime_ns, st.st_size)
    except (OSError, ValueError, KeyError):
        return None


def build(children: Sequence[Child], where: TileStore | Path,
          kinds: frozenset[str] | None = None) -> dict[str, Any]:
    """The city tileset document for these current versions (optionally only some kinds)."""
    tiles = []
    for child in sorted(children, key=lambda c: (c.kind, c.name)):
        if kinds is not None and child.kind not in kinds:
            continue
        vol = child_volume(where, child)
        if vol is None:
            continue
        tiles.append({
            "boundingVolume": {"region": list(vol.region)},
            "geometricError": vol.geometric_error,
            # relative, so the service works under any path prefix
            "content": {"uri": f"../{child.name}/v{child.version}/tileset.json"},
            "extras": {"tileset": child.name, "version": child.version, "kind": child.kind,
                       "status": child.status},
        })
    region = union(t["boundingVolume"]["region"] for t in tiles)
    error = max([region_size_m(region), *(t["geometricError"] for t in tiles)]) if tiles else 0
    return {
        "asset": {"version": "1.1", "generator": "twinbase city tileset"},
        "geometricError": error,
        "root": {"boundingVolume": {"region": region}, "geometricError": error,
                 "refine": "ADD", "children": tiles},
    }
