"""A LiDAR survey through the service: upload, job with progress, survey row, tiles served
with cache validators, a newer version of the same survey, and a bad file that changes
nothing that was published."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest
from helpers_tus import upload
from shapely.geometry import shape

from service.jobs.execute import run_job

DATA = Path(__file__).resolve().parents[1] / "data" / "lidar"
AUTZEN = DATA / "pdal_autzen_trim.laz"  # 110,000 points, Oregon Lambert (feet) in the file


@pytest.fixture
def op(auth):
    return auth("operator")


@pytest.fixture
def big_settings(settings):
    settings.max_upload_bytes = 50 * 1024 * 1024
    return settings


def test_survey_upload_to_published_tiles(live_server, op, db_url, big_settings):
    settings = big_settings
    dataset_id, job_id = upload(live_server, op, AUTZEN.read_bytes(),
                                filename=AUTZEN.name, survey="autzen test")
    assert run_job(job_id, db_url, settings) == "succeeded"

    job = httpx.get(f"{live_server.url}/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["progress"]["fraction"] == 1.0
    assert job["progress"]["items_done"] == 110_000 == job["progress"]["items_total"]
    assert job["report"]["first_view_s"] is not None
    assert job["report"]["first_view_s"] <= job["report"]["tiling_s"]

    ds = httpx.get(f"{live_server.url}/datasets/{dataset_id}").json()
    assert ds["status"] == "ready" and ds["stats"]["points"] == 110_000
    assert sum(ds["stats"]["class_counts"].values()) == 110_000
    assert ds["stats"]["density_per_m2"] > 0
    assert ds["acquired_at"] is not None
    lo, hi = ds["bounds3d"]["min"], ds["bounds3d"]["max"]
    assert -123.08 < lo[0] < hi[0] < -123.06 and 44.04 < lo[1] < hi[1] < 44.06  # Autzen
    footprint = shape(ds["footprint"])
    bbox_area = (hi[0] - lo[0]) * (hi[1] - lo[1])
    assert footprint.is_valid and 0.3 * bbox_area < footprint.area < bbox_area  # not the bbox
    assert ds["tilesets"] and ds["tilesets"][0]["is_current"]

    name = ds["tilesets"][0]["name"]
    assert name == "survey-autzen-test"
    current = httpx.get(f"{live_server.url}/tiles/{name}/tileset.json")
    assert current.status_code == 200
    assert current.headers["cache-control"].startswith("public, max-age=")
    etag = current.headers["etag"]
    assert httpx.get(f"{live_server.url}/tiles/{name}/tileset.json",
                     headers={"If-None-Match": etag}).status_code == 304
    doc = current.json()
    assert doc["asset"]["version"] == "1.1"
    uris = _content_uris(doc["root"])
    assert uris and all(u.startswith("v1/") for u in uris)
    content = httpx.get(f"{live_server.url}/tiles/{name}/{uris[0]}")
    assert content.status_code == 200
    assert content.headers["content-type"] == "model/gltf-binary"
    assert "immutable" in content.headers["cache-control"]
    assert content.content[:4] == b"glTF"
    assert httpx.get(f"{live_server.url}/tiles/{name}/{uris[0]}", headers={
        "If-None-Match": content.headers["etag"]}).status_code == 304
    part = httpx.get(f"{live_server.url}/tiles/{name}/{uris[0]}", headers={"Range": "bytes=0-11"})
    assert part.status_code == 206 and part.content == content.content[:12]
    escape = httpx.get(f"{live_server.url}/tiles/{name}/v1/..%2F..%2F..%2Fetc%2Fpasswd")
    assert escape.status_code == 404


def test_newer_survey_of_the_same_area_adds_a_version_and_a_bad_one_changes_nothing(
        live_server, op, db_url, big_settings, tmp_path):
    settings = big_settings
    data = AUTZEN.read_bytes()
    _, first_job = upload(live_server, op, data, filename="block.laz", survey="block 9")
    assert run_job(first_job, db_url, settings) == "succeeded"
    _, second_job = upload(live_server, op, data, filename="block.laz", survey="block 9")
    assert run_job(second_job, db_url, settings) == "succeeded"
    name = "survey-block-9"
    current = httpx.get(f"{live_server.url}/tiles/{name}/tileset.json")
    assert current.headers["Twinbase-Tileset-Version"] == "2"
    old = httpx.get(f"{live_server.url}/tiles/{name}/v1/tileset.json")
    assert old.status_code == 200  # the older version stays readable

    # a truncated file of the same survey: the job fails with a reason, v2 stays current
    truncated = data[: len(data) // 3]
    dataset_id, bad_job = upload(live_server, op, truncated, filename="block.laz",
                                 survey="block 9")
    assert run_job(bad_job, db_url, settings) == "failed"
    job = httpx.get(f"{live_server.url}/jobs/{bad_job}").json()
    assert job["error"] and "internal error" not in job["error"]
    assert httpx.get(f"{live_server.url}/datasets/{dataset_id}").json()["status"] == "failed"
    after = httpx.get(f"{live_server.url}/tiles/{name}/tileset.json")
    assert after.headers["Twinbase-Tileset-Version"] == "2"
    assert after.content == current.content
    with psycopg.connect(db_url) as conn:
        status, path = conn.execute(
            "SELECT status, path FROM tilesets WHERE name = %s AND version = 3",
            (name,)).fetchone()
    assert status == "failed"
    assert not (settings.tiles_dir / path).exists()
    assert httpx.get(f"{live_server.url}/tiles/{name}/v3/tileset.json").status_code == 404


@pytest.mark.parametrize("case", ["not_las", "no_crs", "zero_points"])
def test_bad_files_fail_the_job_with_a_reason_and_publish_nothing(live_server, op, db_url,
                                                                   big_settings, case):
    import io

    import laspy
    import numpy as np

    if case == "not_las":
        data, meta = b"PK\x03\x04 this is a zip file, not a survey" * 100, {}
    elif case == "no_crs":
        meta = {}
        with laspy.open(DATA / "pdal_autzen_trim.laz") as f:
            las = f.read()
        las.header.vlrs.clear()
        buf = io.BytesIO()
        las.write(buf, do_compress=False)
        data = buf.getvalue()
    else:
        header = laspy.LasHeader(point_format=3, version="1.2")
        header.scales = np.array([0.01, 0.01, 0.01])
        las = laspy.LasData(header)
        buf = io.BytesIO()
        las.write(buf)
        data, meta = buf.getvalue(), {"crs": "EPSG:4547"}
    dataset_id, job_id = upload(live_server, op, data, filename=f"{case}.las",
                                survey=f"bad {case}", **meta)
    assert run_job(job_id, db_url, big_settings) == "failed"
    job = httpx.get(f"{live_server.url}/jobs/{job_id}").json()
    assert job["error"] and "internal error" not in job["error"], job["error"]
    if case == "no_crs":
        assert "crs" in job["error"].lower()
    dataset = httpx.get(f"{live_server.url}/datasets/{dataset_id}").json()
    assert dataset["status"] == "failed" and dataset["stats"]["error"] == job["error"]
    assert httpx.get(f"{live_server.url}/tiles/survey-bad-{case.replace('_', '-')}"
                     "/tileset.json").status_code == 404


def _content_uris(tile: dict) -> list[str]:
    out, stack = [], [tile]
    while stack:
        node = stack.pop()
        if "content" in node:
            out.append(node["content"]["uri"])
        stack.extend(node.get("children", []))
    return out



def test_copc_with_a_false_geocentric_label_fails_then_tiles_with_the_crs_given(
        live_server, op, db_url, big_settings):
    """lone-star.copc.laz declares EPSG:4978 but holds UTM 12N coordinates: the job fails with
    the likely cause and the way out, publishes nothing; uploaded again with ``crs`` it tiles
    every point where it belongs (Lone Star Geyser, Yellowstone)."""
    data = (DATA / "pdal_lone-star.copc.laz").read_bytes()
    dataset_id, job_id = upload(live_server, op, data, filename="lone-star.copc.laz",
                                survey="lone star")
    assert run_job(job_id, db_url, big_settings) == "failed"
    error = httpx.get(f"{live_server.url}/jobs/{job_id}").json()["error"]
    assert "geocentric" in error and "below the Earth's surface" in error, error
    assert "crs=" in error
    assert httpx.get(f"{live_server.url}/datasets/{dataset_id}").json()["status"] == "failed"
    assert httpx.get(f"{live_server.url}/tiles/survey-lone-star/tileset.json"
                     ).status_code == 404

    dataset_id, job_id = upload(live_server, op, data, filename="lone-star.copc.laz",
                                survey="lone star", crs="EPSG:26912")
    assert run_job(job_id, db_url, big_settings) == "succeeded"
    ds = httpx.get(f"{live_server.url}/datasets/{dataset_id}").json()
    assert ds["stats"]["points"] == 518_862 and ds["crs"] == "EPSG:26912"
    lo, hi = ds["bounds3d"]["min"], ds["bounds3d"]["max"]
    assert -110.9 < lo[0] < hi[0] < -110.7 and 44.3 < lo[1] < hi[1] < 44.5
    assert 2000 < lo[2] < hi[2] < 2500  # metres above the ellipsoid, not 1,433 km below


def test_vertical_datum_of_a_las_file_reaches_the_dataset(live_server, op, db_url, big_settings):
    """pdal_4_6_crop.las declares NAVD88 heights in US survey feet: the dataset records the
    compound CRS and which geoid made the heights ellipsoidal, and sits about 21 m lower
    than the heights taken as ellipsoidal (7,077.92 ft = 2,157.3 m at the lowest point)."""
    src = DATA / "pdal_4_6_crop.las"
    dataset_id, job_id = upload(live_server, op, src.read_bytes(), filename=src.name,
                                survey="4 6 crop")
    assert run_job(job_id, db_url, big_settings) == "succeeded"
    ds = httpx.get(f"{live_server.url}/datasets/{dataset_id}").json()
    assert ds["crs"] == "EPSG:2903+EPSG:6360"
    assert "NAVD88" in ds["height_note"] and "EGM96" in ds["height_note"]
    assert "taken as ellipsoidal" not in ds["height_note"]
    lowest = 7077.92 * 1200 / 3937
    assert 19.5 < lowest - ds["bounds3d"]["min"][2] < 22.0


def test_model_false_in_the_upload_metadata_queues_no_model_job(live_server, op, db_url,
                                                                big_settings):
    """Fly and model follows every survey unless its upload says model=false; the option
    reaches the job only if the upload keeps it."""
    dataset_id, job_id = upload(live_server, op, AUTZEN.read_bytes(),
                                filename=AUTZEN.name, survey="autzen no model", model="false")
    assert run_job(job_id, db_url, big_settings) == "succeeded"
    job = httpx.get(f"{live_server.url}/jobs/{job_id}").json()
    assert "model_job_id" not in job["report"]
    jobs = httpx.get(f"{live_server.url}/jobs", params={"dataset": dataset_id}).json()
    assert [j["kind"] for j in jobs] == ["ingest_lidar"]
    ds = httpx.get(f"{live_server.url}/datasets/{dataset_id}").json()
    assert ds["options"]["model"] == "false"
