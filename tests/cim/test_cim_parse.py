"""CityJSON / CityGML parsing without a database: real samples, CRS handling, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from helpers_cim_variants import LOD4, TIN_ID, lod4_with_unsupported_relief

from readers.cim import CityCrsError, CityFileError, parse_city_file
from readers.cim.geometry import surface_area

DATA = Path(__file__).resolve().parents[1] / "data" / "cim"

# file -> (crs to give, objects in the file, objects with geometry, highest LoD)
SAMPLES = {
    "DH_01_subs.city.json": ("EPSG:7415", 12, 9, "2"),
    "rotterdam_subset.json": ("EPSG:7415", 16, 16, "2"),
    "multi_lod.json": ("EPSG:7415", 10, 10, "2.2"),
    "citygml4j_lod2_buildings_v2.city.json": (None, 100, 100, "2"),
    "lod3_building_v2.gml": (None, 2, 2, "3"),
}


def _json_count(name: str) -> int:
    return len(json.loads((DATA / name).read_text())["CityObjects"])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_parse_with_counts(name: str) -> None:
    crs, total, with_geom, lod = SAMPLES[name]
    result = parse_city_file(DATA / name, crs)
    if name.endswith(".json"):
        assert total == _json_count(name)
    assert len(result.objects) == total
    assert sum(o.has_geometry for o in result.objects) == with_geom
    assert max((o.lod for o in result.objects if o.lod), key=float) == lod
    for obj in result.objects:
        for s in obj.surfaces:
            assert len(s.rings) == len(s.source_rings)
            for geo, src in zip(s.rings, s.source_rings, strict=True):
                assert geo.shape == src.shape and geo.shape[1] == 3 and len(geo) >= 3
                assert np.isfinite(geo).all()


def test_dutch_files_need_a_crs() -> None:
    with pytest.raises(CityCrsError, match="declares no CRS"):
        parse_city_file(DATA / "rotterdam_subset.json")


def test_nap_heights_are_lifted_by_egm96() -> None:
    result = parse_city_file(DATA / "DH_01_subs.city.json", "EPSG:7415")
    assert result.report.crs == "EPSG:7415" and result.report.crs_source == "given"
    assert "EGM96" in result.report.height_note
    lift = np.concatenate([r[:, 2] - s[:, 2] for o in result.objects for f in o.surfaces
                           for r, s in zip(f.rings, f.source_rings, strict=True)])
    assert lift.min() > 43 and lift.max() < 48
    lon, lat = result.objects[0].surfaces[0].rings[0][0, :2]
    assert 4.2 < lon < 4.4 and 52.0 < lat < 52.2  # Den Haag


def test_given_crs_wins_over_the_file() -> None:
    # Same data read as ellipsoidal heights: no geoid is applied.
    result = parse_city_file(DATA / "citygml4j_lod2_buildings_v2.city.json", "EPSG:3068")
    assert result.report.crs_source == "given"
    assert "no geoid" in result.report.height_note


def test_citygml_compound_crs_semantics_and_parents() -> None:
    result = parse_city_file(DATA / "lod3_building_v2.gml")
    assert result.report.format == "CityGML" and result.report.version == "2.0"
    assert result.report.crs == "EPSG:3068+EPSG:5783"
    assert "DHHN92" in result.report.height_note
    building = next(o for o in result.objects if o.type == "Building")
    install = next(o for o in result.objects if o.type == "BuildingInstallation")
    assert install.parent_id == building.id and install.id in building.children
    kinds = {s.semantic for s in building.surfaces}
    assert {"RoofSurface", "WallSurface", "GroundSurface", "Window", "Door"} <= kinds
    assert building.name == "Teststreet3"
    # 3,092 polygons in the file: the ones with zero area are reported and dropped.
    n = len(building.surfaces) + len(install.surfaces)
    assert n + 10 == 3092
    assert any(p.object_id == building.id and "zero area" in p.reason for p in result.problems)


def test_multi_lod_keeps_other_lods() -> None:
    result = parse_city_file(DATA / "multi_lod.json", "EPSG:7415")
    obj = result.objects[0]
    assert obj.lod == "2.2" and set(obj.other_lods) == {"1.2", "1.3"}


def test_height_footprint_and_exports() -> None:
    result = parse_city_file(DATA / "citygml4j_lod2_buildings_v2.city.json")
    obj = result.objects[0]
    assert obj.height == 11.0  # measuredHeight wins
    fp = obj.footprint
    assert fp.is_valid and fp.area > 0
    lon, lat = fp.centroid.x, fp.centroid.y
    assert 13.0 < lon < 13.1 and 52.3 < lat < 52.4
    geom = shapely.from_wkb(obj.to_multipolygon_z().wkb)
    assert geom.has_z and len(geom.geoms) == len(obj.surfaces)
    ewkt = obj.to_ewkt()
    assert ewkt.startswith("SRID=4326;POLYHEDRALSURFACE Z (((")
    wkb = obj.to_wkb()
    assert wkb[:5] == b"\x01\xf7\x03\x00\x00"  # little-endian type 1015
    dh = parse_city_file(DATA / "DH_01_subs.city.json", "EPSG:7415").objects[0]
    assert dh.height == pytest.approx(9.419, abs=0.01)  # no measuredHeight: z range


# ---- small hand-made files for the bad cases -------------------------------------------------

CUBE = [[[[0, 1, 2, 3]], [[4, 7, 6, 5]], [[0, 4, 5, 1]], [[1, 5, 6, 2]], [[2, 6, 7, 3]],
         [[3, 7, 4, 0]]]]
CUBE_VERTS = [[0, 0, 0], [0, 10000, 0], [10000, 10000, 0], [10000, 0, 0],
              [0, 0, 5000], [0, 10000, 5000], [10000, 10000, 5000], [10000, 0, 5000]]


def _doc(objects: dict, version: str = "2.0", transform: bool = True, verts=None) -> dict:
    doc = {"type": "CityJSON", "version": version, "CityObjects": objects,
           "vertices": verts if verts is not None else CUBE_VERTS,
           "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/4547"}}
    if transform:
        doc["transform"] = {"scale": [0.001, 0.001, 0.001], "translate": [505000, 2510000, 50]}
    return doc


def _write(tmp_path: Path, doc: dict | str, name: str = "f.city.json") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def _solid(boundaries) -> dict:
    return {"type": "Building", "geometry": [{"type": "Solid", "lod": "2",
                                              "boundaries": boundaries}]}


def test_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(CityFileError, match="invalid JSON"):
        parse_city_file(_write(tmp_path, '{"type": "CityJSON", "version": "2.0", '))


def test_unknown_version(tmp_path: Path) -> None:
    with pytest.raises(CityFileError, match=r"unknown CityJSON version '3\.7'"):
        parse_city_file(_write(tmp_path, _doc({}, version="3.7")))


def test_missing_transform(tmp_path: Path) -> None:
    with pytest.raises(CityFileError, match="requires \"transform\""):
        parse_city_file(_write(tmp_path, _doc({}, transform=False)))
    # CityJSON 1.0 had no such rule: real coordinates are accepted.
    verts = [[505000 + x / 1000, 2510000 + y / 1000, 50 + z / 1000] for x, y, z in CUBE_VERTS]
    ok = parse_city_file(_write(tmp_path, _doc({"a": _solid(CUBE)}, "1.0", False, verts)))
    assert len(ok.objects) == 1


def test_not_a_city_file(tmp_path: Path) -> None:
    with pytest.raises(CityFileError, match="not a CityJSON or CityGML"):
        parse_city_file(_write(tmp_path, "PK\x03\x04 zip bytes", "x.json"))
    with pytest.raises(CityFileError, match="not a CityJSON file"):
        parse_city_file(_write(tmp_path, {"type": "FeatureCollection", "features": []}))
    with pytest.raises(CityFileError, match="not a CityGML file"):
        parse_city_file(_write(tmp_path, "<html><body/></html>", "x.gml"))
    with pytest.raises(CityFileError, match=r"invalid (or truncated )?XML"):
        text = (DATA / "lod3_building_v2.gml").read_text()
        parse_city_file(_write(tmp_path, text[: len(text) // 2], "cut.gml"))


def test_bad_objects_are_reported_while_the_others_load(tmp_path: Path) -> None:
    objects = {
        "good": _solid(CUBE),
        "too_few": {"type": "Building", "geometry": [{"type": "MultiSurface", "lod": "1",
                                                      "boundaries": [[[0, 1]]]}]},
        "bowtie": {"type": "Building", "geometry": [{"type": "MultiSurface", "lod": "1",
                                                     "boundaries": [[[0, 2, 1, 3]]]}]},
        "out_of_range": _solid([[[[0, 1, 2, 99]]]]),
        "not_ints": _solid([[[[0, "a", 2]]]]),
    }
    result = parse_city_file(_write(tmp_path, _doc(objects)))
    assert [o.id for o in result.objects] == ["good"]
    reasons = dict(result.problems)
    assert set(reasons) == {"too_few", "bowtie", "out_of_range", "not_ints"}
    assert "2 distinct vertices" in reasons["too_few"]
    assert "self-intersecting" in reasons["bowtie"]
    assert "vertex index 99 out of range" in reasons["out_of_range"]
    assert "integers" in reasons["not_ints"]


def test_one_bad_surface_is_dropped_or_skips_the_object(tmp_path: Path) -> None:
    bad = [CUBE[0] + [[[0, 2, 1, 3]]]]
    path = _write(tmp_path, _doc({"a": _solid(bad)}))
    kept = parse_city_file(path)
    assert len(kept.objects) == 1 and len(kept.objects[0].surfaces) == 6
    assert "dropped" in kept.problems[0].reason
    strict = parse_city_file(path, on_invalid="skip_object")
    assert not strict.objects and "skipped" in strict.problems[0].reason


def test_cityjson_sequence(tmp_path: Path) -> None:
    head = _doc({}, verts=[])
    lines = [json.dumps(head)]
    for i in range(3):
        lines.append(json.dumps({"type": "CityJSONFeature", "id": f"b{i}",
                                 "CityObjects": {f"b{i}": _solid(CUBE)}, "vertices": CUBE_VERTS}))
    result = parse_city_file(_write(tmp_path, "\n".join(lines) + "\n", "s.city.jsonl"))
    assert result.report.format == "CityJSONSeq"
    assert [o.id for o in result.objects] == ["b0", "b1", "b2"]
    area = sum(surface_area(s.source_rings) for s in result.objects[0].surfaces)
    assert area == pytest.approx(2 * 100 + 4 * 50)


def test_surface_area_with_hole() -> None:
    outer = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], float)
    hole = np.array([[2, 2, 0], [2, 4, 0], [4, 4, 0], [4, 2, 0]], float)
    assert surface_area([outer, hole]) == pytest.approx(96)


def test_geometry_instance(tmp_path: Path) -> None:
    doc = _doc({"tree": {"type": "SolitaryVegetationObject", "geometry": [
        {"type": "GeometryInstance", "template": 0, "boundaries": [0],
         "transformationMatrix": [2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1]}]}})
    doc["geometry-templates"] = {
        "templates": [{"type": "MultiSurface", "lod": "2", "boundaries": [[[0, 1, 2]]]}],
        "vertices-templates": [[0, 0, 0], [1, 0, 0], [0, 1, 1]]}
    obj = parse_city_file(_write(tmp_path, doc)).objects[0]
    src = obj.surfaces[0].source_rings[0]
    assert np.allclose(src[1] - src[0], [2, 0, 0])


CITYGML3 = """<?xml version="1.0" encoding="UTF-8"?>
<core:CityModel xmlns:core="http://www.opengis.net/citygml/3.0"
  xmlns:bldg="http://www.opengis.net/citygml/building/3.0"
  xmlns:con="http://www.opengis.net/citygml/construction/3.0"
  xmlns:gen="http://www.opengis.net/citygml/generics/3.0"
  xmlns:gml="http://www.opengis.net/gml/3.2">
 <core:cityObjectMember>
  <bldg:Building gml:id="B1">
   <gml:name>Hall</gml:name>
   <core:genericAttribute><gen:StringAttribute><gen:name>owner</gen:name>
     <gen:value>city</gen:value></gen:StringAttribute></core:genericAttribute>
   <core:boundary><con:RoofSurface gml:id="R1"><core:lod2MultiSurface>
    <gml:MultiSurface srsName="urn:ogc:def:crs:EPSG::4547"><gml:surfaceMember>
     <gml:Polygon><gml:exterior><gml:LinearRing><gml:posList srsDimension="3">
      505000 2510000 60 505010 2510000 60 505010 2510010 60 505000 2510010 60 505000 2510000 60
     </gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>
    </gml:surfaceMember></gml:MultiSurface></core:lod2MultiSurface></con:RoofSurface>
   </core:boundary>
   <bldg:buildingPart><bldg:BuildingPart gml:id="P1"/></bldg:buildingPart>
  </bldg:Building>
 </core:cityObjectMember>
</core:CityModel>
"""


def test_citygml3(tmp_path: Path) -> None:
    result = parse_city_file(_write(tmp_path, CITYGML3, "b3.gml"))
    assert result.report.version == "3.0" and result.report.crs == "EPSG:4547"
    b = next(o for o in result.objects if o.id == "B1")
    assert b.name == "Hall" and b.attributes["owner"] == "city" and b.children == ["P1"]
    assert b.surfaces[0].semantic == "RoofSurface" and len(b.surfaces[0].rings[0]) == 4
    lon, lat, _ = b.surfaces[0].rings[0][0]
    assert 114.0 < lon < 114.2 and 22.6 < lat < 22.8  # Longgang, not thousands of km away


CITYGML2_XLINK = """<?xml version="1.0" encoding="UTF-8"?>
<CityModel xmlns="http://www.opengis.net/citygml/2.0"
  xmlns:bldg="http://www.opengis.net/citygml/building/2.0"
  xmlns:gml="http://www.opengis.net/gml" xmlns:xlink="http://www.w3.org/1999/xlink">
 <cityObjectMember><bldg:Building gml:id="B2">
  <bldg:measuredHeight uom="m">7.5</bldg:measuredHeight>
  <bldg:lod2Solid><gml:Solid srsName="EPSG:4547"><gml:exterior><gml:CompositeSurface>
   <gml:surfaceMember><gml:Polygon gml:id="roof1"><gml:exterior><gml:LinearRing>
    <gml:posList>505000 2510000 60 505010 2510000 60 505010 2510010 60 505000 2510000 60
    </gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></gml:surfaceMember>
  </gml:CompositeSurface></gml:exterior></gml:Solid></bldg:lod2Solid>
  <bldg:boundedBy><bldg:RoofSurface><bldg:lod2MultiSurface><gml:MultiSurface>
   <gml:surfaceMember xlink:href="#roof1"/></gml:MultiSurface></bldg:lod2MultiSurface>
  </bldg:RoofSurface></bldg:boundedBy>
 </bldg:Building></cityObjectMember>
</CityModel>
"""


def test_citygml_semantics_through_xlinks(tmp_path: Path) -> None:
    result = parse_city_file(_write(tmp_path, CITYGML2_XLINK, "x.gml"))
    (b,) = result.objects
    assert [s.semantic for s in b.surfaces] == ["RoofSurface"]
    assert b.height == 7.5 and b.attributes["measuredHeight_uom"] == "m"
    assert not result.problems




def _file_triangles(path: Path) -> list[np.ndarray]:
    """The triangles of the file's TINs, read with lxml apart from the reader."""
    from lxml import etree

    tree = etree.parse(str(path))
    out = []
    for pos in tree.iterfind(".//{*}Triangle/{*}exterior/{*}LinearRing/{*}posList"):
        out.append(np.asarray(pos.text.split(), float).reshape(-1, 3)[:3])
    return out


def test_citygml_tin_relief_is_read_with_its_triangles() -> None:
    result = parse_city_file(LOD4)
    by_id = {o.id: o for o in result.objects}
    tin = by_id[TIN_ID]
    assert tin.type == "TINRelief" and tin.lod == "3"
    assert by_id[tin.parent_id].type == "ReliefFeature"
    want = _file_triangles(LOD4)
    assert len(want) == 9 and len(tin.surfaces) == 9
    for surface, triangle in zip(tin.surfaces, want, strict=True):
        (ring,) = surface.source_rings
        assert np.array_equal(ring, triangle)
    assert tin.footprint is not None and tin.footprint.area > 0
    # the relief is whole: nothing of it is reported as skipped or dropped
    assert not result.report.skipped_geometry
    assert all(p.object_id != TIN_ID for p in result.problems)


def test_citygml_geometry_without_surfaces_is_reported(tmp_path: Path) -> None:
    result = parse_city_file(lod4_with_unsupported_relief(tmp_path))
    skipped = {s.object_id: s for s in result.report.skipped_geometry}
    assert set(skipped) == {"mass-points", "break-lines"}
    assert skipped["mass-points"].object_type == "MassPointRelief"
    assert skipped["mass-points"].reason == "reliefPoints: points"
    assert skipped["break-lines"].object_type == "BreaklineRelief"
    assert skipped["break-lines"].reason == "ridgeOrValleyLines: curves"
    # the objects still load (without geometry), and the TIN beside them is whole
    by_id = {o.id: o for o in result.objects}
    assert not by_id["mass-points"].has_geometry and not by_id["break-lines"].has_geometry
    assert len(by_id[TIN_ID].surfaces) == 9
    assert not any(p.object_id in skipped for p in result.problems)


def test_cityjson_geometry_without_surfaces_is_reported(tmp_path: Path) -> None:
    doc = json.loads((DATA / "rotterdam_subset.json").read_text())
    first = next(iter(doc["CityObjects"]))
    # a building with lines beside its surfaces, and an object with points only
    doc["CityObjects"][first]["geometry"].append(
        {"type": "MultiLineString", "lod": "0", "boundaries": [[0, 1]]})
    doc["CityObjects"]["survey-points"] = {
        "type": "GenericCityObject", "geometry": [
            {"type": "MultiPoint", "lod": "1", "boundaries": [0, 1, 2]}]}
    result = parse_city_file(_write(tmp_path, doc), "EPSG:7415")
    skipped = {s.object_id: s for s in result.report.skipped_geometry}
    assert set(skipped) == {first, "survey-points"}
    assert skipped[first].object_type == "Building"
    assert skipped[first].reason == "LoD 0 MultiLineString: lines, no surface to store or tile"
    assert skipped["survey-points"].reason.startswith("LoD 1 MultiPoint: points")
    by_id = {o.id: o for o in result.objects}
    assert by_id[first].has_geometry and not by_id["survey-points"].has_geometry


CITYGML3_RELIEF = """<?xml version="1.0" encoding="UTF-8"?>
<core:CityModel xmlns:core="http://www.opengis.net/citygml/3.0"
  xmlns:dem="http://www.opengis.net/citygml/relief/3.0"
  xmlns:veg="http://www.opengis.net/citygml/vegetation/3.0"
  xmlns:bldg="http://www.opengis.net/citygml/building/3.0"
  xmlns:gml="http://www.opengis.net/gml/3.2">
 <core:cityObjectMember>
  <dem:ReliefFeature gml:id="terrain">
   <dem:lod>1</dem:lod>
   <dem:reliefComponent><dem:TINRelief gml:id="tin-patches"><dem:lod>1</dem:lod>
    <dem:tin><gml:TriangulatedSurface srsName="urn:ogc:def:crs:EPSG::4547"><gml:patches>
     <gml:Triangle><gml:exterior><gml:LinearRing><gml:posList>
      505000 2510000 50 505010 2510000 51 505000 2510010 52 505000 2510000 50
     </gml:posList></gml:LinearRing></gml:exterior></gml:Triangle>
     <gml:Triangle><gml:exterior><gml:LinearRing><gml:posList>
      505010 2510000 51 505010 2510010 53 505000 2510010 52 505010 2510000 51
     </gml:posList></gml:LinearRing></gml:exterior></gml:Triangle>
    </gml:patches></gml:TriangulatedSurface></dem:tin>
   </dem:TINRelief></dem:reliefComponent>
   <dem:reliefComponent><dem:TINRelief gml:id="tin-points"><dem:lod>1</dem:lod>
    <dem:tin><gml:Tin><gml:controlPoint><gml:posList>
      505000 2510000 50 505010 2510000 51 505000 2510010 52 505010 2510010 53
    </gml:posList></gml:controlPoint></gml:Tin></dem:tin>
   </dem:TINRelief></dem:reliefComponent>
  </dem:ReliefFeature>
 </core:cityObjectMember>
 <core:cityObjectMember>
  <veg:SolitaryVegetationObject gml:id="tree">
   <core:lod2ImplicitRepresentation><core:ImplicitGeometry>
    <core:referencePoint><gml:Point><gml:pos>505005 2510005 50</gml:pos></gml:Point>
    </core:referencePoint></core:ImplicitGeometry></core:lod2ImplicitRepresentation>
  </veg:SolitaryVegetationObject>
 </core:cityObjectMember>
</core:CityModel>
"""


def test_citygml3_relief_and_implicit_geometry(tmp_path: Path) -> None:
    result = parse_city_file(_write(tmp_path, CITYGML3_RELIEF, "relief3.gml"))
    by_id = {o.id: o for o in result.objects}
    tin = by_id["tin-patches"]
    assert tin.lod == "1" and len(tin.surfaces) == 2
    assert [len(s.source_rings[0]) for s in tin.surfaces] == [3, 3]
    skipped = {s.object_id: s.reason for s in result.report.skipped_geometry}
    assert skipped == {
        "tin-points": "tin: a gml:Tin of control points without triangles, which is not "
                      "triangulated",
        "tree": "lod2ImplicitRepresentation: implicit geometry (a shared template placed by "
                "reference), which is not expanded"}
    assert not by_id["tin-points"].has_geometry and not by_id["tree"].has_geometry


def test_map_coordinates_under_a_geocentric_label_are_refused(tmp_path: Path) -> None:
    """Rotterdam's RD New coordinates declared as EPSG:4978 would sit thousands of km deep."""
    doc = json.loads((DATA / "rotterdam_subset.json").read_text())
    doc.setdefault("metadata", {})["referenceSystem"] = \
        "https://www.opengis.net/def/crs/EPSG/0/4978"
    with pytest.raises(CityCrsError, match="geocentric"):
        parse_city_file(_write(tmp_path, doc), None)
