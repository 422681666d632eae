"""CityJSON and CityGML through the service: tus upload, ingest job, city_objects rows, the
city tileset read back over HTTP and compared with the stored geometry, picking through the
API, re-ingest as history with only affected tiles rewritten, and bad files among good ones."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from helpers_city import (
    DATA,
    nearest_distance,
    object_url,
    read_city_tiles,
    stored_faces,
    to_ecef,
)
from helpers_gltf import errors_of, node_available, validate_glbs
from helpers_tileset import check_tileset
from helpers_tus import upload

import service.cim.ingest as city_job
import service.jobs.publish as publishing
from readers.cim.geometry import surface_area
from service.jobs.execute import run_job

ROTTERDAM = DATA / "rotterdam_subset.json"  # 16 LoD2 buildings, RD New + NAP, no CRS in file
LOD3 = DATA / "lod3_building_v2.gml"  # CityGML 2.0, EPSG:3068+5783 in the file
FZK = DATA / "citygml4j_lod2_buildings_v2.city.json"  # 100 buildings, EPSG:3068 in the file


@pytest.fixture
def op(auth):
    return auth("operator")


def ingest(server, op, db_url, settings, path: Path, *, name: str | None = None,
           data: bytes | None = None, **meta: str) -> tuple[int, dict]:
    _, job_id = upload(server, op, data if data is not None else path.read_bytes(),
                       filename=name or path.name, **meta)
    status = run_job(job_id, db_url, settings)
    job = httpx.get(f"{server.url}/jobs/{job_id}").json()
    assert job["status"] == status
    return job_id, job


def current_count(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FILTER (WHERE valid_to IS NULL AND geom IS NOT "
                            "NULL), count(*) FROM city_objects").fetchone()


def test_upload_to_tiles_read_back_and_picked(live_server, op, db_url, settings, tmp_path):
    _, job = ingest(live_server, op, db_url, settings, ROTTERDAM, crs="EPSG:7415")
    assert job["status"] == "succeeded", job["error"]
    report = job["report"]
    assert report["objects"] == 16 and report["crs"] == "EPSG:7415"
    assert "EGM96" in report["height_note"]
    _, job = ingest(live_server, op, db_url, settings, LOD3)
    assert job["status"] == "succeeded", job["error"]
    assert job["report"]["format"] == "CityGML" and job["report"]["crs_source"] == "file"
    assert job["progress"]["fraction"] == 1.0

    tiles = read_city_tiles(live_server)
    assert tiles.version == 2
    with_geometry, _ = current_count(db_url)
    # every current object with geometry is in exactly one tile
    assert len(tiles.ids) == len(set(tiles.ids)) == with_geometry == 18
    faces = stored_faces(db_url)
    assert set(tiles.ids) == set(faces)

    for t in tiles.tiles:
        assert set(np.unique(t.feature)) == set(range(len(t.rows)))
        a, b, c = (t.ecef[t.triangles[:, i]] for i in range(3))
        tri_area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
        tri_row = t.feature[t.triangles[:, 0]]
        for row_no, row in enumerate(t.rows):
            stored = faces[row["id"]]
            # each vertex, from the tile frame back to the earth, lies on a stored vertex
            source = to_ecef(np.concatenate([r for face in stored for r in face]))
            worst = nearest_distance(t.ecef[t.feature == row_no], source).max()
            assert worst < 0.01, f"{row['id']}: a vertex lies {worst:.4f} m from the row's"
            # and the triangles cover the stored surfaces (metric areas in earth-centred m)
            want = sum(surface_area([to_ecef(r) for r in face]) for face in stored)
            assert float(tri_area[tri_row == row_no].sum()) == pytest.approx(want, rel=1e-3)

    # picking: the id of a tile row is the object's row in the API
    for t in tiles.tiles:
        for row in t.rows[:5]:
            got = httpx.get(object_url(live_server, row["id"]))
            assert got.status_code == 200, got.text
            feature = got.json()
            assert feature["id"] == row["id"]
            assert feature["properties"]["type"] == row["type"]
            assert feature["properties"]["lod"] == row["lod"]
            assert got.headers["content-type"] == "application/geo+json"

    # the served tileset keeps the 3D Tiles rules and the glTF validator finds no error
    saved = tiles.save(tmp_path / "served")
    assert check_tileset(saved) == []
    if node_available():
        reports = validate_glbs([saved.parent / t.uri for t in tiles.tiles])
        assert not {p: errors_of(r) for p, r in reports.items() if r["errors"]}


def test_stored_geometry_is_the_parsed_geometry(live_server, op, db_url, settings):
    from readers.cim import parse_city_file

    _, job = ingest(live_server, op, db_url, settings, FZK)
    assert job["status"] == "succeeded", job["error"]
    parsed = {o.id: o for o in parse_city_file(FZK).objects if o.has_geometry}
    faces = stored_faces(db_url)
    assert set(faces) == set(parsed)
    for oid, obj in parsed.items():
        assert len(faces[oid]) == len(obj.surfaces)
        for face, surface in zip(faces[oid], obj.surfaces, strict=True):
            for ring, want in zip(face, surface.rings, strict=True):
                np.testing.assert_array_equal(ring, want)  # lossless: WKB doubles
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT object_id, type, height, semantics, footprint IS NOT NULL, "
                            "ST_GeometryType(geom), ST_NDims(geom) FROM city_objects").fetchall()
    for oid, type_, height, semantics, has_footprint, gtype, ndims in rows:
        obj = parsed[oid]
        assert type_ == obj.type and height == pytest.approx(obj.height)
        assert semantics["surfaces"] == [s.semantic for s in obj.surfaces]
        assert has_footprint and gtype == "ST_MultiPolygon" and ndims == 3


def test_citygml_terrain_is_stored_and_tiled_and_skipped_geometry_reported(
        live_server, op, db_url, settings, tmp_path):
    from helpers_cim_variants import LOD4, TIN_ID, lod4_with_unsupported_relief

    from readers.cim import parse_city_file

    _, job = ingest(live_server, op, db_url, settings, LOD4)
    assert job["status"] == "succeeded", job["error"]
    assert job["report"]["skipped_geometry"] == [] == [
        p for p in job["report"]["problems"] if p["object_id"] == TIN_ID]
    # the 9 triangles of the TINRelief are stored, as read from the file
    (tin,) = [o for o in parse_city_file(LOD4).objects if o.id == TIN_ID]
    faces = stored_faces(db_url)
    assert len(faces[TIN_ID]) == 9
    for face, surface in zip(faces[TIN_ID], tin.surfaces, strict=True):
        np.testing.assert_array_equal(face[0], surface.rings[0])
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT type, lod FROM city_objects WHERE object_id = %s",
                            (TIN_ID,)).fetchone() == ("TINRelief", "3")
    # and tiled: the relief is one feature, drawn with the 9 triangles on the stored vertices
    tiles = read_city_tiles(live_server)
    (tile, row_no), = [(t, i) for t in tiles.tiles for i, r in enumerate(t.rows)
                       if r["id"] == TIN_ID]
    assert tile.rows[row_no]["type"] == "TINRelief"
    mine = tile.triangles[tile.feature[tile.triangles[:, 0]] == row_no]
    assert len(mine) == 9
    source = to_ecef(np.concatenate([face[0] for face in faces[TIN_ID]]))
    assert nearest_distance(tile.ecef[mine.ravel()], source).max() < 0.01

    # relief components with points and lines only: loaded, and listed with type and reason
    variant = lod4_with_unsupported_relief(tmp_path)
    _, job = ingest(live_server, op, db_url, settings, variant)
    assert job["status"] == "succeeded", job["error"]
    report = job["report"]
    assert report["skipped_geometry_count"] == 2
    assert sorted(report["skipped_geometry"], key=lambda s: s["object_id"]) == [
        {"object_id": "break-lines", "type": "BreaklineRelief",
         "reason": "ridgeOrValleyLines: curves"},
        {"object_id": "mass-points", "type": "MassPointRelief",
         "reason": "reliefPoints: points"}]
    assert httpx.get(object_url(live_server, "mass-points")).status_code == 200
    assert len(stored_faces(db_url)[TIN_ID]) == 9


def test_reingest_supersedes_and_rewrites_only_affected_tiles(
        live_server, op, db_url, settings, monkeypatch):
    # a small triangle budget so the 16 buildings make several tiles
    monkeypatch.setattr(city_job, "MAX_TRIANGLES_PER_TILE", 120)
    _, first = ingest(live_server, op, db_url, settings, ROTTERDAM, crs="EPSG:7415")
    assert first["status"] == "succeeded", first["error"]
    before = read_city_tiles(live_server)
    assert len(before.tiles) >= 3
    between = datetime.now(UTC)

    doc = json.loads(ROTTERDAM.read_bytes())
    changed = sorted(doc["CityObjects"])[3]
    doc["CityObjects"][changed]["attributes"]["status"] = "gesloopt"
    seen_during_publish: dict[str, object] = {}
    real_publish = publishing.publish_in

    def publish_and_look(conn, tv, stats):
        # the new version is complete on disk, the old one is what clients still get
        r = httpx.get(f"{live_server.url}/tiles/cim/tileset.json")
        seen_during_publish["version"] = r.headers["Twinbase-Tileset-Version"]
        seen_during_publish["same"] = r.json() == before.tileset
        real_publish(conn, tv, stats)

    monkeypatch.setattr(publishing, "publish_in", publish_and_look)
    _, second = ingest(live_server, op, db_url, settings, ROTTERDAM,
                       data=json.dumps(doc).encode(), crs="EPSG:7415")
    assert second["status"] == "succeeded", second["error"]
    assert seen_during_publish == {"version": "1", "same": True}

    report = second["report"]
    # only the changed object gets a new version; the 15 others keep theirs
    assert report["superseded"] == 1 and report["unchanged"] == 15
    tiles_report = report["tiles"]
    assert tiles_report["tiles_rewritten"] == 1
    assert tiles_report["tiles_unchanged"] == tiles_report["tiles"] - 1

    after = read_city_tiles(live_server)
    assert after.version == 2 and sorted(after.ids) == sorted(before.ids)
    old = {t.tile["content"]["uri"].split("/", 1)[1]: t for t in before.tiles}
    new = {t.tile["content"]["uri"].split("/", 1)[1]: t for t in after.tiles}
    rewritten = [uri for uri in new if uri not in old]
    assert len(rewritten) == 1 and changed in [r["id"] for r in new[rewritten[0]].rows]
    # unchanged tiles are the very same files (hard links), not copies
    for uri in set(new) & set(old):
        v1 = settings.tiles_dir / "cim" / "v1" / uri
        v2 = settings.tiles_dir / "cim" / "v2" / uri
        assert os.stat(v1).st_ino == os.stat(v2).st_ino
    # the old version stays readable at its versioned URL
    assert httpx.get(f"{live_server.url}/tiles/cim/v1/tileset.json").status_code == 200

    # history: one superseded row, the object as it was and as it is; every current row
    # now belongs to the second dataset
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM city_objects WHERE valid_to IS NOT NULL"
                            ).fetchone()[0] == 1
        assert conn.execute("SELECT count(DISTINCT dataset_id) FROM city_objects "
                            "WHERE valid_to IS NULL").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM city_objects WHERE valid_to IS NULL"
                            ).fetchone()[0] == 16

    # the very same file again: no new version of anything, and no tile rewritten
    _, third = ingest(live_server, op, db_url, settings, ROTTERDAM,
                      data=json.dumps(doc).encode(), crs="EPSG:7415")
    assert third["status"] == "succeeded", third["error"]
    assert third["report"]["superseded"] == 0 and third["report"]["unchanged"] == 16
    assert third["report"]["tiles"]["tiles_rewritten"] == 0
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM city_objects").fetchone()[0] == 17
    now = httpx.get(object_url(live_server, changed)).json()
    assert now["properties"]["attributes"]["status"] == "gesloopt"
    was = httpx.get(object_url(live_server, changed), params={"at": between.isoformat()})
    assert was.status_code == 200, was.text
    assert was.json()["properties"]["attributes"]["status"] == "1"
    assert was.json()["properties"]["valid_to"] is not None
    history = httpx.get(object_url(live_server, changed) + "/history").json()
    assert [f["properties"]["attributes"]["status"] for f in history["features"]] == [
        "1", "gesloopt"]


def _broken_files() -> dict[str, tuple[bytes, str, dict[str, str], str]]:
    gml = LOD3.read_bytes()
    return {
        "not a city model": (b'{"type": "FeatureCollection", "features": []}', "roads.json",
                             {}, ""),
        "truncated CityGML": (gml[: len(gml) // 2], "cut.gml", {}, ""),
        "invalid JSON": (ROTTERDAM.read_bytes()[:20_000], "cut.city.json",
                         {"crs": "EPSG:7415"}, ""),
        "no CRS": (ROTTERDAM.read_bytes(), "nocrs.city.json", {}, "crs"),
        "a zip file": (b"PK\x03\x04" + bytes(2000), "archive.gml", {}, ""),
    }


def test_broken_files_among_good_ones_fail_alone_and_publish_nothing(
        live_server, op, db_url, settings):
    _, good = ingest(live_server, op, db_url, settings, ROTTERDAM, crs="EPSG:7415")
    assert good["status"] == "succeeded", good["error"]
    published = httpx.get(f"{live_server.url}/tiles/cim/tileset.json")
    counts = current_count(db_url)
    for what, (data, name, meta, expect) in _broken_files().items():
        _, job = ingest(live_server, op, db_url, settings, ROTTERDAM, name=name, data=data,
                        **meta)
        assert job["status"] == "failed", what
        assert job["error"] and "internal error" not in job["error"], (what, job["error"])
        assert expect in job["error"].lower(), (what, job["error"])
        dataset = httpx.get(f"{live_server.url}/datasets/{job['dataset_id']}").json()
        assert dataset["status"] == "failed"
        assert current_count(db_url) == counts, what
        now = httpx.get(f"{live_server.url}/tiles/cim/tileset.json")
        assert now.content == published.content, what
    _, good = ingest(live_server, op, db_url, settings, FZK)
    assert good["status"] == "succeeded", good["error"]
    assert good["report"]["tiles"]["version"] == 2  # failed jobs made no version
    assert len(read_city_tiles(live_server).ids) == 116


def _with_bad_objects() -> bytes:
    doc = json.loads(ROTTERDAM.read_bytes())
    n = len(doc["vertices"])
    # a bow-tie: the edges 0-1 and 2-3 cross
    doc["vertices"] += [[0, 0, 0], [5000, 5000, 0], [5000, 0, 0], [0, 5000, 0]]

    def building(boundaries: list) -> dict:
        return {"type": "Building", "attributes": {},
                "geometry": [{"type": "MultiSurface", "lod": "2", "boundaries": boundaries}]}

    doc["CityObjects"]["bad-index"] = building([[[0, 1, 10_000_000]]])
    doc["CityObjects"]["bad-two-vertices"] = building([[[0, 1]]])
    doc["CityObjects"]["bad-bowtie"] = building([[[n, n + 1, n + 2, n + 3]]])
    return json.dumps(doc).encode()


def test_object_problems_are_reported_while_valid_objects_load(live_server, op, db_url,
                                                               settings):
    _, job = ingest(live_server, op, db_url, settings, ROTTERDAM, name="mixed.city.json",
                    data=_with_bad_objects(), crs="EPSG:7415")
    assert job["status"] == "succeeded", job["error"]
    problems = {p["object_id"]: p["reason"] for p in job["report"]["problems"]}
    assert {"bad-index", "bad-two-vertices", "bad-bowtie"} <= set(problems)
    assert "index" in problems["bad-index"].lower()
    assert job["report"]["objects"] == 16
    assert job["report"]["problem_count"] == len(job["report"]["problems"])
    assert current_count(db_url)[0] == 16
    for bad in ("bad-index", "bad-two-vertices", "bad-bowtie"):
        assert httpx.get(object_url(live_server, bad)).status_code == 404
