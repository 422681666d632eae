"""IFC models through the real ingest job and PostGIS: elements stored == features in the
tiles, vertices back in model coordinates within 1 cm of ifcopenshell's, samples where their
IfcSite says, valid glTF and 3D Tiles, few draw calls, CIM building links."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_bim import DUPLEX, FZK, HOUSE, MAPCONV, ifcopenshell_world, run_ingest, tile_vertices
from pyproj import Geod
from sqlalchemy import text

from service.core.db import sync_engine

GEOD = Geod(ellps="WGS84")
ANCHOR = {"lon": 114.2466, "lat": 22.7209, "height": 45.0, "rotation": 15.0}


def _rows(db_url: str, dataset_id: int) -> list:
    with sync_engine(db_url).connect() as conn:
        return conn.execute(text(
            "SELECT global_id, ifc_class, assembly_class, storey, psets, building_object_id, "
            "min_height, max_height, ST_XMin(bbox3d) x0, ST_YMin(bbox3d) y0, ST_XMax(bbox3d) x1, "
            "ST_YMax(bbox3d) y1, ST_IsValid(footprint) valid FROM bim_elements "
            "WHERE dataset_id = :d"), {"d": dataset_id}).all()


@pytest.mark.parametrize("path, params", [(FZK, {}), (DUPLEX, {}), (HOUSE, {"anchor": ANCHOR}),
                                          (MAPCONV, {"crs": "EPSG:3857"})],
                         ids=["fzk-ifc4-site", "duplex-ifc2x3", "openhouse-anchor",
                              "mapconversion"])
def test_elements_in_tiles_equal_elements_stored(ingested, db_url, path, params):
    run = ingested(path, **params)
    assert run.status == "succeeded", run.job.error
    rows = _rows(db_url, run.dataset_id)
    verts, tile_rows = tile_vertices(run.tileset_dir)
    assert len(rows) == run.job.report["elements"] > 0
    assert {r.global_id for r in rows} == set(verts)  # one feature per element, no more
    assert all(len(v) == 1 for v in tile_rows.values())  # each element in exactly one tile
    assert all(r.valid for r in rows)
    assert run.job.report["failed_count"] == 0
    # the 3D bbox stored holds the element's tile vertices
    for r in rows:
        v = verts[r.global_id]
        assert r.x0 - 1e-7 <= v[:, 0].min() and v[:, 0].max() <= r.x1 + 1e-7
        assert r.y0 - 1e-7 <= v[:, 1].min() and v[:, 1].max() <= r.y1 + 1e-7
        assert r.min_height - 0.01 <= v[:, 2].min() and v[:, 2].max() <= r.max_height + 0.01


@pytest.mark.parametrize("path, params", [(FZK, {}), (HOUSE, {"anchor": ANCHOR}),
                                          (MAPCONV, {"crs": "EPSG:3857"})],
                         ids=["site-true-north", "anchor-mm-units", "mapconversion-rotated"])
def test_vertices_back_in_model_coordinates_within_1cm(ingested, path, params):
    from readers.ifc.georef import parse_anchor, resolve
    from readers.ifc.reader import open_ifc

    run = ingested(path, **params)
    verts, _ = tile_vertices(run.tileset_dir)
    placement = resolve(open_ifc(path), anchor=parse_anchor(params.get("anchor")),
                        crs=params.get("crs"))
    chosen = sorted(verts, key=lambda g: len(verts[g]))[:: max(1, len(verts) // 12)]
    reference = ifcopenshell_world(path, chosen)
    assert set(reference) == set(chosen)
    for gid in chosen:
        back = placement.from_wgs84(verts[gid])
        ref = reference[gid]
        # every tile vertex is one of ifcopenshell's vertices, within 1 cm
        d = np.linalg.norm(back[:, None, :] - ref[None, :, :], axis=2).min(axis=1)
        assert d.max() < 0.01, (gid, d.max())
        assert np.allclose(back.min(axis=0), ref.min(axis=0), atol=0.01)
        assert np.allclose(back.max(axis=0), ref.max(axis=0), atol=0.01)


def test_site_sample_lands_where_ifcsite_says(ingested):
    """FZK-Haus: IfcSite 49 6' 1.566" N, 8 26' 11.5404" E, 110 m, true north (0.766, 0.643):
    a slab corner computed with an independent geodesic must match the tiles within 1 m."""
    from tiler.crs import geoid_undulation

    run = ingested(FZK)
    verts, _ = tile_vertices(run.tileset_dir)
    lat0 = 49 + 6 / 60 + 1.566 / 3600
    lon0 = 8 + 26 / 60 + 11.5404 / 3600
    n = float(geoid_undulation(np.array([lon0]), np.array([lat0]))[0])
    gid = next(iter(ifcopenshell_world(FZK, list(verts))))
    ref = ifcopenshell_world(FZK, [gid])[gid]
    theta = np.pi / 2 - np.arctan2(0.642787609687, 0.766044443119)  # model -> east/north
    east = ref[:, 0] * np.cos(theta) - ref[:, 1] * np.sin(theta)
    north = ref[:, 0] * np.sin(theta) + ref[:, 1] * np.cos(theta)
    az = np.degrees(np.arctan2(east, north))
    lon, lat, _ = GEOD.fwd(np.full(len(ref), lon0), np.full(len(ref), lat0), az,
                           np.hypot(east, north))
    expected_h = 110.0 + n + ref[:, 2]
    got = verts[gid]
    for lo, la, h in zip(lon, lat, expected_h, strict=True):
        dist = GEOD.inv(np.full(len(got), lo), np.full(len(got), la), got[:, 0], got[:, 1])[2]
        i = int(np.argmin(dist + np.abs(got[:, 2] - h)))
        assert dist[i] < 1.0 and abs(got[i, 2] - h) < 1.0


def test_mapconversion_sample_lands_where_the_conversion_says(ingested, db_url):
    from pyproj import Transformer

    run = ingested(MAPCONV, crs="EPSG:3857")
    rep = run.job.report["georeference"]
    assert rep["source"] == "IfcMapConversion" and rep["map_conversion"]["rotation_deg"] == -30
    with sync_engine(db_url).connect() as conn:
        ds = conn.execute(text("SELECT crs, bounds3d FROM datasets WHERE id = :d"),
                          {"d": run.dataset_id}).first()
    assert ds.crs == "EPSG:3857"
    lon, lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(15000.0, 0.0)
    lo, hi = ds.bounds3d["min"], ds.bounds3d["max"]
    # the model (a few metres) sits at the conversion's origin E 15000 N 0
    assert GEOD.inv(lon, lat, (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2)[2] < 20


def test_tiles_are_valid_gltf_and_3d_tiles_with_few_draw_calls(ingested):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tiler"))
    from helpers_gltf import errors_of, node_available, validate_glbs
    from helpers_tileset import check_tileset

    run = ingested(FZK)
    version = sorted(run.tileset_dir.glob("v*"))[-1]
    assert check_tileset(version / "tileset.json") == []
    doc = json.loads((version / "tileset.json").read_text())
    assert doc["asset"]["version"] == "1.1" and "transform" in doc["root"]
    glbs = sorted(version.glob("tiles/*.glb"))
    report = run.job.report
    assert report["draw_calls"] <= 2 * len(glbs)
    assert report["draw_calls"] * 10 <= report["elements"]  # 83 elements, a few primitives
    if node_available():
        for path, rep in validate_glbs(glbs).items():
            assert errors_of(rep) == [], path
    # glazing stays translucent: some tile has a BLEND material
    from tiler.glb import read_glb

    docs = [read_glb(g.read_bytes())[0] for g in glbs]
    modes = {m.get("alphaMode", "OPAQUE") for d in docs for m in d["materials"]}
    assert "BLEND" in modes
    # the counts reported are those of the files written (primitives, welded vertices)
    assert report["draw_calls"] == sum(len(m["primitives"]) for d in docs for m in d["meshes"])
    manifest = json.loads((version / "manifest.json").read_text())
    for tile in manifest["tiles"].values():
        d = read_glb((version / tile["uri"]).read_bytes())[0]
        positions = {p["attributes"]["POSITION"] for m in d["meshes"] for p in m["primitives"]}
        assert tile["vertices"] == sum(d["accessors"][a]["count"] for a in positions)


def test_hierarchy_streams_the_envelope_first(db_url, bim_settings):
    """With small tiles the root holds only envelope elements (external by their property
    sets, like Duplex_A's external walls, windows and doors, or part of the roof), and
    furniture sits in deeper tiles."""
    run = run_ingest(db_url, bim_settings, DUPLEX, max_triangles_per_tile=4000)
    assert run.status == "succeeded", run.job.error
    version = sorted(run.tileset_dir.glob("v*"))[-1]
    doc = json.loads((version / "tileset.json").read_text())
    assert doc["root"].get("children")
    from tiler.glb import read_glb
    from tiler.mesh import read_property_table

    g, b = read_glb((version / doc["root"]["content"]["uri"]).read_bytes())
    root_ids = {r["id"] for r in read_property_table(g, b)}
    rows = {r.global_id: r for r in _rows(db_url, run.dataset_id)}

    def envelope_part(r) -> bool:
        return {r.ifc_class, r.assembly_class} & {"IfcRoof", "IfcCurtainWall", "IfcSite"} \
            or any(props.get("IsExternal") is True for name, props in r.psets.items()
                   if name.endswith("Common"))

    envelope = {gid for gid, r in rows.items() if envelope_part(r)}
    furniture = {gid for gid, r in rows.items() if r.ifc_class == "IfcFurnishingElement"}
    assert len(envelope) > 30 and len(furniture) > 30 and root_ids
    assert root_ids <= envelope
    assert not furniture & root_ids


def test_elements_link_to_the_cim_building_they_stand_in(db_url, bim_settings, live_server,
                                                         auth):
    import httpx

    run = run_ingest(db_url, bim_settings, HOUSE, anchor={**ANCHOR, "lon": 114.3})
    assert run.status == "succeeded", run.job.error
    with sync_engine(db_url).begin() as conn:
        conn.execute(text(
            "INSERT INTO city_objects (object_id, dataset_id, type, footprint) VALUES "
            "('bldg-openhouse', :d, 'Building', ST_Multi(ST_Buffer(ST_SetSRID("
            "ST_MakePoint(114.3, 22.7209), 4326), 0.0003))), "
            "('bldg-elsewhere', :d, 'Building', ST_Multi(ST_Buffer(ST_SetSRID("
            "ST_MakePoint(114.31, 22.7209), 4326), 0.0003)))"), {"d": run.dataset_id})
    # the CIM buildings came after the model: the link is recomputed on request
    r = httpx.post(f"{live_server.url}/bim/datasets/{run.dataset_id}/link-buildings",
                   headers=auth("operator"))
    assert r.status_code == 200, r.text
    linked = r.json()["elements_in_buildings"]
    try:
        rows = _rows(db_url, run.dataset_id)
        assert linked == len(rows) > 0
        assert {r.building_object_id for r in rows} == {"bldg-openhouse"}
    finally:  # other tests count the city's objects
        with sync_engine(db_url).begin() as conn:
            conn.execute(text("DELETE FROM city_objects WHERE dataset_id = :d"),
                         {"d": run.dataset_id})


def test_ifc4x3_model_with_map_conversion_to_cgcs2000(db_url, bim_settings, tmp_path,
                                                      ifc4x3_maker):
    from pyproj import Transformer

    from tiler.crs import geoid_undulation

    path = ifc4x3_maker(tmp_path / "longgang.ifc")
    assert b"FILE_SCHEMA(('IFC4X3_ADD2'))" in path.read_bytes()
    run = run_ingest(db_url, bim_settings, path)
    assert run.status == "succeeded", run.job.error
    rep = run.job.report["georeference"]
    assert rep["source"] == "IfcMapConversion" and rep["crs"] == "EPSG:4547"
    assert rep["map_conversion"]["scale_used"] == pytest.approx(0.001)
    rows = _rows(db_url, run.dataset_id)
    assert len(rows) == 3 and {r.storey for r in rows} == {"F1"}
    assert all(r.psets["Pset_WallCommon"]["FireRating"] == "EI90" for r in rows)
    # the walls span x 0..15 m east of E 500000, N 2510000, from 40 m above sea level
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(500000.0,
                                                                          2510000.0)
    n = float(geoid_undulation(np.array([lon]), np.array([lat]))[0])
    west = min(rows, key=lambda r: r.x0)
    assert GEOD.inv(lon, lat, west.x0, west.y0)[2] < 1.0
    assert min(r.min_height for r in rows) == pytest.approx(40.0 + n, abs=0.05)
    east = max(r.x1 for r in rows)
    assert GEOD.inv(lon, lat, east, lat)[2] == pytest.approx(15.0, abs=0.05)
