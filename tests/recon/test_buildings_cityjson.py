"""Reconstructed buildings as CityJSON 2.0 features: structure, semantics and validity kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_buildings import flat_ground, make_building, sample

from recon.buildings import reconstruct_building
from recon.cityjson import building_feature, cityjsonseq_lines, crs_uri, to_cityjson
from recon.footprints import Footprint
from recon.solids import Solid, check_solid


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(11)
    out = []
    for i, kind in enumerate(("hip", "multi")):
        b = make_building(kind, 525300.0 + 40 * i, 2513500.0, 0.3, base_z=42.0)
        out.append(reconstruct_building(Footprint(f"b{i}", b.footprint, "derived"),
                                        sample(b, rng), flat_ground(42.0)))
    empty = make_building("flat", 525400.0, 2513500.0)
    out.append(reconstruct_building(Footprint("none", empty.footprint, "given"),
                                     np.empty((0, 3)), flat_ground(42.0)))
    assert [m.lod for m in out] == ["2.2", "2.2", None]
    return out


def _solid_of(geom: dict, vertices: np.ndarray) -> Solid:
    kinds = [s["type"] for s in geom["semantics"]["surfaces"]]
    shell = geom["boundaries"][0]
    sem = [kinds[v] for v in geom["semantics"]["values"][0]]
    return Solid(vertices, [[list(r) for r in face] for face in shell], sem)


def test_document_holds_every_modelled_building_with_both_lods(models):
    doc = to_cityjson(models, "EPSG:4547")
    assert doc["type"] == "CityJSON" and doc["version"] == "2.0"
    assert doc["metadata"]["referenceSystem"] == "https://www.opengis.net/def/crs/EPSG/0/4547"
    assert set(doc["CityObjects"]) == {"b0", "b1"}  # a building with no geometry is left out
    tf = doc["transform"]
    verts = np.asarray(doc["vertices"], dtype=np.float64) * tf["scale"] + tf["translate"]
    assert all(isinstance(v, int) for row in doc["vertices"] for v in row)
    for oid, obj in doc["CityObjects"].items():
        assert obj["type"] == "Building"
        assert [g["lod"] for g in obj["geometry"]] == ["1.2", "2.2"]
        assert obj["attributes"]["lod"] == "2.2"
        assert obj["attributes"]["measuredHeight"] > 0
        for g in obj["geometry"]:
            assert g["type"] == "Solid"
            idx = [v for face in g["boundaries"][0] for ring in face for v in ring]
            assert max(idx) < len(verts) and min(idx) >= 0
            assert len(g["semantics"]["values"][0]) == len(g["boundaries"][0])
            solid = _solid_of(g, verts)
            chk = check_solid(solid)
            assert chk.valid, (oid, g["lod"], chk.problems)
            model = next(m for m in models if m.id == oid)
            ref = model.volume_lod12 if g["lod"] == "1.2" else model.volume_lod22
            assert chk.volume == pytest.approx(ref, rel=1e-4)
    json.dumps(doc)  # plain JSON types only


def test_feature_shares_vertices_between_lods_and_seq_streams(models):
    doc = to_cityjson(models, "EPSG:7415")
    feat = building_feature(models[0], doc["transform"])
    n12 = len(models[0].lod12.vertices)
    n22 = len(models[0].lod22.vertices)
    assert len(feat["vertices"]) < n12 + n22  # the base corners are shared
    assert building_feature(models[2], doc["transform"]) is None
    lines = list(cityjsonseq_lines(models, "EPSG:7415"))
    assert len(lines) == 3
    head = json.loads(lines[0])
    assert head["type"] == "CityJSON" and head["CityObjects"] == {}
    assert [json.loads(line)["id"] for line in lines[1:]] == ["b0", "b1"]
    assert crs_uri("EPSG:7415").endswith("/EPSG/0/7415")
