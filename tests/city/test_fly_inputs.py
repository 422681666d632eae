"""Fly and model from other inputs: a footprint layer given with the job (in another CRS,
with an invalid polygon), a file whose own classes are kept, a second run of the same survey
that changes nothing, and the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import laspy
import numpy as np
import psycopg
import pytest
import shapely
from helpers_3dtiles_validator import assert_no_errors
from helpers_tus import upload
from pyproj import Transformer

from recon.simulate import Survey, simulate_district, write_las
from service.jobs.execute import run_job
from service.lidar.ingest import model_after

TO_LONLAT = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def op(auth):
    return auth("operator")


@pytest.fixture(scope="module")
def district() -> Survey:
    return simulate_district(n_buildings=5, area_m=70.0, density=10.0, seed=11)


def _survey(server, op, db_url, settings, s: Survey, path: Path, *, classified: bool = False
            ) -> int:
    """Upload and ingest ``s`` (the fly-and-model job it queues is left queued); its id."""
    write_las(s, path, classified=classified)
    las = laspy.read(path)
    las.header.creation_date = dt.date(2026, 5, 4)
    las.write(path)
    dataset_id, job_id = upload(server, op, path.read_bytes(), filename=path.name)
    assert run_job(job_id, db_url, settings) == "succeeded"
    return dataset_id


def _model(server, op, db_url, settings, dataset_id: int, body: dict | None = None) -> dict:
    r = httpx.post(f"{server.url}/datasets/{dataset_id}/model", headers=op, json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert run_job(job_id, db_url, settings) == "succeeded", \
        httpx.get(f"{server.url}/jobs/{job_id}").json()["error"]
    return httpx.get(f"{server.url}/jobs/{job_id}").json()["report"]


def _lonlat(poly: shapely.Polygon) -> shapely.Polygon:
    return shapely.transform(poly, lambda c: np.column_stack(TO_LONLAT.transform(c[:, 0],
                                                                                 c[:, 1])))


def test_given_footprint_layer_then_a_second_run_changes_nothing(live_server, op, db_url,
                                                                 settings, district, tmp_path):
    ds = _survey(live_server, op, db_url, settings, district, tmp_path / "s.laz")
    # the true footprints as GeoJSON (EPSG:4326: not the survey's CRS), and one bow-tie
    features = [{"type": "Feature", "properties": {"bid": f"B{b.id}"},
                 "geometry": shapely.geometry.mapping(_lonlat(b.footprint))}
                for b in district.buildings]
    x0, y0 = district.bounds[:2]
    bowtie = shapely.Polygon([(x0 + 1, y0 + 1), (x0 + 6, y0 + 6), (x0 + 6, y0 + 1),
                              (x0 + 1, y0 + 6)])
    features.append({"type": "Feature", "properties": {"bid": "bowtie"},
                     "geometry": shapely.geometry.mapping(_lonlat(bowtie))})
    layer = settings.data_dir / "layers" / "footprints.geojson"
    layer.parent.mkdir(parents=True, exist_ok=True)
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    # only layers in the server's data directory can be named
    for outside, why in ((str(tmp_path / "footprints.geojson"), "data directory"),
                         ("../../etc/passwd", "data directory"),
                         ("layers/missing.gpkg", "no footprint layer")):
        r = httpx.post(f"{live_server.url}/datasets/{ds}/model", headers=op,
                       json={"footprints": outside})
        assert r.status_code == 422 and why in r.json()["detail"], r.text

    report = _model(live_server, op, db_url, settings, ds,
                    {"footprints": "layers/footprints.geojson", "footprints_id": "bid"})
    assert report["footprints"]["source"] == "layer footprints.geojson"
    assert report["footprints"]["count"] == len(district.buildings)
    assert [s["id"] for s in report["footprints"]["skipped"]] == ["bowtie"]
    assert report["buildings"]["new"] == len(district.buildings)
    ids = {c["object_id"] for c in report["changes"]}
    assert ids == {f"survey{ds}-B{b.id}" for b in district.buildings}
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT object_id, lod, valid_from FROM city_objects "
                              "WHERE valid_to IS NULL ORDER BY object_id").fetchall()
    assert {r[0] for r in stored} == ids
    assert all(r[2].date() == dt.date(2026, 5, 4) for r in stored)

    # the same survey again, footprints derived this time: every building is unchanged and
    # keeps its version; nothing is written and no tileset version is made
    again = _model(live_server, op, db_url, settings, ds)
    assert again["buildings"] == {"new": 0, "changed": 0, "demolished": 0,
                                  "unchanged": len(district.buildings)}
    assert again["written"] == 0 and again["ended"] == 0 and again["tiles"] is None
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM city_objects").fetchone()[0] == len(ids)
    changes = httpx.get(f"{live_server.url}/datasets/{ds}/changes").json()
    assert {f["properties"]["change"] for f in changes["features"]} == {"unchanged"}


def test_a_classified_file_keeps_its_classes(live_server, op, db_url, settings, district,
                                             tmp_path):
    ds = _survey(live_server, op, db_url, settings, district, tmp_path / "c.laz",
                 classified=True)
    report = _model(live_server, op, db_url, settings, ds)
    assert report["classification"]["kept_file_classes"] is True
    assert report["classification"]["reason"]
    assert report["buildings"]["new"] == len(district.buildings)


def test_cli_models_a_survey_with_a_progress_bar(live_server, op, db_url, settings, district,
                                                 tmp_path):
    ds = _survey(live_server, op, db_url, settings, district, tmp_path / "cli.laz")
    env = {**os.environ, "TWINBASE_DATABASE_URL": db_url,
           "TWINBASE_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run([sys.executable, "-m", "service.cli", "model", "survey", str(ds)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout[done.stdout.index("{\n"):])
    assert out["dataset_id"] == ds and out["buildings"]["new"] == len(district.buildings)
    bar = done.stdout[:done.stdout.index("{\n")]  # not a terminal: the bar's final state
    assert bar.startswith("done") and "100%" in bar
    refused = subprocess.run([sys.executable, "-m", "service.cli", "model", "survey",
                              "999999"], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and "no dataset 999999" in refused.stderr


def test_cli_ingest_models_the_survey_here(db_url, settings, district, tmp_path):
    """`twinbase ingest lidar` runs the model job in the same process: a job queued for a
    worker would wait forever for a command-line user who never starts one."""
    path = tmp_path / "here.laz"
    write_las(district, path)
    env = {**os.environ, "TWINBASE_DATABASE_URL": db_url,
           "TWINBASE_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run([sys.executable, "-m", "service.cli", "ingest", "lidar", str(path)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout[done.stdout.index("{\n"):])
    assert out["model"]["buildings"]["new"] == len(district.buildings)
    assert "model_job_id" not in {k for k in out if k != "model"}
    skipped = subprocess.run([sys.executable, "-m", "service.cli", "ingest", "lidar",
                              str(path), "--no-model"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0, skipped.stderr
    assert "\"model\"" not in skipped.stdout[skipped.stdout.index("{\n"):]
    with psycopg.connect(db_url) as conn:
        kinds = conn.execute("SELECT kind, status FROM jobs ORDER BY id").fetchall()
    # two ingests and one model run, all finished here: nothing left waiting for a worker
    assert sorted(kinds) == [("ingest_lidar", "succeeded")] * 2 + [("model_survey",
                                                                    "succeeded")]


def test_model_option_turns_the_trigger_off():
    assert model_after({}) and model_after({"model": True}) and model_after({"model": "yes"})
    for off in (False, "false", "False", "0", "no", "off"):
        assert not model_after({"model": off})


def test_a_survey_half_outside_the_model_touches_only_what_it_covers(
        live_server, op, db_url, settings, district, tmp_path):
    ds = _survey(live_server, op, db_url, settings, district, tmp_path / "whole.laz")
    first = _model(live_server, op, db_url, settings, ds)
    assert first["buildings"]["new"] == len(district.buildings)
    # the second flight stops halfway across one building
    cut_x = district.buildings[0].footprint.centroid.x
    keep = district.xyz[:, 0] < cut_x
    half = dataclasses.replace(
        district, xyz=district.xyz[keep], return_number=district.return_number[keep],
        number_of_returns=district.number_of_returns[keep],
        truth_class=district.truth_class[keep], building_id=district.building_id[keep])
    ds2 = _survey(live_server, op, db_url, settings, half, tmp_path / "half.laz")
    report = _model(live_server, op, db_url, settings, ds2)
    assert report["buildings"]["demolished"] == 0 and report["buildings"]["new"] == 0
    assert report["buildings"]["changed"] == 0
    whole = [b for b in district.buildings if b.footprint.bounds[2] < cut_x - 2]
    assert report["buildings"]["unchanged"] == len(whole)
    assert report["edge"]["model_buildings_partly_surveyed"] >= 1
    assert any(c["reason"].startswith("over survey") for c in
               report["edge"]["footprints_cut_by_the_edge"])
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT count(*), count(*) FILTER (WHERE valid_to IS NULL) "
                            "FROM city_objects").fetchone()
    assert rows == (len(district.buildings), len(district.buildings))


def test_a_sparse_survey_gives_lod12_with_a_warning(live_server, op, db_url, settings,
                                                   tmp_path):
    sparse = simulate_district(n_buildings=3, area_m=60.0, density=1.2, seed=5)
    ds = _survey(live_server, op, db_url, settings, sparse, tmp_path / "sparse.laz")
    report = _model(live_server, op, db_url, settings, ds)
    assert any("sparse survey" in w for w in report["classification"]["warnings"])
    assert report["lods"] and set(report["lods"]) == {"1.2"}
    assert all(c["lod"] in ("1.2", None) for c in report["changes"])


def test_a_survey_that_razed_every_building_ends_every_row(live_server, op, db_url,
                                                                  settings, district,
                                                                  tmp_path):
    ds = _survey(live_server, op, db_url, settings, district, tmp_path / "before.laz")
    _model(live_server, op, db_url, settings, ds)
    v1 = httpx.get(f"{live_server.url}/city").json()["tileset"]
    # every building gone: its first returns fall to the terrain, its wall returns vanish
    building = district.building_id >= 0
    first = building & (district.return_number == 1)
    xyz = district.xyz.copy()
    xyz[first, 2] = district.terrain(xyz[first, 0], xyz[first, 1])
    keep = ~building | first
    cls = np.where(first, 2, district.truth_class).astype(np.uint8)
    razed = dataclasses.replace(
        district, xyz=xyz[keep], return_number=district.return_number[keep],
        number_of_returns=district.number_of_returns[keep], truth_class=cls[keep],
        building_id=np.where(first, -1, district.building_id)[keep], buildings=[])
    ds2 = _survey(live_server, op, db_url, settings, razed, tmp_path / "after.laz")
    report = _model(live_server, op, db_url, settings, ds2)
    assert report["buildings"]["demolished"] == len(district.buildings)
    assert report["ended"] == len(district.buildings)
    # the rows are ended and the city tileset is emptied too: a new version with a root and
    # no content (the last version would still draw the razed buildings)
    assert report["tiles"]["objects"] == 0 and report["tiles"]["tiles"] == 0
    city = httpx.get(f"{live_server.url}/city").json()
    assert city["objects"] == 0 and city["tileset"]["version"] == v1["version"] + 1
    doc = httpx.get(f"{live_server.url}{city['tileset']['url']}").json()
    assert "content" not in doc["root"] and "children" not in doc["root"]
    current = settings.tiles_dir / "cim" / f"v{city['tileset']['version']}" / "tileset.json"
    assert_no_errors(current)
    listed = httpx.get(f"{live_server.url}/city/objects").json()
    assert listed["numberReturned"] == 0


def test_a_survey_in_feet_is_modelled_in_metres_at_the_heights_of_its_tiles(
        live_server, op, db_url, settings):
    # Autzen: Oregon Lambert in international feet with NAVD88 heights in feet (a CRS name the
    # dataset row keeps as a label only: the file's own CRS is read again, as the tiler does)
    autzen = ROOT / "tests" / "data" / "lidar" / "pdal_autzen_trim.laz"
    settings.max_upload_bytes = 50 * 1024 * 1024
    ds, job = upload(live_server, op, autzen.read_bytes(), filename=autzen.name)
    assert run_job(job, db_url, settings) == "succeeded"
    model_job = httpx.get(f"{live_server.url}/jobs/{job}").json()["report"]["model_job_id"]
    assert run_job(model_job, db_url, settings) == "succeeded"
    report = httpx.get(f"{live_server.url}/jobs/{model_job}").json()["report"]
    assert "to EPSG:32610" in report["frame"]
    assert report["buildings"]["new"] >= 1
    bounds = httpx.get(f"{live_server.url}/datasets/{ds}").json()["bounds3d"]
    objects = httpx.get(f"{live_server.url}/city/objects", params={"limit": 50}).json()
    assert objects["numberReturned"] == report["buildings"]["new"]
    for f in objects["features"]:
        p = f["properties"]
        # metres above the same ellipsoid as the point tiles: inside the survey's 3D bounds
        assert bounds["min"][2] - 1 <= p["min_z"] < p["max_z"] <= bounds["max"][2] + 1
        assert 2 < p["height"] < 40
