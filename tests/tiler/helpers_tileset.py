"""A checker for the 3D Tiles 1.1 rules that the official 3D Tiles validator enforces (it does
not install from the registries here), plus the content checks CesiumJS silently needs.

Shared by the point-cloud and mesh tiler tests::

    issues = check_tileset(path)            # list of "where: what" strings, empty when valid
    assert_valid_tileset(path)              # raises AssertionError listing the issues

Checked: ``asset.version``; no ``gltfUpAxis`` in 1.1; top-level and tile ``geometricError``
numbers, non-negative, never larger in a child than in its parent; bounding volumes well
formed (``box`` 12 numbers, ``region`` radians in range with west/south <= east/north and
min height <= max height, ``sphere`` radius >= 0); each child's volume inside its parent's
and every content vertex inside its tile's volume (and the content's own volume), all
compared in ECEF through the tile transforms; ``refine`` ADD/REPLACE and set on the root;
``transform`` 16 finite numbers of an invertible affine matrix, only on tiles; ``children``
non-empty; content ``uri`` resolving to a file (glb magic checked, external tilesets followed);
``extensionsUsed`` / ``extensionsRequired`` consistent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from tiler.frames import ecef_to_geodetic, geodetic_to_ecef
from tiler.glb import mesh_nodes, read_glb, read_positions

TOL_M = 1e-3  # containment tolerance in metres (float32 content near the box faces)
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)


@dataclass
class ContentTile:
    tile: dict[str, Any]
    world: np.ndarray  # 4x4 tile frame -> ECEF
    path: Path
    depth: int


def _matrix(t: list[float]) -> np.ndarray:
    return np.asarray(t, float).reshape(4, 4).T  # column-major in JSON


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:3, :3].T + m[:3, 3]


def volume_points(bv: dict[str, Any], world: np.ndarray) -> np.ndarray:
    """Points spanning a bounding volume (corners, edge and face samples), in ECEF."""
    if "box" in bv:
        b = np.asarray(bv["box"], float)
        c, axes = b[:3], b[3:].reshape(3, 3)
        g = np.linspace(-1, 1, 3)
        s = np.array([[x, y, z] for x in g for y in g for z in g])
        return _apply(world, c + s @ axes)
    if "region" in bv:
        w, s_, e, n, lo, hi = bv["region"]
        if e < w:
            e += 2 * math.pi
        lon = np.degrees(np.linspace(w, e, 5))
        lat = np.degrees(np.linspace(s_, n, 5))
        lo_g, la_g, h_g = np.meshgrid(lon, lat, [lo, hi], indexing="ij")
        return geodetic_to_ecef(lo_g.ravel(), la_g.ravel(), h_g.ravel())
    if "sphere" in bv:
        x, y, z, r = bv["sphere"]
        d = np.vstack([np.eye(3), -np.eye(3)]) * r
        return _apply(world, np.array([x, y, z]) + d)
    raise ValueError("unknown bounding volume")


def inside_volume(bv: dict[str, Any], world: np.ndarray, ecef: np.ndarray,
                  tol: float = TOL_M) -> np.ndarray:
    """Mask of ECEF points inside a bounding volume placed by ``world``."""
    if "region" in bv:
        w, s, e, n, lo, hi = bv["region"]
        g = ecef_to_geodetic(ecef)
        lon, lat = np.radians(g[:, 0]), np.radians(g[:, 1])
        tol_rad = tol / 6.3e6
        if e < w:
            lon_ok = (lon >= w - tol_rad) | (lon <= e + tol_rad)
        else:
            lon_ok = (lon >= w - tol_rad) & (lon <= e + tol_rad)
        return (lon_ok & (lat >= s - tol_rad) & (lat <= n + tol_rad)
                & (g[:, 2] >= lo - tol) & (g[:, 2] <= hi + tol))
    local = _apply(np.linalg.inv(world), ecef)
    if "box" in bv:
        b = np.asarray(bv["box"], float)
        c, axes = b[:3], b[3:].reshape(3, 3)
        rel = local - c
        ok = np.ones(len(rel), bool)
        for a in axes:
            length = float(np.linalg.norm(a))
            if length == 0:
                continue
            ok &= np.abs(rel @ (a / length)) <= length + tol
        return ok
    x, y, z, r = bv["sphere"]
    return np.linalg.norm(local - np.array([x, y, z]), axis=1) <= r + tol


def _check_volume(bv: Any, where: str, issues: list[str]) -> bool:
    if not isinstance(bv, dict):
        issues.append(f"{where}: boundingVolume missing")
        return False
    kinds = [k for k in ("box", "region", "sphere") if k in bv]
    if not kinds:
        issues.append(f"{where}: boundingVolume has no box, region or sphere")
        return False
    for k in kinds:
        v = bv[k]
        size = {"box": 12, "region": 6, "sphere": 4}[k]
        if not (isinstance(v, list) and len(v) == size
                and all(isinstance(x, int | float) and math.isfinite(x) for x in v)):
            issues.append(f"{where}: {k} must be {size} finite numbers")
            return False
    if "region" in bv:
        w, s, e, n, lo, hi = bv["region"]
        if not (-math.pi <= w <= math.pi and -math.pi <= e <= math.pi):
            issues.append(f"{where}: region longitudes must be radians in [-pi, pi] "
                          f"(got {w}, {e}: degrees?)")
        if not (-math.pi / 2 <= s <= n <= math.pi / 2):
            issues.append(f"{where}: region needs -pi/2 <= south <= north <= pi/2 (got {s}, {n})")
        if lo > hi:
            issues.append(f"{where}: region minimum height {lo} above maximum {hi}")
    if "sphere" in bv and bv["sphere"][3] < 0:
        issues.append(f"{where}: sphere radius is negative")
    return True


def _glb_positions(data: bytes) -> np.ndarray:
    """Every POSITION of every mesh primitive in the default scene, in the glTF scene frame
    (dequantized, node transforms applied), converted from y-up to the tile's z-up frame."""
    doc, binary = read_glb(data)
    out = [_apply(Y_UP_TO_Z_UP, read_positions(doc, binary, prim, m))
           for node, m in mesh_nodes(doc) for prim in doc["meshes"][node["mesh"]]["primitives"]]
    return np.vstack(out) if out else np.empty((0, 3))


def iter_content(tileset_path: Path) -> Iterator[ContentTile]:
    """Every tile with content, with its world transform (external tilesets followed)."""
    tileset_path = Path(tileset_path)
    doc = json.loads(tileset_path.read_text())
    stack = [(doc["root"], np.eye(4), 0)]
    while stack:
        tile, parent, depth = stack.pop()
        world = parent @ _matrix(tile["transform"]) if "transform" in tile else parent
        for c in ([tile["content"]] if "content" in tile else []) + tile.get("contents", []):
            path = tileset_path.parent / unquote(c["uri"])
            if path.suffix == ".json":
                yield from iter_content(path)
            else:
                yield ContentTile(tile, world, path, depth)
        stack.extend((c, world, depth + 1) for c in tile.get("children", []))


def check_tileset(path: Path, *, version: str = "1.1", check_content: bool = True,
                  _world: np.ndarray | None = None) -> list[str]:
    """All rule violations found in the tileset at ``path`` (and the tilesets it references)."""
    path = Path(path)
    issues: list[str] = []
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{path.name}: cannot read JSON: {exc}"]
    asset = doc.get("asset")
    if not isinstance(asset, dict) or "version" not in asset:
        issues.append("asset.version is required")
    elif asset["version"] != version:
        issues.append(f"asset.version is {asset['version']!r}, expected {version!r}")
    if isinstance(asset, dict) and "gltfUpAxis" in asset and version == "1.1":
        issues.append("asset.gltfUpAxis is not part of 3D Tiles 1.1 (glTF content is y-up)")
    ge = doc.get("geometricError")
    if not isinstance(ge, int | float) or not math.isfinite(ge) or ge < 0:
        issues.append("tileset geometricError must be a non-negative number")
        ge = math.inf
    if "transform" in doc:
        issues.append("transform is only allowed on tiles, not on the tileset")
    used = set(doc.get("extensionsUsed", []))
    for ext in doc.get("extensionsRequired", []):
        if ext not in used:
            issues.append(f"extensionsRequired {ext} is not in extensionsUsed")
    for ext in doc.get("extensions", {}):
        if ext not in used:
            issues.append(f"extension {ext} is used but not in extensionsUsed")
    root = doc.get("root")
    if not isinstance(root, dict):
        return [*issues, "root tile is required"]
    if "refine" not in root and _world is None:
        issues.append("root: refine is required on the root tile")

    stack: list[tuple[dict[str, Any], str, float, np.ndarray, dict[str, Any] | None,
                      np.ndarray | None]] = [(root, "root", ge, _world if _world is not None
                                              else np.eye(4), None, None)]
    while stack:
        tile, where, parent_ge, parent_world, parent_bv, parent_bv_world = stack.pop()
        world = parent_world
        if "transform" in tile:
            t = tile["transform"]
            if not (isinstance(t, list) and len(t) == 16
                    and all(isinstance(v, int | float) and math.isfinite(v) for v in t)):
                issues.append(f"{where}: transform must be 16 finite numbers")
            else:
                m = _matrix(t)
                if not np.allclose(m[3], [0, 0, 0, 1]) or abs(np.linalg.det(m[:3, :3])) < 1e-12:
                    issues.append(f"{where}: transform is not an invertible affine matrix")
                else:
                    world = parent_world @ m
        g = tile.get("geometricError")
        if not isinstance(g, int | float) or not math.isfinite(g) or g < 0:
            issues.append(f"{where}: geometricError must be a non-negative number")
        elif g > parent_ge + 1e-9:
            issues.append(f"{where}: geometricError {g} is larger than its parent's {parent_ge}")
        if "refine" in tile and tile["refine"] not in ("ADD", "REPLACE"):
            issues.append(f"{where}: refine must be ADD or REPLACE, not {tile['refine']!r}")
        bv = tile.get("boundingVolume")
        ok = _check_volume(bv, where, issues)
        if ok and parent_bv is not None and parent_bv_world is not None:
            pts = volume_points(bv, world)
            if not inside_volume(parent_bv, parent_bv_world, pts).all():
                issues.append(f"{where}: bounding volume is not inside its parent's")
        if "viewerRequestVolume" in tile:
            _check_volume(tile["viewerRequestVolume"], f"{where}.viewerRequestVolume", issues)
        contents = ([tile["content"]] if "content" in tile else []) + tile.get("contents", [])
        for ci, content in enumerate(contents):
            cw = f"{where}.content[{ci}]"
            uri = content.get("uri") if isinstance(content, dict) else None
            if not isinstance(uri, str) or not uri:
                issues.append(f"{cw}: uri is required")
                continue
            cpath = path.parent / unquote(uri)
            if not cpath.is_file():
                issues.append(f"{cw}: {uri} does not resolve to a file")
                continue
            cbv = content.get("boundingVolume")
            if (cbv is not None and _check_volume(cbv, f"{cw}.boundingVolume", issues) and ok
                    and not inside_volume(bv, world, volume_points(cbv, world)).all()):
                issues.append(f"{cw}: content bounding volume is not inside the tile's")
            if cpath.suffix == ".json":
                issues += [f"{uri}: {i}" for i in check_tileset(
                    cpath, version=version, check_content=check_content, _world=world)]
                continue
            data = cpath.read_bytes()
            if data[:4] != b"glTF":
                issues.append(f"{cw}: {uri} is not a glb (3D Tiles 1.1 content here is glTF)")
                continue
            if check_content and ok:
                pts = _apply(world, _glb_positions(data))
                for vol, vname in ((bv, "tile"), (cbv, "content")):
                    if vol is None:
                        continue
                    inside = inside_volume(vol, world, pts)
                    if not inside.all():
                        issues.append(f"{cw}: {int((~inside).sum())} of {len(pts)} vertices lie "
                                      f"outside the {vname} bounding volume")
        kids = tile.get("children")
        if kids is not None:
            if not isinstance(kids, list) or not kids:
                issues.append(f"{where}: children must be a non-empty array")
                continue
            gval = g if isinstance(g, int | float) else math.inf
            for i, child in enumerate(kids):
                stack.append((child, f"{where}.children[{i}]", gval, world,
                              bv if ok else None, world))
    return issues


def assert_valid_tileset(path: Path, **kwargs: Any) -> None:
    issues = check_tileset(path, **kwargs)
    assert not issues, f"{len(issues)} tileset rule violations:\n" + "\n".join(issues[:50])
