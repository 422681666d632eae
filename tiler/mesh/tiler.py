"""``tile_features``: generic features with surfaces -> a 3D Tiles 1.1 tileset of glb tiles."""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tiler.frames import EnuFrame, ecef_to_geodetic, geodetic_to_ecef
from tiler.tileset import write_json_atomic

from .content import tile_glb
from .features import CITY_PALETTE, RGBA, MeshFeature, srgb_to_linear_u8
from .layout import TileNode, build_quadtree, cell_centre, root_half_size
from .manifest import FORMAT, MANIFEST_NAME, ManifestDiff, diff_manifests
from .triangulate import triangulate_polygons

Progress = Callable[[str, int, int], None]  # (stage, done, total)
# m: neither float32 rounding nor quantization (half a step, at most 0.5 mm) of positions
# leaves the bounding box
BOX_PADDING = 0.01


@dataclass
class MeshTilesetResult:
    features: int  # features written to tiles
    tiles: int
    bytes: int  # glb bytes of this version (linked files included)
    triangles: int
    vertices: int
    manifest: dict[str, Any]
    diff: ManifestDiff  # against previous_manifest (everything "added" without one)
    skipped: list[str]  # ids of features without any surface area
    tileset_path: Path


@dataclass
class _Flat:
    ids: list[str]
    props: list[dict[str, Any]]
    geo: np.ndarray  # (V, 3) lon, lat, h of polygon rings
    ring_counts: np.ndarray
    rings_per_polygon: np.ndarray
    polygon_feature: np.ndarray
    polygon_class: np.ndarray
    meshes: list[tuple[int, np.ndarray, np.ndarray, int]]  # feature, positions, triangles, class
    classes: list[str | None]
    priority: np.ndarray  # per feature


def _flatten(features: Iterable[MeshFeature]) -> _Flat:
    ids: list[str] = []
    props: list[dict[str, Any]] = []
    rings: list[np.ndarray] = []
    rpp: list[int] = []
    pfeat: list[int] = []
    pcls: list[int] = []
    meshes: list[tuple[int, np.ndarray, np.ndarray, int]] = []
    classes: dict[str | None, int] = {}
    priority: list[int] = []
    seen: set[str] = set()
    for fi, f in enumerate(features):
        fid = str(f.id)
        if fid in seen:
            raise ValueError(f"duplicate feature id {fid!r}")
        seen.add(fid)
        ids.append(fid)
        props.append(f.properties)
        priority.append(int(f.priority))
        for poly in f.polygons:
            rings.extend(poly.rings)
            rpp.append(len(poly.rings))
            pfeat.append(fi)
            pcls.append(classes.setdefault(poly.cls, len(classes)))
        for m in f.meshes:
            meshes.append((fi, np.asarray(m.positions, float), np.asarray(m.triangles, np.int64),
                           classes.setdefault(m.cls, len(classes))))
    counts = np.fromiter((len(r) for r in rings), np.int64, len(rings))
    geo = np.concatenate(rings).astype(float, copy=False) if rings else np.zeros((0, 3))
    return _Flat(ids, props, geo, counts, np.asarray(rpp, np.int64), np.asarray(pfeat, np.int64),
                 np.asarray(pcls, np.int64), meshes, list(classes),
                 np.asarray(priority, np.int64))


def _choose_frame(flat: _Flat, previous: dict[str, Any] | None) -> EnuFrame:
    if previous and "frame" in previous:
        f = previous["frame"]
        return EnuFrame(f["lon"], f["lat"], f["height"])
    pts = [flat.geo] + [m[1] for m in flat.meshes]
    allp = np.concatenate(pts) if pts else np.zeros((0, 3))
    if not len(allp):
        return EnuFrame(0.0, 0.0, 0.0)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    # Centre of the data (in ECEF, so it works across the antimeridian), at ground height.
    corners = geodetic_to_ecef(*np.vstack([lo, hi]).T)
    lon, lat, _ = ecef_to_geodetic(np.repeat(corners.mean(axis=0)[None], 2, axis=0))[0]
    return EnuFrame(float(lon), float(lat), round(float(lo[2]), 2))


def _to_enu(frame: EnuFrame, geo: np.ndarray) -> np.ndarray:
    if not len(geo):
        return np.zeros((0, 3))
    return frame.from_ecef(geodetic_to_ecef(geo[:, 0], geo[:, 1], geo[:, 2]))


def _mesh_part(frame: EnuFrame, meshes, offset_feature_vertices):
    """Pre-triangulated meshes: one vertex per triangle corner, flat normals. All meshes go
    through each step together: with thousands of small meshes (BIM elements), numpy calls
    made per mesh cost far more than their arithmetic (benchmarks/RESULTS.md)."""
    meshes = [m for m in meshes if len(m[2])]
    if not meshes:
        return None
    for _, p, t, _ in meshes:
        if t.min() < 0 or t.max() >= len(p):
            raise ValueError("mesh triangle index out of range")
    firsts = np.cumsum([0] + [len(p) for _, p, _, _ in meshes[:-1]])
    enu = _to_enu(frame, np.concatenate([p for _, p, _, _ in meshes]))
    tris = np.concatenate([t.reshape(-1, 3) + first
                           for (_, _, t, _), first in zip(meshes, firsts, strict=True)])
    per_mesh = [t.size // 3 for _, _, t, _ in meshes]
    tfeat = np.repeat([fi for fi, _, _, _ in meshes], per_mesh)
    tcls = np.repeat([cls for _, _, _, cls in meshes], per_mesh)
    a, b, c = enu[tris[:, 0]], enu[tris[:, 1]], enu[tris[:, 2]]
    n = np.cross(b - a, c - a)
    length = np.linalg.norm(n, axis=1)
    ok = length > 2e-10
    if not ok.any():
        return None
    corners = np.stack([a[ok], b[ok], c[ok]], axis=1).reshape(-1, 3)
    normals = np.repeat(n[ok] / length[ok, None], 3, axis=0).astype(np.float32)
    k = len(corners)
    base = offset_feature_vertices
    return (corners, normals, np.arange(base, base + k).reshape(-1, 3),
            np.repeat(tfeat[ok], 3), np.repeat(tcls[ok], 3))


def tile_features(
    features: Iterable[MeshFeature],
    out_dir: str | Path,
    *,
    max_triangles_per_tile: int = 100_000,
    previous_manifest: dict[str, Any] | None = None,
    previous_dir: str | Path | None = None,
    palette: Mapping[str | None, RGBA] | None = None,
    progress: Progress | None = None,
    max_tile_width_m: float = 4096.0,
) -> MeshTilesetResult:
    """Tile features into ``out_dir`` (``tileset.json``, ``manifest.json``, ``tiles/*.glb``).

    ``max_triangles_per_tile`` (default 100,000; a single larger feature gets a tile
    of its own), ``previous_manifest`` and ``previous_dir`` (reuse the frame and grid of the
    previous version; hard-link tiles that come out identical), ``palette`` (class -> sRGB
    RGBA, merged over :data:`CITY_PALETTE`), ``progress(stage, done, total)``,
    ``max_tile_width_m`` (a tile's cell wider than this holds only features a quarter as wide:
    far-apart places get tiles of their own).
    """
    # Hundreds of thousands of small containers are built; the cyclic collector would walk
    # them again and again (a large share of the run time) while finding nothing to free.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _tile_features(features, out_dir, max_triangles_per_tile=max_triangles_per_tile,
                              previous_manifest=previous_manifest, previous_dir=previous_dir,
                              palette=palette, progress=progress,
                              max_tile_width_m=max_tile_width_m)
    finally:
        if was_enabled:
            gc.enable()


def _tile_features(
    features: Iterable[MeshFeature],
    out_dir: str | Path,
    *,
    max_triangles_per_tile: int = 100_000,
    previous_manifest: dict[str, Any] | None = None,
    previous_dir: str | Path | None = None,
    palette: Mapping[str | None, RGBA] | None = None,
    progress: Progress | None = None,
    max_tile_width_m: float = 4096.0,
) -> MeshTilesetResult:
    """See :func:`tile_features`.

    With ``previous_manifest`` the ENU frame and the quadtree grid of the previous version are
    kept, so tiles whose features did not change come out byte-identical; with ``previous_dir``
    those files are hard-linked from the previous version instead of written again.
    ``tileset.json`` is written last and atomically.
    """
    out = Path(out_dir)
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    pal = dict(CITY_PALETTE)
    pal.update(palette or {})
    report = progress or (lambda stage, done, total: None)

    flat = _flatten(features)
    n_feat = len(flat.ids)
    report("prepare", n_feat, n_feat)
    frame = _choose_frame(flat, previous_manifest)
    enu = _to_enu(frame, flat.geo)
    tri_out = triangulate_polygons(enu, flat.ring_counts, flat.rings_per_polygon)
    report("triangulate", n_feat, n_feat)
    pos, nrm, tri = tri_out.positions, tri_out.normals, tri_out.triangles
    vfeat = flat.polygon_feature[tri_out.vertex_polygon]
    vcls = flat.polygon_class[tri_out.vertex_polygon]
    extra = _mesh_part(frame, flat.meshes, len(pos))
    if extra is not None:
        pos = np.concatenate([pos, extra[0]])
        nrm = np.concatenate([nrm, extra[1]])
        tri = np.concatenate([tri, extra[2]])
        vfeat = np.concatenate([vfeat, extra[3]])
        vcls = np.concatenate([vcls, extra[4]])
    tfeat = vfeat[tri[:, 0]] if len(tri) else np.zeros(0, np.int64)

    # Per-feature extent, size and triangle count; features without triangles are skipped.
    tri_count = np.bincount(tfeat, minlength=n_feat)
    used = np.flatnonzero(tri_count > 0)
    skipped = [flat.ids[i] for i in np.flatnonzero(tri_count == 0)]
    lo = np.full((n_feat, 3), np.inf)
    hi = np.full((n_feat, 3), -np.inf)
    np.minimum.at(lo, vfeat, pos)
    np.maximum.at(hi, vfeat, pos)
    centres = np.zeros((n_feat, 3))  # a feature without vertices has no centre (inf - inf)
    centres[used] = (lo[used] + hi[used]) / 2
    sizes = np.where(tri_count > 0, np.linalg.norm(hi - lo, axis=1), 0.0)

    half = root_half_size(centres[used]) if len(used) else 64.0
    if previous_manifest and previous_manifest.get("root_half_size", 0) >= half:
        half = float(previous_manifest["root_half_size"])
    ids_arr = np.array(flat.ids, dtype=object)
    root = build_quadtree(centres[used], sizes[used], tri_count[used], ids_arr[used],
                          half, max_triangles_per_tile, priority=flat.priority[used],
                          max_cell=max_tile_width_m)
    nodes = list(root.walk())
    for node in nodes:  # local indices of the used features -> feature indices
        node.features = used[node.features]

    # Group vertices and triangles by tile, features in row order within a tile.
    grank = np.full(n_feat, -1, np.int64)
    feature_row = np.zeros(n_feat, np.int64)
    k = 0
    for node in nodes:
        grank[node.features] = np.arange(k, k + len(node.features))
        feature_row[node.features] = np.arange(len(node.features))
        k += len(node.features)
    vorder = np.argsort(grank[vfeat], kind="stable")
    inverse = np.empty_like(vorder)
    inverse[vorder] = np.arange(len(vorder))
    torder = np.argsort(grank[tfeat], kind="stable")
    tri = inverse[tri[torder]]
    pos, nrm, vfeat, vcls = pos[vorder], nrm[vorder], vfeat[vorder], vcls[vorder]
    vtile_rank = grank[vfeat]
    ttile_rank = vtile_rank[tri[:, 0]] if len(tri) else np.zeros(0, np.int64)

    lut = np.stack([srgb_to_linear_u8(pal.get(c, pal[None])) for c in flat.classes]) \
        if flat.classes else np.zeros((1, 4), np.uint8)
    colors = lut[vcls] if len(vcls) else np.zeros((0, 4), np.uint8)

    prev_tiles = (previous_manifest or {}).get("tiles", {})
    tiles_doc: dict[str, Any] = {}
    boxes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    total_bytes = total_vertices = 0
    k = 0
    for i, node in enumerate(nodes):
        nf = len(node.features)
        if nf == 0:  # no feature at all (every one was removed): a root without content
            continue
        v0, v1 = np.searchsorted(vtile_rank, [k, k + nf])
        t0, t1 = np.searchsorted(ttile_rank, [k, k + nf])
        k += nf
        p = pos[v0:v1]
        centre = cell_centre(node, half)
        rows = [{"id": flat.ids[f], **flat.props[f]} for f in node.features]
        encoded = tile_glb(p, nrm[v0:v1], colors[v0:v1], feature_row[vfeat[v0:v1]],
                           tri[t0:t1] - v0, centre, rows)
        glb = encoded.glb
        total_vertices += encoded.vertices
        digest = hashlib.sha256(glb).hexdigest()
        uri = f"tiles/{node.key}-{digest[:16]}.glb"
        target = out / uri
        old = prev_tiles.get(node.key)
        if previous_dir and old and old["sha256"] == digest and (Path(previous_dir) / uri).exists():
            _link(Path(previous_dir) / uri, target)
        elif not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(glb)
            os.replace(tmp, target)
        total_bytes += len(glb)
        boxes[node.key] = (p.min(axis=0), p.max(axis=0))
        tiles_doc[node.key] = {
            "uri": uri, "sha256": digest, "bytes": len(glb), "triangles": int(t1 - t0),
            "vertices": encoded.vertices, "draw_calls": encoded.draw_calls,
            "features": [flat.ids[f] for f in node.features],
        }
        report("tiles", i + 1, len(nodes))

    manifest = {
        "format": FORMAT, "version": 1,
        "frame": {"lon": frame.lon, "lat": frame.lat, "height": frame.height},
        "root_half_size": half, "max_triangles_per_tile": max_triangles_per_tile,
        "tiles": tiles_doc,
    }
    tileset = _tileset_json(root, boxes, tiles_doc, frame,
                            float(sizes.max()) if len(sizes) else 0.0)
    write_json_atomic(out / MANIFEST_NAME, manifest)
    write_json_atomic(out / "tileset.json", tileset)
    return MeshTilesetResult(
        features=len(used), tiles=len(tiles_doc), bytes=total_bytes, triangles=len(tri),
        vertices=total_vertices, manifest=manifest,
        diff=diff_manifests(previous_manifest, manifest),
        skipped=skipped, tileset_path=out / "tileset.json",
    )


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:  # other file system: copy
        shutil.copyfile(src, dst)


def _box(lo: np.ndarray, hi: np.ndarray) -> list[float]:
    lo, hi = lo - BOX_PADDING, hi + BOX_PADDING
    c, h = (lo + hi) / 2, (hi - lo) / 2
    return [float(v) for v in (*c, h[0], 0, 0, 0, h[1], 0, 0, 0, h[2])]


def _tileset_json(root: TileNode, boxes, tiles_doc, frame: EnuFrame, largest: float):
    def tile(node: TileNode) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        # a tile without content (over far-apart children) bounds its children only
        lo, hi = boxes.get(node.key, (np.full(3, np.inf), np.full(3, -np.inf)))
        kids = []
        for child in node.children:
            doc, clo, chi = tile(child)
            kids.append(doc)
            lo, hi = np.minimum(lo, clo), np.maximum(hi, chi)
        if not np.isfinite(lo).all():  # no feature at all: a root (3D Tiles needs one) at
            lo, hi = np.zeros(3), np.zeros(3)  # the frame's origin
        doc: dict[str, Any] = {
            # box in the local ENU frame of the root transform (children inherit it)
            "boundingVolume": {"box": _box(lo, hi)},
            "geometricError": round(node.geometric_error, 3),
            "refine": "ADD",
        }
        if node.key in tiles_doc:
            doc["content"] = {"uri": tiles_doc[node.key]["uri"]}
        if kids:
            doc["children"] = kids
        return doc, lo, hi

    root_doc, _, _ = tile(root)
    root_doc["transform"] = frame.matrix()
    return {
        "asset": {"version": "1.1", "generator": "twinbase mesh tiler"},
        # Not drawing the tileset at all misses the largest feature.
        "geometricError": round(max(largest, root_doc["geometricError"]), 3),
        "root": root_doc,
    }
