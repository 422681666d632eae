"""Footprints: read from OGR layers in any CRS (repairing or skipping bad polygons), or derived
from building points and regularised."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from helpers_buildings import iou, make_building, sample
from pyproj import Transformer
from shapely.geometry import Polygon

from recon.footprints import (
    FootprintLayerError,
    derive_footprints,
    dominant_direction,
    footprints_from_polygons,
    read_footprints,
)

BGT = Path(__file__).parents[1] / "data" / "recon" / "bgt_pand_delft.sqlite"


def test_bgt_layer_is_read_in_its_own_crs():
    fs = read_footprints(BGT, "EPSG:28992")
    assert len(fs) == 160 and not fs.skipped
    assert all(f.source == "given" and f.polygon.is_valid for f in fs.footprints)
    xs = [f.polygon.centroid.x for f in fs.footprints]
    assert min(xs) > 84_000 and max(xs) < 86_000  # Delft, RD New
    assert "identificatiebagpnd" in fs.footprints[0].attributes
    # ids from a field
    fs2 = read_footprints(BGT, "EPSG:7415", id_field="gml_id")
    assert fs2.footprints[0].id.startswith("b")
    assert fs2.crs is not None and "7415" in fs2.crs


def test_bbox_keeps_only_footprints_that_meet_it():
    fs = read_footprints(BGT, "EPSG:28992")
    c = fs.footprints[0].polygon.centroid
    near = read_footprints(BGT, "EPSG:28992", bbox=(c.x - 20, c.y - 20, c.x + 20, c.y + 20))
    assert 1 <= len(near) < 20
    assert fs.footprints[0].id in {f.id for f in near.footprints}


def test_a_layer_in_another_crs_is_reprojected(tmp_path):
    fs = read_footprints(BGT, "EPSG:28992")
    tf = Transformer.from_crs("EPSG:28992", "EPSG:4326", always_xy=True)
    feats = []
    for f in fs.footprints[:10]:
        g = shapely.transform(f.polygon, lambda c: np.column_stack(tf.transform(c[:, 0],
                                                                                 c[:, 1])))
        feats.append({"type": "Feature", "properties": {"name": f.id},
                      "geometry": shapely.geometry.mapping(g)})
    path = tmp_path / "wgs84.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    back = read_footprints(path, "EPSG:28992", id_field="name")
    assert len(back) == 10
    for f, b in zip(fs.footprints[:10], back.footprints, strict=True):
        assert b.id == f.id
        assert shapely.hausdorff_distance(f.polygon, b.polygon) < 0.01


def test_invalid_polygons_are_repaired_or_skipped_and_the_rest_used(tmp_path):
    square = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    spike = [[20, 0], [30, 0], [30, 10], [25, 10], [25, 20], [25, 10], [20, 10], [20, 0]]
    bowtie = [[40, 0], [50, 10], [50, 0], [40, 10], [40, 0]]
    feats = [{"type": "Feature", "properties": {"n": n},
              "geometry": {"type": "Polygon", "coordinates": [ring]}}
             for n, ring in (("ok", square), ("spike", spike), ("bowtie", bowtie))]
    feats.append({"type": "Feature", "properties": {"n": "line"},
                  "geometry": {"type": "LineString", "coordinates": square}})
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats,
                                "crs": {"type": "name", "properties": {
                                    "name": "urn:ogc:def:crs:EPSG::28992"}}}))
    fs = read_footprints(path, "EPSG:28992", id_field="n")
    assert [f.id for f in fs.footprints] == ["ok", "spike"]
    spiked = fs.footprints[1]
    assert spiked.polygon.is_valid and spiked.polygon.area == pytest.approx(100.0)
    assert any("repaired" in p for p in spiked.problems)
    reasons = {s.id: s.reason for s in fs.skipped}
    assert set(reasons) == {"bowtie", "line"}
    assert "2 polygons" in reasons["bowtie"]
    assert "LineString" in reasons["line"]


def test_multipolygons_become_one_footprint_per_part():
    mp = shapely.MultiPolygon([shapely.box(0, 0, 5, 5), shapely.box(10, 0, 15, 5)])
    fs = footprints_from_polygons([mp, None], ["a", "b"])
    assert [f.id for f in fs.footprints] == ["a#1", "a#2"]
    assert fs.skipped[0].id == "b"


def test_unreadable_layers_raise_typed_errors(tmp_path):
    with pytest.raises(FootprintLayerError, match="does not exist"):
        read_footprints(tmp_path / "nope.gpkg", "EPSG:28992")
    junk = tmp_path / "junk.geojson"
    junk.write_text("this is not json")
    with pytest.raises(FootprintLayerError, match="cannot read"):
        read_footprints(junk, "EPSG:28992")
    with pytest.raises(FootprintLayerError, match="no field"):
        read_footprints(BGT, "EPSG:28992", id_field="nope")
    nocrs = tmp_path / "nocrs.csv"
    nocrs.write_text('id,WKT\n1,"POLYGON ((0 0, 1 0, 1 1, 0 0))"\n')
    with pytest.raises(FootprintLayerError, match="declares no CRS"):
        read_footprints(nocrs, "EPSG:28992")


def test_dominant_direction_ignores_the_quarter_turn():
    for deg in (0, 10, 37, 80):
        a = math.radians(deg)
        rect = shapely.affinity.rotate(shapely.box(0, 0, 20, 8), deg, origin=(0, 0))
        assert dominant_direction(rect) == pytest.approx(a % (math.pi / 2), abs=1e-6)


@pytest.mark.parametrize("kind,angle", [("flat", 0.0), ("gable", 0.4), ("multi", 1.1),
                                        ("hip", 0.8)])
def test_derived_footprints_match_the_truth(kind, angle):
    rng = np.random.default_rng(7)
    # sizes off the outline grid, and no wall returns: the outermost points are roof points
    b = make_building(kind, 50.0, 50.0, angle, length=17.3, width=10.7)
    shed = make_building("flat", 90.0, 50.0, 0.0, length=2.0, width=2.0)  # too small
    pts = np.concatenate([sample(b, rng, density=10.0, wall_density=0.0),
                          sample(shed, rng, density=10.0)])
    fs = derive_footprints(pts)
    assert len(fs) == 1, fs.skipped
    fp = fs.footprints[0]
    assert fp.source == "derived" and fp.polygon.is_valid
    assert iou(fp.polygon, b.footprint) >= 0.9
    # regularised: every edge parallel or orthogonal to the building's axis
    xy = np.asarray(fp.polygon.exterior.coords)
    d = np.diff(xy, axis=0)
    ang = np.arctan2(d[:, 1], d[:, 0]) - angle
    off = np.abs(((ang + math.pi / 4) % (math.pi / 2)) - math.pi / 4)
    assert off.max() < math.radians(1.0)
    assert len(fs.skipped) == 1 and "under 15.0 m2" in fs.skipped[0].reason


def test_two_buildings_make_two_footprints_and_no_points_make_none():
    rng = np.random.default_rng(8)
    a = make_building("gable", 0.0, 0.0, 0.3)
    b = make_building("flat", 40.0, 10.0, 0.3)
    fs = derive_footprints(np.concatenate([sample(a, rng), sample(b, rng)]))
    assert len(fs) == 2
    best = sorted(max(iou(f.polygon, t.footprint) for f in fs.footprints) for t in (a, b))
    assert best[0] >= 0.9
    assert len(derive_footprints(np.empty((0, 3)))) == 0
    with pytest.raises(ValueError):
        derive_footprints(np.zeros(5))


def test_invalid_model_polygon_is_skipped_with_reason():
    bow = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    fs = footprints_from_polygons([bow, shapely.box(0, 0, 3, 3)], ["x", "y"], source="model")
    assert [f.id for f in fs.footprints] == ["y"] and fs.footprints[0].source == "model"
    assert fs.skipped[0].id == "x"
