"""Every CIM sample, tiled, passes the official CesiumGS 3D Tiles validator with no error:
tileset JSON, bounding-volume containment, glb content and its EXT_structural_metadata
property tables (byte lengths, offsets, alignment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_3dtiles_validator import assert_no_errors
from helpers_gltf import property_table_issues

from readers.cim import parse_city_file
from service.cim.mesh import to_mesh_features
from tiler.glb import read_glb
from tiler.mesh import tile_features

DATA = Path(__file__).resolve().parents[1] / "data" / "cim"
SAMPLES = {
    # Delft, 570 objects of 3dfier: names, parents, end dates empty in whole tiles
    "3dfier_testarea_lod1.json": "EPSG:7415",
    "DH_01_subs.city.json": "EPSG:7415",
    "rotterdam_subset.json": "EPSG:7415",
    "multi_lod.json": "EPSG:7415",
    "citygml4j_lod2_buildings_v2.city.json": None,
    "lod3_building_v2.gml": None,
    "citygml4j_lod4_building_v2.gml": None,  # rooms, furniture and a TIN relief
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_cim_tileset_passes_the_official_validator(tmp_path: Path, name: str) -> None:
    parsed = parse_city_file(DATA / name, SAMPLES[name])
    # a small triangle budget, so that the samples make hierarchies of several tiles
    result = tile_features(to_mesh_features(parsed.objects), tmp_path / "out",
                           max_triangles_per_tile=400)
    assert result.tiles >= 1
    for glb in sorted((tmp_path / "out").glob("tiles/*.glb")):
        assert property_table_issues(*read_glb(glb.read_bytes())) == [], glb.name
    report = assert_no_errors(tmp_path / "out" / "tileset.json")
    assert report["numWarnings"] == 0, report["issues"]
