"""Mesh tiles of the real CIM samples, read back and compared with the source geometry."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers_gltf import errors_of, node_available, validate_glbs
from helpers_tileset import check_tileset

from readers.cim import parse_city_file
from readers.cim.geometry import surface_area
from service.cim.mesh import to_mesh_features
from tiler.crs import FromWgs84
from tiler.frames import ecef_to_geodetic, yup_to_zup
from tiler.glb import mesh_nodes, read_accessor, read_glb, read_positions
from tiler.mesh import read_property_table, tile_features

DATA = Path(__file__).resolve().parents[1] / "data" / "cim"
SAMPLES = {
    "DH_01_subs.city.json": "EPSG:7415",
    "rotterdam_subset.json": "EPSG:7415",
    "multi_lod.json": "EPSG:7415",
    "citygml4j_lod2_buildings_v2.city.json": None,
    "lod3_building_v2.gml": None,
}


@dataclass
class TileData:
    key: str
    path: Path
    tile: dict  # the tileset.json tile
    enu: np.ndarray  # (n, 3) float64 vertex positions in the root (ENU) frame
    feature: np.ndarray  # (n,) feature id per vertex
    triangles: np.ndarray  # (m, 3)
    index_types: list[int]
    rows: list[dict]


def read_tiles(out: Path) -> tuple[dict, np.ndarray, list[TileData]]:
    """Everything a client sees: tileset.json, the root transform and every tile's content."""
    tileset = json.loads((out / "tileset.json").read_text())
    root_matrix = np.array(tileset["root"]["transform"]).reshape(4, 4).T
    tiles: list[TileData] = []

    def walk(tile: dict) -> None:
        path = out / tile["content"]["uri"]
        doc, binary = read_glb(path.read_bytes())
        ((node, matrix),) = mesh_nodes(doc)
        prims = doc["meshes"][node["mesh"]]["primitives"]
        attrs = prims[0]["attributes"]
        enu = yup_to_zup(read_positions(doc, binary, prims[0], matrix))
        fid = read_accessor(doc, binary, attrs["_FEATURE_ID_0"]).astype(np.int64)
        tris = np.concatenate([read_accessor(doc, binary, p["indices"]).astype(np.int64)
                               for p in prims]).reshape(-1, 3)
        types = [doc["accessors"][p["indices"]]["componentType"] for p in prims]
        tiles.append(TileData(path.name, path, tile, enu, fid, tris, types,
                              read_property_table(doc, binary)))
        for child in tile.get("children", []):
            walk(child)

    walk(tileset["root"])
    return tileset, root_matrix, tiles


def check_tileset_rules(tileset: dict, tiles: list[TileData]) -> None:
    """3D Tiles 1.1 rules the field notes insist on."""
    assert tileset["asset"]["version"] == "1.1"
    assert "gltfUpAxis" not in tileset["asset"]
    assert len(tileset["root"]["transform"]) == 16
    assert tileset["geometricError"] >= tileset["root"]["geometricError"]
    by_tile = {id(t.tile): t for t in tiles}

    def inside(box_a: list[float], box_b: list[float]) -> bool:
        ca, cb = np.array(box_a[:3]), np.array(box_b[:3])
        ha = np.array([box_a[3], box_a[7], box_a[11]])
        hb = np.array([box_b[3], box_b[7], box_b[11]])
        return bool(((ca - ha) >= (cb - hb) - 1e-6).all() and ((ca + ha) <= (cb + hb) + 1e-6).all())

    def walk(tile: dict) -> None:
        box = tile["boundingVolume"]["box"]
        assert box[4:7] == [0, 0, 0] and box[8:11] == [0, 0, 0]  # axis-aligned in ENU
        data = by_tile[id(tile)]
        c, h = np.array(box[:3]), np.array([box[3], box[7], box[11]])
        assert (np.abs(data.enu - c) <= h + 1e-6).all(), "content outside its bounding box"
        assert tile["refine"] == "ADD"
        for child in tile.get("children", []):
            assert inside(child["boundingVolume"]["box"], box), "child box outside parent"
            assert child["geometricError"] <= tile["geometricError"]
            walk(child)
        if not tile.get("children"):
            assert tile["geometricError"] == 0

    walk(tileset["root"])


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = {}
    for name, crs in SAMPLES.items():
        parsed = parse_city_file(DATA / name, crs)
        # A small triangle budget so the samples make real hierarchies.
        dest = tmp_path_factory.mktemp(name.replace(".", "_"))
        result = tile_features(to_mesh_features(parsed.objects), dest,
                               max_triangles_per_tile=400)
        out[name] = (parsed, result, dest, *read_tiles(dest))
    return out


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_feature_count_and_picking(tiled: dict, name: str) -> None:
    parsed, result, _, tileset, _, tiles = tiled[name]
    with_geometry = [o.id for o in parsed.objects if o.has_geometry]
    seen: list[str] = []
    for t in tiles:
        assert (t.feature >= 0).all() and (t.feature < len(t.rows)).all()
        # every row is picked by some vertex, and maps back to a source id
        assert set(np.unique(t.feature)) == set(range(len(t.rows)))
        seen += [r["id"] for r in t.rows]
    assert sorted(seen) == sorted(with_geometry)  # each feature in exactly one tile
    assert result.features == len(with_geometry)
    by_id = {o.id: o for o in parsed.objects}
    for t in tiles:
        for row in t.rows:
            obj = by_id[row["id"]]
            assert row["type"] == obj.type and row["lod"] == obj.lod
            assert row["height"] == pytest.approx(obj.height, abs=1e-3)
    check_tileset_rules(tileset, tiles)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_vertices_within_1cm_and_areas_within_0_1_percent(tiled: dict, name: str) -> None:
    parsed, _, _, _, matrix, tiles = tiled[name]
    back = FromWgs84(parsed.report.source_crs)
    by_id = {o.id: o for o in parsed.objects}
    for t in tiles:
        ecef = t.enu @ matrix[:3, :3].T + matrix[:3, 3]
        geo = ecef_to_geodetic(ecef)
        src = np.column_stack(back(geo[:, 0], geo[:, 1], geo[:, 2]))
        a, b, c = (t.enu[t.triangles[:, i]] for i in range(3))
        tri_area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
        tri_feature = t.feature[t.triangles[:, 0]]
        for row_no, row in enumerate(t.rows):
            obj = by_id[row["id"]]
            source = np.concatenate([r for s in obj.surfaces for r in s.source_rings])
            mine = src[t.feature == row_no]
            worst = 0.0
            for i in range(0, len(mine), 256):
                d2 = ((mine[i:i + 256, None, :] - source[None, :, :]) ** 2).sum(axis=2)
                worst = max(worst, float(np.sqrt(d2.min(axis=1)).max()))
            assert worst < 0.01, f"{obj.id}: a vertex lies {worst:.4f} m from the source"
            want = sum(surface_area(s.source_rings) for s in obj.surfaces)
            got = float(tri_area[tri_feature == row_no].sum())
            assert got == pytest.approx(want, rel=1e-3), obj.id


@pytest.mark.skipif(not node_available(), reason="node and gltf-validator are not installed")
def test_glb_validator_zero_errors(tiled: dict) -> None:
    paths = [t.path for entry in tiled.values() for t in entry[5]]
    reports = validate_glbs(paths)
    bad = {p: errors_of(r) for p, r in reports.items() if r["errors"]}
    assert not bad


def test_semantic_colours(tiled: dict) -> None:
    _, _, _, _, _, tiles = tiled["citygml4j_lod2_buildings_v2.city.json"]
    doc, binary = read_glb(tiles[0].path.read_bytes())
    prim = doc["meshes"][0]["primitives"][0]
    acc = doc["accessors"][prim["attributes"]["COLOR_0"]]
    assert acc["normalized"] and acc["componentType"] == 5121
    colors = read_accessor(doc, binary, prim["attributes"]["COLOR_0"])
    normals = read_accessor(doc, binary, prim["attributes"]["NORMAL"], dequantize=True)
    up = yup_to_zup(normals)[:, 2]
    roof = colors[up > 0.3]
    ground = colors[up < -0.99]
    assert (roof[:, 0] > roof[:, 1]).all()  # roofs red-ish
    assert (ground[:, :3] < 100).all()  # ground dark grey
    assert "CESIUM_RTC" not in doc.get("extensionsUsed", [])
    assert {"EXT_mesh_features", "EXT_structural_metadata"} <= set(doc["extensionsUsed"])


def test_no_temporary_files_left(tiled: dict) -> None:
    for entry in tiled.values():
        leftovers = [p for p in os.listdir(entry[2]) if p.startswith(".")]
        assert not leftovers


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_shared_tileset_checker(tiled: dict, name: str) -> None:
    out = tiled[name][2]
    assert check_tileset(out / "tileset.json") == []


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_quantized_vertices_within_half_a_step_of_the_input(tiled: dict, name: str) -> None:
    """The real samples against the tiler's own input in the tileset frame (no CRS round
    trip, so the bound is the encoding's alone): a tile is quantized exactly when its box
    allows a step within MAX_POSITION_STEP, and its vertices are then within half a step
    on each axis; the others keep float32 positions, within float32 rounding."""
    from scipy.spatial import cKDTree

    from tiler.frames import EnuFrame, geodetic_to_ecef
    from tiler.mesh.content import MAX_POSITION_STEP

    parsed, result, _, _, _, tiles = tiled[name]
    frame = EnuFrame(**result.manifest["frame"])
    source = {}
    for f in to_mesh_features(parsed.objects):
        geo = np.concatenate([r for p in f.polygons for r in p.rings]
                             + [m.positions for m in f.meshes])
        source[f.id] = frame.from_ecef(geodetic_to_ecef(geo[:, 0], geo[:, 1], geo[:, 2]))
    for t in tiles:
        doc, _ = read_glb(t.path.read_bytes())
        ((node, _),) = mesh_nodes(doc)
        acc = doc["accessors"][doc["meshes"][node["mesh"]]["primitives"][0]["attributes"][
            "POSITION"]]
        everything = np.concatenate([source[r["id"]] for r in t.rows])
        side = float(np.ptp(everything, axis=0).max())
        quantized = acc["componentType"] == 5123
        assert quantized == (side <= 65535 * MAX_POSITION_STEP), (t.key, side)
        if quantized:
            assert acc["normalized"] and len(set(node["scale"])) == 1
            bound = node["scale"][0] / 65535 / 2
        else:
            assert acc["componentType"] == 5126 and "scale" not in node
            # float32 relative to the node translation: half an ulp, with some margin
            offset = yup_to_zup(np.array([node["translation"]]))[0]
            bound = float(np.abs(t.enu - offset).max()) * 2.0 ** -23
        for row_no, row in enumerate(t.rows):
            d, _ = cKDTree(source[row["id"]]).query(t.enu[t.feature == row_no], p=np.inf)
            assert d.max() <= bound + 1e-9, (t.key, row["id"], d.max(), bound)


def test_samples_have_quantized_and_float32_tiles(tiled: dict) -> None:
    """The samples exercise both sides of the precision guard (district-wide tiles keep
    float32, building-sized ones are quantized); every tile needs the extension."""
    kinds = set()
    for entry in tiled.values():
        for t in entry[5]:
            doc, _ = read_glb(t.path.read_bytes())
            assert "KHR_mesh_quantization" in doc["extensionsRequired"]
            prim = doc["meshes"][0]["primitives"][0]
            kinds.add(doc["accessors"][prim["attributes"]["POSITION"]]["componentType"])
    assert kinds == {5123, 5126}
