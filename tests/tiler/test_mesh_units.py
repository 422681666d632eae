"""Mesh tiler pieces on synthetic input: triangulation, 32-bit indices, metadata, living map."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers_gltf import errors_of, node_available, property_table_issues, validate_glb
from helpers_tileset import check_tileset
from scipy.spatial import cKDTree

from tiler.frames import EnuFrame, ecef_to_geodetic, geodetic_to_ecef, yup_to_zup
from tiler.glb import (
    CHUNK_BIN,
    CHUNK_JSON,
    GLB_MAGIC,
    GltfBuilder,
    mesh_nodes,
    read_accessor,
    read_glb,
    read_positions,
)
from tiler.mesh import (
    MeshFeature,
    MeshPolygon,
    MeshTriangles,
    content,
    diff_manifests,
    read_property_table,
    tile_features,
)
from tiler.mesh.metadata import add_property_table
from tiler.mesh.triangulate import triangulate_polygons

FRAME = EnuFrame(114.25, 22.72, 40.0)  # Longgang


def _geo(enu: np.ndarray) -> np.ndarray:
    return ecef_to_geodetic(FRAME.to_ecef(np.asarray(enu, float)))


def _area(t) -> np.ndarray:
    p, tri = t.positions, t.triangles
    cr = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
    return np.bincount(t.triangle_polygon, weights=0.5 * np.linalg.norm(cr, axis=1),
                       minlength=6)


def test_triangulation_robustness() -> None:
    square = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], float)
    hole = np.array([[2, 2, 0], [2, 4, 0], [4, 4, 0], [4, 2, 0]], float)  # any orientation
    ell = np.array([[0, 0, 5], [6, 0, 5], [6, 2, 5], [2, 2, 5], [2, 6, 5], [0, 6, 5]], float)
    clockwise = square[::-1] + np.array([0, 0, 1.0])
    collinear = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], float)
    # closed ring with a repeated vertex, vertical
    wall = np.array([[0, 0, 0], [5, 0, 0], [5, 0, 3], [5, 0, 3], [0, 0, 3], [0, 0, 0]], float)
    # slightly non-planar quad (2 mm out of plane)
    warped = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0.002], [0, 4, 0]], float)
    rings = [square, hole, ell, clockwise, collinear, wall, warped]
    t = triangulate_polygons(np.concatenate(rings), np.array([len(r) for r in rings]),
                             np.array([2, 1, 1, 1, 1, 1]))
    area = _area(t)
    assert area[:4] == pytest.approx([96, 20, 100, 0])
    assert area[4] == pytest.approx(15) and area[5] == pytest.approx(16, rel=1e-6)
    assert list(t.dropped_polygons) == [3]
    # triangle winding agrees with the polygon normal (counter-clockwise around it)
    p, tri = t.positions, t.triangles
    cr = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
    assert ((cr * t.normals[tri[:, 0]]).sum(axis=1) > 0).all()
    # the clockwise square faces down, the others as wound
    poly = t.triangle_polygon
    assert (t.normals[tri[poly == 2, 0], 2] < -0.99).all()
    assert (t.normals[tri[poly == 0, 0], 2] > 0.99).all()


def _cube(centre: np.ndarray, size: float = 2.0, frame: EnuFrame | None = None
          ) -> list[MeshPolygon]:
    at = frame or FRAME
    c = np.asarray(centre, float)
    h = size / 2
    v = np.array([[x, y, z] for z in (-h, h) for y in (-h, h) for x in (-h, h)]) + c
    faces = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (1, 3, 7, 5), (3, 2, 6, 7), (2, 0, 4, 6)]
    kinds = ["GroundSurface", "RoofSurface", "WallSurface", "WallSurface", "WallSurface",
             "WallSurface"]
    return [MeshPolygon([ecef_to_geodetic(at.to_ecef(v[list(f)]))], k)
            for f, k in zip(faces, kinds, strict=True)]


def test_32_bit_indices_when_a_tile_has_more_than_65535_vertices(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    centres = rng.uniform(-200, 200, (3000, 3)) * [1, 1, 0]
    feats = [MeshFeature(f"c{i}", {"n": i}, _cube(c)) for i, c in enumerate(centres)]
    res = tile_features(feats, tmp_path, max_triangles_per_tile=1_000_000)
    assert res.tiles == 1 and res.vertices == 3000 * 24 > 65535
    (tile,) = res.manifest["tiles"].values()
    doc, binary = read_glb((tmp_path / tile["uri"]).read_bytes())
    prim = doc["meshes"][0]["primitives"][0]
    assert doc["accessors"][prim["indices"]]["componentType"] == 5125  # UNSIGNED_INT
    idx = read_accessor(doc, binary, prim["indices"])
    assert idx.max() == res.vertices - 1
    # every triangle joins vertices of one feature, and the total area is right
    fid = read_accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"])
    tri = idx.reshape(-1, 3)
    assert (fid[tri[:, 0]] == fid[tri[:, 1]]).all() and (fid[tri[:, 0]] == fid[tri[:, 2]]).all()
    ((_, matrix),) = mesh_nodes(doc)
    pos = read_positions(doc, binary, prim, matrix)
    cr = np.cross(pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]])
    assert 0.5 * np.linalg.norm(cr, axis=1).sum() == pytest.approx(3000 * 24, rel=1e-4)
    if node_available():
        assert not errors_of(validate_glb(tmp_path / tile["uri"]))
    small = tile_features(feats[:10], tmp_path / "small")
    (tile,) = small.manifest["tiles"].values()
    doc, _ = read_glb((tmp_path / "small" / tile["uri"]).read_bytes())
    assert doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]["componentType"] == 5123


def test_property_table_types_round_trip() -> None:
    rows = [
        {"id": "a", "h": 1.5, "n": 3, "ok": True, "tags": ["x", "y"], "s": "ä", "part": None},
        {"id": "b", "h": None, "n": 4, "ok": False, "tags": {"k": 1}, "s": "", "part": 7},
    ]
    b = GltfBuilder()
    add_property_table(b, rows)
    doc, binary = read_glb(b.to_glb())
    props = doc["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["feature"][
        "properties"]
    assert props["h"]["componentType"] == "FLOAT64" and "noData" in props["h"]
    assert props["n"]["componentType"] == "INT32" and props["ok"]["type"] == "BOOLEAN"
    assert props["tags"]["type"] == "STRING" and props["id"]["required"]
    back = read_property_table(doc, binary)
    assert back[0]["h"] == 1.5 and back[1]["h"] is None and back[1]["part"] == 7
    assert back[0]["tags"] == '["x", "y"]' and back[0]["s"] == "ä" and back[1]["ok"] is False
    views = [doc["bufferViews"][c["values"]] for c in
             doc["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["properties"]
             .values()]
    assert all(v["byteOffset"] % 8 == 0 for v in views)


def test_property_table_byte_lengths_when_every_string_is_empty() -> None:
    # Delft's 3dfier output: names, parents and end dates empty in every object of a tile
    rows = [{"id": "a", "name": None, "parent_id": "", "end": None, "kind": "x"},
            {"id": "b", "name": None, "parent_id": "", "end": "", "kind": ""},
            {"id": "c", "name": None, "parent_id": "", "end": None, "kind": "yz"}]
    b = GltfBuilder()
    add_property_table(b, rows)
    doc, binary = read_glb(b.to_glb())
    assert property_table_issues(doc, binary) == []
    ext = doc["extensions"]["EXT_structural_metadata"]
    props = ext["schema"]["classes"]["feature"]["properties"]
    # no text at all: no column (a values view can be neither empty nor longer than the
    # offsets say), and the class says what every row holds
    assert set(ext["propertyTables"][0]["properties"]) == {"id", "kind"}
    assert props["parent_id"] == {"name": "parent_id", "type": "STRING", "default": "",
                                  "required": False}
    assert "default" not in props["name"] and not props["name"]["required"]
    assert read_property_table(doc, binary) == [
        {"id": "a", "name": None, "parent_id": "", "end": None, "kind": "x"},
        {"id": "b", "name": None, "parent_id": "", "end": None, "kind": ""},
        {"id": "c", "name": None, "parent_id": "", "end": None, "kind": "yz"}]


def test_pre_triangulated_meshes_and_translucent_classes(tmp_path: Path) -> None:
    enu = np.array([[0, 0, 0], [3, 0, 0], [3, 0, 2], [0, 0, 2]], float)
    glass = MeshTriangles(_geo(enu), np.array([[0, 1, 2], [0, 2, 3]]), "IfcWindow")
    quads = np.array([[0, 1, 2], [0, 2, 3]])
    wall = MeshTriangles(_geo(enu + np.array([0, 1.0, 0])), quads, "IfcWall")
    feats = [MeshFeature("w1", {"class": "IfcWindow"}, meshes=[glass]),
             MeshFeature("w2", {"class": "IfcWall"}, meshes=[wall])]
    res = tile_features(feats, tmp_path, palette={"IfcWindow": (150, 200, 230, 90)})
    (tile,) = res.manifest["tiles"].values()
    doc, _ = read_glb((tmp_path / tile["uri"]).read_bytes())
    prims = doc["meshes"][0]["primitives"]
    assert len(prims) == 2  # opaque + translucent: two draw calls for the whole tile
    assert [doc["materials"][p["material"]].get("alphaMode") for p in prims] == [None, "BLEND"]
    assert res.triangles == 4
    if node_available():
        assert not errors_of(validate_glb(tmp_path / tile["uri"]))


def test_living_map_rewrites_only_affected_tiles(tmp_path: Path) -> None:
    grid = [(x, y) for x in range(-300, 301, 40) for y in range(-300, 301, 40)]
    feats = [MeshFeature(f"b{i}", {"v": 1}, _cube(np.array([x, y, 0]), 6))
             for i, (x, y) in enumerate(grid)]
    v1 = tile_features(feats, tmp_path / "v1", max_triangles_per_tile=400)
    assert v1.tiles > 4 and sorted(v1.diff.added) == sorted(v1.manifest["tiles"])
    # one building changes an attribute, one is demolished
    feats2 = list(feats)
    feats2[0] = MeshFeature("b0", {"v": 2}, feats[0].polygons)
    del feats2[-1]
    v2 = tile_features(feats2, tmp_path / "v2", max_triangles_per_tile=400,
                       previous_manifest=v1.manifest, previous_dir=tmp_path / "v1")
    diff = diff_manifests(v1.manifest, v2.manifest)
    assert diff.changed and len(diff.rewritten) + len(diff.removed) <= 4
    assert len(diff.unchanged) >= v1.tiles - 4
    assert v2.manifest["frame"] == v1.manifest["frame"]
    for key in diff.unchanged:  # hard-linked, not written again
        uri = v2.manifest["tiles"][key]["uri"]
        assert os.stat(tmp_path / "v1" / uri).st_ino == os.stat(tmp_path / "v2" / uri).st_ino
    # the same input gives byte-identical tiles
    v3 = tile_features(feats2, tmp_path / "v3", max_triangles_per_tile=400,
                       previous_manifest=v2.manifest)
    assert not diff_manifests(v2.manifest, v3.manifest).rewritten
    for version in ("v1", "v2", "v3"):
        assert check_tileset(tmp_path / version / "tileset.json") == []


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    cube = _cube(np.zeros(3))
    with pytest.raises(ValueError, match="duplicate feature id"):
        tile_features([MeshFeature("a", {}, cube), MeshFeature("a", {}, cube)], tmp_path)


def _box_mesh(centre: np.ndarray, cls: str = "WallSurface") -> MeshTriangles:
    """A 2 m box as a ready triangle mesh (8 shared corners, 12 triangles), as IFC gives."""
    v = np.array([[x, y, z] for z in (0, 2) for y in (-1, 1) for x in (-1, 1)], float) + centre
    quads = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (1, 3, 7, 5), (3, 2, 6, 7), (2, 0, 4, 6)]
    tris = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return MeshTriangles(_geo(v), tris, cls)


def test_triangle_meshes_are_welded_per_flat_face_and_feature(tmp_path: Path) -> None:
    """One vertex per corner of each flat face (4 per box side, not 6), never shared between
    features, even where two features' corners coincide; the surface is unchanged."""
    feats = [MeshFeature("a", {"n": 0}, meshes=[_box_mesh(np.zeros(3))]),
             MeshFeature("b", {"n": 1}, meshes=[_box_mesh(np.array([2.0, 0, 0]))])]
    res = tile_features(feats, tmp_path)
    (tile,) = res.manifest["tiles"].values()
    doc, binary = read_glb((tmp_path / tile["uri"]).read_bytes())
    prim = doc["meshes"][0]["primitives"][0]
    ((_, matrix),) = mesh_nodes(doc)
    pos = read_positions(doc, binary, prim, matrix)
    fid = read_accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"])
    nrm = read_accessor(doc, binary, prim["attributes"]["NORMAL"], dequantize=True)
    tri = read_accessor(doc, binary, prim["indices"]).reshape(-1, 3)
    assert len(pos) == 2 * 6 * 4 and len(tri) == 2 * 12
    assert np.bincount(fid.astype(int)).tolist() == [24, 24]
    assert (fid[tri[:, 0]] == fid[tri[:, 1]]).all() and (fid[tri[:, 0]] == fid[tri[:, 2]]).all()
    cr = np.cross(pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]])
    assert 0.5 * np.linalg.norm(cr, axis=1).sum() == pytest.approx(2 * 24, rel=1e-5)
    # each triangle's stored normal is its face's
    face_n = cr / np.linalg.norm(cr, axis=1, keepdims=True)
    assert np.abs(np.abs((face_n * nrm[tri[:, 0]]).sum(axis=1)) - 1).max() < 1e-3
    assert not errors_of(validate_glb(tmp_path / tile["uri"]))


def test_layout_puts_higher_priority_features_first() -> None:
    """Priority beats size: the root takes the small high-priority features before the large
    low-priority ones, which go to the children; within a priority, larger first."""
    from tiler.mesh.layout import build_quadtree

    rng = np.random.default_rng(3)
    n = 400
    centres = np.c_[rng.uniform(-90, 90, (n, 2)), np.zeros(n)]
    priority = (np.arange(n) < 100).astype(np.int64)  # the first 100 are "envelope"
    sizes = np.where(priority == 1, 1.0, 10.0) + rng.uniform(0, 0.5, n)
    root = build_quadtree(centres, sizes, np.full(n, 100), np.arange(n).astype(str), 100.0,
                          max_triangles=4000, priority=priority)
    assert root.children and len(root.features) == 10  # a quarter of 4000 triangles
    assert (priority[root.features] == 1).all()
    top = np.sort(sizes[priority == 1])[::-1][:10]
    assert np.allclose(np.sort(sizes[root.features])[::-1], top)
    without = build_quadtree(centres, sizes, np.full(n, 100), np.arange(n).astype(str), 100.0,
                             max_triangles=4000)
    assert (priority[without.features] == 0).all()  # by size alone the large ones lead


def _input_enu(features: list[MeshFeature], manifest: dict) -> dict[str, np.ndarray]:
    """Each feature's input vertices in the tileset's ENU frame, as the tiler computes them."""
    frame = EnuFrame(**manifest["frame"])
    out = {}
    for f in features:
        geo = np.concatenate([r for p in f.polygons for r in p.rings]
                             + [m.positions for m in f.meshes])
        out[f.id] = frame.from_ecef(geodetic_to_ecef(geo[:, 0], geo[:, 1], geo[:, 2]))
    return out


def _nodes(path: Path) -> list[tuple[dict, dict, np.ndarray, np.ndarray]]:
    """Per mesh node of a tile: (node, POSITION accessor, ENU positions, feature row)."""
    doc, binary = read_glb(path.read_bytes())
    out = []
    for node, matrix in mesh_nodes(doc):
        prim = doc["meshes"][node["mesh"]]["primitives"][0]
        enu = yup_to_zup(read_positions(doc, binary, prim, matrix))
        fid = read_accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"]).astype(int)
        out.append((node, doc["accessors"][prim["attributes"]["POSITION"]], enu, fid))
    return out


def _worst_axis_error(enu: np.ndarray, fid: np.ndarray, ids: list[str],
                      source: dict[str, np.ndarray]) -> float:
    """Largest per-axis distance from a written vertex to the nearest input vertex of its
    feature (Chebyshev, so that the input vertex it came from is the one measured)."""
    worst = 0.0
    for row, gid in enumerate(ids):
        if (fid == row).any():  # a node holds only some of the tile's features
            d, _ = cKDTree(source[gid]).query(enu[fid == row], p=np.inf)
            worst = max(worst, float(d.max()))
    return worst


def _glb_bytes(doc: dict, binary: bytes) -> bytes:
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    return b"".join([struct.pack("<III", GLB_MAGIC, 2, 28 + len(text) + len(binary)),
                     struct.pack("<II", len(text), CHUNK_JSON), text,
                     struct.pack("<II", len(binary), CHUNK_BIN), binary])


def test_quantized_tile_structure_size_and_validity(tmp_path: Path, monkeypatch) -> None:
    """A building-sized tile: KHR_mesh_quantization required, 16-bit positions (stride 8)
    decoded by a uniform node scale and translation, 8-bit normals (stride 4), within half a
    step of the input, valid, and smaller than with float32 positions."""
    rng = np.random.default_rng(7)
    feats = [MeshFeature(f"b{i}", {"n": i}, meshes=[_box_mesh(c)])
             for i, c in enumerate(rng.uniform(-20, 20, (40, 3)) * [1, 1, 0.2])]
    feats.append(MeshFeature("roof", {"n": 99}, _cube(np.array([3.0, -4.0, 9.0]), 5)))
    res = tile_features(feats, tmp_path / "q")
    (tile,) = res.manifest["tiles"].values()
    path = tmp_path / "q" / tile["uri"]
    doc, _ = read_glb(path.read_bytes())
    assert "KHR_mesh_quantization" in doc["extensionsUsed"]
    assert "KHR_mesh_quantization" in doc["extensionsRequired"]
    ((node, acc, enu, fid),) = _nodes(path)
    assert acc["componentType"] == 5123 and acc["normalized"] and acc["type"] == "VEC3"
    assert set(node) == {"mesh", "translation", "scale"}
    assert len(set(node["scale"])) == 1  # uniform: normals keep their directions
    step = node["scale"][0] / 65535
    assert 0 < step <= content.MAX_POSITION_STEP
    rows = read_property_table(*read_glb(path.read_bytes()))
    worst = _worst_axis_error(enu, fid, [r["id"] for r in rows],
                              _input_enu(feats, res.manifest))
    assert worst <= step / 2 + 1e-9

    prim = doc["meshes"][0]["primitives"][0]
    views = {name: doc["bufferViews"][doc["accessors"][a]["bufferView"]]
             for name, a in prim["attributes"].items()}
    nrm = doc["accessors"][prim["attributes"]["NORMAL"]]
    assert nrm["componentType"] == 5120 and nrm["normalized"]
    assert views["POSITION"]["byteStride"] == 8 and views["NORMAL"]["byteStride"] == 4
    for name, a in prim["attributes"].items():  # glTF: 4-byte aligned attribute elements
        assert views[name]["byteOffset"] % 4 == 0 and views[name].get("byteStride", 4) % 4 == 0
        assert views[name]["byteLength"] >= views[name].get("byteStride", 0) * doc[
            "accessors"][a]["count"]
    n = acc["count"]
    per_vertex = sum(v["byteLength"] for v in views.values()) / n
    float32_vec3 = 3 * np.dtype(np.float32).itemsize  # POSITION and NORMAL before
    before = per_vertex - views["POSITION"]["byteLength"] / n - views["NORMAL"]["byteLength"] / n \
        + 2 * float32_vec3
    assert per_vertex < before

    # the same tile past the precision guard: float32 positions, a larger file
    monkeypatch.setattr(content, "MAX_POSITION_STEP", 0.0)
    plain = tile_features(feats, tmp_path / "f")
    (ftile,) = plain.manifest["tiles"].values()
    ((fnode, facc, _, _),) = _nodes(tmp_path / "f" / ftile["uri"])
    assert facc["componentType"] == 5126 and "scale" not in fnode
    assert ftile["vertices"] == tile["vertices"]  # welding does not depend on the storage
    assert tile["bytes"] < ftile["bytes"]

    if node_available():
        assert not errors_of(validate_glb(path))
        # the validator reads the quantized attributes: without the extension they are errors
        doc, binary = read_glb(path.read_bytes())
        for key in ("extensionsUsed", "extensionsRequired"):
            doc[key].remove("KHR_mesh_quantization")
            doc[key] or doc.pop(key)
        assert errors_of(validate_glb(_glb_bytes(doc, binary)))


def test_precision_guard_keeps_float32_for_large_boxes(tmp_path: Path) -> None:
    """Past 65535 steps of MAX_POSITION_STEP a node keeps float32 positions (still with byte
    normals, so the extension stays required); far-apart clusters are quantized each on its
    own small box."""
    limit = 65535 * content.MAX_POSITION_STEP
    cases = {
        "wide": [np.zeros(3), np.array([limit + 5.0, 0.0, 0.0])],  # one node, too wide
        "far": [np.zeros(3), np.array([3 * content.CLUSTER_SIZE, 0.0, 0.0])],  # two nodes
    }
    for name, centres in cases.items():
        feats = [MeshFeature(f"{name}{i}", {"n": i}, meshes=[_box_mesh(c)])
                 for i, c in enumerate(centres)]
        # one tile on purpose (far-apart places get tiles of their own by default)
        res = tile_features(feats, tmp_path / name, max_tile_width_m=1e9)
        (tile,) = res.manifest["tiles"].values()
        path = tmp_path / name / tile["uri"]
        doc, binary = read_glb(path.read_bytes())
        assert "KHR_mesh_quantization" in doc["extensionsRequired"]
        ids = [r["id"] for r in read_property_table(doc, binary)]
        source = _input_enu(feats, res.manifest)
        nodes = _nodes(path)
        for node, acc, enu, fid in nodes:
            side = float(np.ptp(enu, axis=0).max())
            if name == "wide":
                assert side > limit
                assert acc["componentType"] == 5126 and "scale" not in node
                # float32 relative to the node translation: half an ulp, with some margin
                offset = yup_to_zup(np.array([node["translation"]]))[0]
                bound = float(np.abs(enu - offset).max()) * 2.0 ** -23
                assert _worst_axis_error(enu, fid, ids, source) <= bound
            else:
                assert side < limit
                assert acc["componentType"] == 5123 and acc["normalized"]
                step = node["scale"][0] / 65535
                assert _worst_axis_error(enu, fid, ids, source) <= step / 2 + 1e-9
        assert len(nodes) == (1 if name == "wide" else 2)
        assert check_tileset(tmp_path / name / "tileset.json") == []
        if node_available():
            assert not errors_of(validate_glb(path))


def test_normal_codes_are_unit_length_for_the_validator() -> None:
    """Byte normals within NORMAL_LENGTH_TOLERANCE of unit length (the validator allows
    0.00674) and within a degree of the input, including where plain rounding is too long."""
    rng = np.random.default_rng(11)
    nrm = rng.normal(size=(200_000, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    plain = np.abs(np.linalg.norm(np.rint(nrm * 127), axis=1) / 127 - 1)
    assert (plain > content.NORMAL_LENGTH_TOLERANCE).any()  # the case the search is for
    codes = content.quantize_normals(nrm)
    assert codes.dtype == np.int8 and (codes >= -127).all()
    decoded = codes / 127.0
    length = np.linalg.norm(decoded, axis=1)
    assert np.abs(length - 1).max() <= content.NORMAL_LENGTH_TOLERANCE
    cos = (decoded * nrm).sum(axis=1) / length
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0


def test_far_apart_places_get_tiles_of_their_own(tmp_path: Path) -> None:
    """Buildings in Delft and in Zurich (about 640 km apart), under the triangle budget of a
    single tile: no tile with content is wider than a few kilometres (it was one tile of
    hundreds of kilometres that a client had to load whole), every feature is in exactly one
    tile, and the tileset passes the official validator."""
    from helpers_3dtiles_validator import assert_no_errors

    feats = []
    for city, (lon, lat) in {"delft": (4.36, 52.01), "zurich": (8.54, 47.37)}.items():
        frame = EnuFrame(lon, lat, 0.0)
        for i in range(20):
            centre = np.array([(i % 5) * 30.0, (i // 5) * 30.0, 5.0])
            feats.append(MeshFeature(f"{city}-{i}", {"n": i}, _cube(centre, 10.0, frame)))
    res = tile_features(feats, tmp_path, max_triangles_per_tile=100_000)
    placed = [f for t in res.manifest["tiles"].values() for f in t["features"]]
    assert sorted(placed) == sorted(f.id for f in feats)
    doc = json.loads((tmp_path / "tileset.json").read_text())
    widths = []

    def walk(tile: dict) -> None:
        if "content" in tile:
            box = np.array(tile["boundingVolume"]["box"])
            widths.append(2 * max(np.linalg.norm(box[3:6]), np.linalg.norm(box[6:9])))
        for child in tile.get("children", []):
            walk(child)

    walk(doc["root"])
    assert "content" not in doc["root"]  # the root spans both cities: only children draw
    assert len(widths) >= 2 and max(widths) < 5000, widths
    assert_no_errors(tmp_path / "tileset.json")
