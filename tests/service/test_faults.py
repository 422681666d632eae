"""When the server is the problem: a database that is down answers 503 with Retry-After on the
data routes (and every request gets an answer), the service recovers when it is back; a full
disk answers 507 and keeps what was there; errors from both database drivers map to the same
statuses."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import psycopg
import pytest
from sqlalchemy import text

from service.core.faults import translate

TUS = {"Tus-Resumable": "1.0.0"}
DATA_ROUTES = ["/jobs", "/jobs/1", "/datasets", "/datasets/1", "/tiles",
               "/tiles/any/tileset.json", "/collections/road_segments/items",
               "/collections/road_segments/items/1",
               "/collections/road_segments/tiles/WebMercatorQuad/1/1/0", "/city",
               "/city/objects", "/bim/elements", "/layers/traffic/congestion",
               "/layers/water/stations/latest", "/drones", "/drone-routes", "/drones-live"]
# a small survey whose CRS is in the file
LAZ = Path(__file__).resolve().parents[1] / "data" / "lidar" / "laspy_1_4_w_evlr.laz"


# -- the database down ----------------------------------------------------------------------

@pytest.fixture
def own_cluster() -> Iterator[object]:
    """A cluster of this test's own: stopping the session's would break every other test."""
    from service.core import db
    from service.runtime.embedded_pg import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="twinbase-test-down-"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "pg")
    pg.start()
    db.upgrade(pg.url)
    try:
        yield pg
    finally:
        pg.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _answers(url: str, headers: dict[str, str] | None = None) -> dict[str, httpx.Response]:
    return {path: httpx.get(url + path, headers=headers, timeout=30) for path in DATA_ROUTES}


def test_database_down_is_503_with_a_reason_and_recovers(own_cluster, tmp_path,
                                                         live_server_factory):
    from service.app import create_app
    from service.core.auth import create_key
    from service.core.db import sync_engine
    from service.core.settings import Settings

    url = own_cluster.url
    settings = Settings(database_url=url, data_dir=tmp_path / "var", in_process_worker=False,
                        load_samples=False)
    with sync_engine(url).begin() as conn:
        key = create_key(conn, "down-test", "operator")
    sync_engine(url).dispose()
    headers = {"Authorization": f"Bearer {key}"}
    with live_server_factory(create_app(settings, url, in_process_worker=False)) as server:
        before = _answers(server.url)
        assert all(r.status_code < 500 for r in before.values()), {
            p: r.status_code for p, r in before.items()}

        own_cluster.stop()
        try:
            for path, r in _answers(server.url, headers).items():
                assert r.status_code == 503, (path, r.status_code, r.text[:300])
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["retry-after"].isdigit()
                assert "database" in r.json()["detail"], path
            created = httpx.post(f"{server.url}/uploads", headers=TUS | headers | {
                "Upload-Length": "10",
                "Upload-Metadata": "filename " + base64.b64encode(b"a.laz").decode()})
            assert created.status_code == 503
            assert not list(settings.uploads_dir.glob("*.part"))  # nothing without its row
            assert httpx.get(f"{server.url}/health").status_code == 200
            assert httpx.get(f"{server.url}/ready").status_code == 503
            # many at once: every request gets its answer, none is dropped
            with ThreadPoolExecutor(32) as pool:
                statuses = list(pool.map(
                    lambda i: httpx.get(server.url + DATA_ROUTES[i % len(DATA_ROUTES)],
                                        timeout=60).status_code, range(160)))
            assert statuses == [503] * 160
        finally:
            own_cluster.start()

        assert httpx.get(f"{server.url}/ready").status_code == 200
        after = _answers(server.url)
        assert {p: r.status_code for p, r in after.items()} == {
            p: r.status_code for p, r in before.items()}
        created = httpx.post(f"{server.url}/uploads", headers=TUS | headers | {
            "Upload-Length": "10",
            "Upload-Metadata": "filename " + base64.b64encode(b"a.laz").decode()})
        assert created.status_code == 201, created.text


# -- both drivers, one mapping --------------------------------------------------------------

@pytest.mark.parametrize(("sql", "status", "words"), [
    ("SELECT 1 / 0", 400, "division by zero"),
    ("SELECT power(10::float8, 400)", 400, "out of range"),
    ("SELECT '\"\\u0000\"'::jsonb", 400, "NUL"),
    ("SELECT ST_Transform(ST_SetSRID(ST_MakePoint(1e9, 1e9), 4547), 4326)", 400, "domain"),
    ("SELECT * FROM no_such_table", None, ""),  # the server's own mistake stays a 500
])
def test_both_drivers_map_alike(db_url, sql, status, words):
    from service.core.db import make_async_engine, sync_engine

    with pytest.raises(Exception) as sync_error, sync_engine(db_url).connect() as conn:
        conn.execute(text(sql))

    async def run_async() -> BaseException:
        engine = make_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        except Exception as exc:
            return exc
        finally:
            await engine.dispose()
        raise AssertionError("no error")

    async def run_raw() -> BaseException:  # the features read path uses asyncpg directly
        conn = await asyncpg.connect(db_url)
        try:
            await conn.fetchrow(sql)
        except Exception as exc:
            return exc
        finally:
            await conn.close()
        raise AssertionError("no error")

    for error in (sync_error.value, asyncio.run(run_async()), asyncio.run(run_raw())):
        typed = translate(error)
        if status is None:
            assert typed is None, (type(error), typed)
        else:
            assert typed is not None and typed.status == status, (type(error), error)
            assert words in typed.detail


def test_unique_violation_is_a_conflict_and_values_beyond_bigint_a_bad_request(db_url):
    from service.core.db import sync_engine

    with sync_engine(db_url).begin() as conn:
        conn.execute(text("CREATE TEMP TABLE t (id bigint PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(Exception) as dup:
            conn.execute(text("INSERT INTO t VALUES (1)"))
    assert translate(dup.value).status == 409

    async def overflow() -> BaseException:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.fetchrow("SELECT $1::bigint", 2**64)
        except Exception as exc:
            return exc
        finally:
            await conn.close()
        raise AssertionError("no error")

    typed = translate(asyncio.run(overflow()))
    assert typed.status == 400 and "int64" in typed.detail


def test_a_refused_connection_is_unavailable(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://x:y@127.0.0.1:{port}/z"
    with pytest.raises(psycopg.OperationalError) as sync_error:
        psycopg.connect(url, connect_timeout=5)

    async def run() -> BaseException:
        try:
            await asyncpg.connect(url, timeout=5)
        except Exception as exc:
            return exc
        raise AssertionError("no error")

    for error in (sync_error.value, asyncio.run(run())):
        typed = translate(error)
        assert typed is not None and typed.status == 503 and typed.headers["Retry-After"]
    assert translate(FileNotFoundError(2, "gone")) is None  # a missing file is not an outage


# -- a full disk ----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A real 2 MiB file system (tmpfs): writes beyond it fail with ENOSPC, as on a full
    disk. Mounting needs root with CAP_SYS_ADMIN."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` until ``leave`` bytes or fewer are free."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while shutil.disk_usage(disk).free > leave:
                f.write(b"\0" * min(65536, max(4096, shutil.disk_usage(disk).free - leave)))
                f.flush()
        except OSError:
            pass
    return filler


def test_upload_chunk_on_a_full_disk_is_507_and_frees_its_bytes(small_disk, db_url, auth,
                                                                 live_server_factory):
    """An upload the disk cannot finish is refused with 507 before its chunk is written,
    and what it held is freed at once rather than keeping a full disk full until it
    expires; the same file uploads again once there is room."""
    from service.app import create_app
    from service.core.settings import Settings

    settings = Settings(database_url=db_url, data_dir=small_disk / "var",
                        in_process_worker=False, load_samples=False,
                        upload_free_reserve_bytes=0)
    settings.uploads_dir.mkdir(parents=True)
    headers = auth("operator")
    data = os.urandom(1024 * 1024)
    meta = {"Upload-Length": str(len(data)),
            "Upload-Metadata": "filename " + base64.b64encode(b"full.laz").decode()}
    chunk = {"Content-Type": "application/offset+octet-stream"}
    with live_server_factory(create_app(settings, db_url, in_process_worker=False)) as server:
        r = httpx.post(f"{server.url}/uploads", headers=TUS | headers | meta)
        location = r.headers["Location"]
        part = settings.uploads_dir / (location.rsplit("/", 1)[1] + ".part")
        first = httpx.patch(location, content=data[:100_000],
                            headers=TUS | headers | chunk | {"Upload-Offset": "0"})
        assert first.status_code == 204
        filler = _fill(small_disk, leave=200_000)
        full = httpx.patch(location, content=data[100_000:], timeout=60,
                           headers=TUS | headers | chunk | {"Upload-Offset": "100000"})
        assert full.status_code == 507, full.text
        assert full.headers["content-type"] == "application/problem+json"
        assert "disk cannot hold" in full.json()["detail"]
        assert not part.exists()  # freed, not left to keep the disk full
        assert httpx.get(location, headers=headers).json()["status"] == "failed"

        filler.unlink()
        again = httpx.post(f"{server.url}/uploads", headers=TUS | headers | meta)
        done = httpx.patch(again.headers["Location"], content=data, timeout=60,
                           headers=TUS | headers | chunk | {"Upload-Offset": "0"})
        assert done.status_code == 204, done.text
        dataset = done.headers["Twinbase-Dataset-Id"]
        source = next((settings.data_dir / "sources" / dataset).iterdir())
        assert source.read_bytes() == data


def test_a_job_whose_output_fills_the_disk_fails_saying_so(small_disk, db_url, auth,
                                                           live_server_factory):
    from helpers_tus import upload_file

    from service.app import create_app
    from service.core.settings import Settings
    from service.jobs.execute import run_job

    settings = Settings(database_url=db_url, data_dir=small_disk / "var",
                        in_process_worker=False, load_samples=False,
                        upload_free_reserve_bytes=0)
    with live_server_factory(create_app(settings, db_url, in_process_worker=False)) as server:
        _, job_id = upload_file(server, auth("operator"), LAZ)
        _fill(small_disk)
        assert run_job(job_id, db_url, settings) == "failed"
        job = httpx.get(f"{server.url}/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "disk is full" in job["error"], job["error"]
    assert "upload the file again" in job["error"]  # its source is not kept for a retry
