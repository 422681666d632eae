"""Resumable uploads (tus 1.0.0) on a live server: resume after a dropped connection,
checksums, size limits, hostile names, and the dataset + job a completed upload makes."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psycopg
import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "lidar" / "pdal_autzen_trim.laz"
TUS = {"Tus-Resumable": "1.0.0"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def meta(**fields: str) -> str:
    return ",".join(f"{k} {b64(v)}" for k, v in fields.items())


@pytest.fixture
def op(auth):
    return auth("operator")


def create(server, headers, length: int, **fields: str) -> httpx.Response:
    return httpx.post(f"{server.url}/uploads", headers=TUS | headers | {
        "Upload-Length": str(length), "Upload-Metadata": meta(**fields)})


def patch(location: str, headers, offset: int, body: bytes, **extra: str) -> httpx.Response:
    return httpx.patch(location, content=body, headers=TUS | headers | extra | {
        "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def head_offset(location: str, headers) -> int:
    r = httpx.head(location, headers=TUS | headers)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    return int(r.headers["Upload-Offset"])


def drop_mid_body(location: str, headers, offset: int, body: bytes, sent: int) -> None:
    """Announce the whole body, send only ``sent`` bytes, then vanish (a lost link)."""
    url = urlparse(location)
    lines = [f"PATCH {url.path} HTTP/1.1", f"Host: {url.netloc}", "Tus-Resumable: 1.0.0",
             f"Upload-Offset: {offset}", "Content-Type: application/offset+octet-stream",
             f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body[:sent])
        sock.shutdown(socket.SHUT_WR)


def test_options_advertises_tus(live_server):
    r = httpx.options(f"{live_server.url}/uploads")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert {"creation", "termination", "checksum"} <= set(r.headers["Tus-Extension"].split(","))


def test_resume_after_a_dropped_connection_then_complete(live_server, op, db_url, settings):
    data = SAMPLE.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    r = create(live_server, op, len(data), filename=SAMPLE.name, sha256=sha, crs="EPSG:2994")
    assert r.status_code == 201, r.text
    location = r.headers["Location"]
    assert head_offset(location, op) == 0

    half = len(data) // 2
    assert patch(location, op, 0, data[:half]).status_code == 204
    assert head_offset(location, op) == half

    # the link drops 100 kB into the next chunk: what arrived is kept
    drop_mid_body(location, op, half, data[half:], 100_000)
    import time

    deadline = time.monotonic() + 10
    while head_offset(location, op) == half and time.monotonic() < deadline:
        time.sleep(0.1)
    resumed_at = head_offset(location, op)
    assert half < resumed_at <= half + 100_000

    # a stale offset is refused with the right one
    stale = patch(location, op, half, data[half:])
    assert stale.status_code == 409 and stale.headers["Upload-Offset"] == str(resumed_at)

    done = patch(location, op, resumed_at, data[resumed_at:])
    assert done.status_code == 204, done.text
    assert done.headers["Upload-Offset"] == str(len(data))
    dataset_id = int(done.headers["Twinbase-Dataset-Id"])
    job_id = int(done.headers["Twinbase-Job-Id"])

    status = httpx.get(location, headers=op).json()
    assert status["status"] == "complete" and status["dataset_id"] == dataset_id
    with psycopg.connect(db_url) as conn:
        kind, sha_db, size, path, opts = conn.execute(
            "SELECT kind, sha256, size_bytes, source_path, options FROM datasets WHERE id = %s",
            (dataset_id,)).fetchone()
        job_kind, job_status, queued = conn.execute(
            "SELECT j.kind, j.status, q.status FROM jobs j "
            "JOIN procrastinate_jobs q ON q.id = j.queue_job_id WHERE j.id = %s",
            (job_id,)).fetchone()
    assert (kind, sha_db, size) == ("lidar", sha, len(data))
    assert Path(path).read_bytes() == data  # byte for byte, across the drop
    assert opts == {"crs": "EPSG:2994"}
    assert (job_kind, job_status, queued) == ("ingest_lidar", "queued", "todo")
    assert not list(settings.uploads_dir.glob("*.part"))


def test_works_with_a_real_tus_client(live_server, op, db_url):
    from tusclient import client as tus_client

    tus = tus_client.TusClient(f"{live_server.url}/uploads", headers=op)
    uploader = tus.uploader(str(SAMPLE), chunk_size=300_000,
                            metadata={"filename": SAMPLE.name, "crs": "EPSG:2994"})
    uploader.upload()
    status = httpx.get(uploader.url, headers=op).json()
    assert status["status"] == "complete" and status["offset"] == SAMPLE.stat().st_size
    assert status["job_id"] is not None
    # the audit log has the creation and the last chunk, not every chunk
    upload_id = uploader.url.rstrip("/").rsplit("/", 1)[1]
    chunks = -(-SAMPLE.stat().st_size // 300_000)
    assert chunks >= 3
    # audit rows are written just after each response: once no request is running, every
    # row there will be (an intermediate chunk's one included, were it written) is there
    live_server.wait_idle()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT method, status, detail FROM audit_log "
                            "WHERE detail->>'upload' = %s ORDER BY id", (upload_id,)).fetchall()
    assert [(m, st) for m, st, _ in rows] == [("POST", 201), ("PATCH", 204)], rows
    assert rows[1][2]["job"] == status["job_id"]


def test_chunk_with_a_wrong_checksum_is_discarded(live_server, op):
    data = SAMPLE.read_bytes()[:200_000]
    location = create(live_server, op, len(data), filename="part.laz").headers["Location"]
    wrong = base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
    r = patch(location, op, 0, data[:50_000], **{"Upload-Checksum": f"sha1 {wrong}"})
    assert r.status_code == 460
    assert r.headers["content-type"] == "application/problem+json"
    assert "send it again" in r.json()["detail"]
    assert head_offset(location, op) == 0
    right = base64.b64encode(hashlib.sha1(data[:50_000]).digest()).decode()
    ok = patch(location, op, 0, data[:50_000], **{"Upload-Checksum": f"sha1 {right}"})
    assert ok.status_code == 204 and head_offset(location, op) == 50_000


def test_whole_file_sha256_mismatch_fails_the_upload_and_makes_no_dataset(live_server, op,
                                                                          db_url):
    data = SAMPLE.read_bytes()[:100_000]
    r = create(live_server, op, len(data), filename="bad.laz", sha256="0" * 64)
    location = r.headers["Location"]
    with psycopg.connect(db_url) as conn:
        before = conn.execute("SELECT count(*) FROM datasets").fetchone()[0]
    done = patch(location, op, 0, data)
    assert done.status_code == 460
    assert "SHA-256" in done.json()["detail"] and "upload it again" in done.json()["detail"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM datasets").fetchone()[0] == before
    assert httpx.get(location, headers=op).json()["status"] == "failed"


def test_size_limit(live_server, op, settings):
    too_big = settings.max_upload_bytes + 1
    r = create(live_server, op, too_big, filename="huge.laz")
    assert r.status_code == 413
    assert f"{settings.max_upload_bytes:,}" in r.json()["detail"]
    # a chunk that runs past the declared length is refused and discarded
    location = create(live_server, op, 1000, filename="small.laz").headers["Location"]
    over = patch(location, op, 0, b"x" * 1500)
    assert over.status_code == 413 and head_offset(location, op) == 0


@pytest.mark.parametrize("hostile", ["../../../etc/cron.d/evil.laz", "/etc/passwd.laz",
                                     "..\\..\\windows\\system.laz", "a/../../b.laz"])
def test_hostile_names_never_leave_the_data_directory(live_server, op, settings, db_url,
                                                      hostile):
    data = SAMPLE.read_bytes()
    location = create(live_server, op, len(data), filename=hostile).headers["Location"]
    done = patch(location, op, 0, data)
    assert done.status_code == 204
    with psycopg.connect(db_url) as conn:
        path, name = conn.execute("SELECT source_path, name FROM datasets WHERE id = %s",
                                  (int(done.headers["Twinbase-Dataset-Id"]),)).fetchone()
    stored = Path(path).resolve()
    assert stored.is_relative_to(settings.data_dir.resolve())
    assert ".." not in name and "/" not in name and "\\" not in name
    assert stored.name == name and stored.read_bytes() == data


def test_bad_requests_say_why(live_server, op, auth):
    url = f"{live_server.url}/uploads"
    no_length = httpx.post(url, headers=TUS | op)
    assert no_length.status_code == 400 and "Upload-Length" in no_length.json()["detail"]
    unknown = create(live_server, op, 10, filename="notes.txt")
    assert unknown.status_code == 422 and ".las" in unknown.json()["detail"]
    bad_kind = create(live_server, op, 10, filename="x.laz", kind="video")
    assert bad_kind.status_code == 422
    bad_sha = create(live_server, op, 10, filename="x.laz", sha256="abc")
    assert bad_sha.status_code == 400
    bad_meta = httpx.post(url, headers=TUS | op | {"Upload-Length": "10",
                                                   "Upload-Metadata": "filename !!!"})
    assert bad_meta.status_code == 400
    version = httpx.post(url, headers=op | {"Tus-Resumable": "0.2.2", "Upload-Length": "10"})
    assert version.status_code == 412
    location = create(live_server, op, 10, filename="x.laz").headers["Location"]
    wrong_type = httpx.patch(location, content=b"0123456789", headers=TUS | op | {
        "Upload-Offset": "0", "Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    assert httpx.head(f"{url}/{'f' * 32}", headers=TUS | op).status_code == 404
    assert httpx.head(location, headers=TUS).status_code == 401
    assert httpx.head(location, headers=TUS | auth("viewer")).status_code == 403


def test_termination_removes_the_bytes(live_server, op, settings):
    location = create(live_server, op, 1000, filename="gone.laz").headers["Location"]
    assert patch(location, op, 0, b"x" * 400).status_code == 204
    assert httpx.delete(location, headers=TUS | op).status_code == 204
    assert not list(settings.uploads_dir.glob("*.part"))
    assert httpx.head(location, headers=TUS | op).status_code == 410


def test_expired_uploads_are_refused_and_their_bytes_freed(live_server, op, settings, db_url):
    from service.uploads.chores import expire_uploads

    location = create(live_server, op, 1000, filename="late.laz").headers["Location"]
    assert patch(location, op, 0, b"x" * 300).status_code == 204
    upload_id = location.rsplit("/", 1)[1]
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE uploads SET expires_at = now() - interval '1 minute' "
                     "WHERE id = %s", (upload_id,))
    assert patch(location, op, 300, b"x" * 300).status_code == 410
    assert expire_uploads(db_url, settings) >= 1
    assert not (settings.uploads_dir / f"{upload_id}.part").exists()


def test_an_upload_the_disk_cannot_hold_is_refused_before_its_bytes_fill_it(
        live_server, op, settings):
    """The disk's state is set through the free space the server keeps in reserve: a
    reserve that leaves 100 MB stands for a disk with 100 MB left."""
    from service.uploads.space import free_bytes

    settings.max_upload_bytes = 10 * 1024**3
    declared = 200 * 1024**2
    disk = settings.data_dir.parent  # the file system the uploads go to
    settings.upload_free_reserve_bytes = free_bytes(disk) - 100 * 1024**2
    refused = create(live_server, op, declared, filename="big.laz")
    assert refused.status_code == 507, refused.text
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "cannot hold" in problem["detail"] and problem["needed_bytes"] == declared
    assert not list(settings.uploads_dir.glob("*.part"))

    # space enough when it starts; the disk fills while it is on its way
    settings.upload_free_reserve_bytes = 0
    location = create(live_server, op, declared, filename="big.laz").headers["Location"]
    assert patch(location, op, 0, b"x" * 1024**2).status_code == 204
    upload_id = location.rsplit("/", 1)[1]
    assert (settings.uploads_dir / f"{upload_id}.part").stat().st_size == 1024**2
    settings.upload_free_reserve_bytes = free_bytes(disk) - 100 * 1024**2
    late = patch(location, op, 1024**2, b"x" * 1024**2)
    assert late.status_code == 507, late.text
    assert late.json()["needed_bytes"] == declared - 1024**2
    # the upload cannot complete: it is failed, and what it held is freed at once
    assert not (settings.uploads_dir / f"{upload_id}.part").exists()
    status = httpx.get(location, headers=op).json()
    assert status["status"] == "failed" and status["offset"] == 0
    settings.upload_free_reserve_bytes = 0
    assert patch(location, op, 0, b"x" * 1024).status_code == 409


def test_partial_files_nothing_receives_into_are_freed(live_server, op, settings, db_url):
    import os

    from service.core.db import sync_engine
    from service.uploads.space import remove_orphan_parts

    alive = create(live_server, op, 1000, filename="alive.laz").headers["Location"]
    assert patch(alive, op, 0, b"x" * 300).status_code == 204
    failed = create(live_server, op, 1000, filename="failed.laz").headers["Location"]
    assert patch(failed, op, 0, b"x" * 300).status_code == 204
    failed_id = failed.rsplit("/", 1)[1]
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE uploads SET status = 'failed' WHERE id = %s", (failed_id,))
    # a crash between the file and its row: no row at all, old
    stray = settings.uploads_dir / f"{'e' * 32}.part"
    stray.write_bytes(b"y" * 500)
    os.utime(stray, (time.time() - 3600, time.time() - 3600))
    # ... and one that may be an upload being created this moment
    fresh = settings.uploads_dir / f"{'d' * 32}.part"
    fresh.write_bytes(b"z")

    assert remove_orphan_parts(sync_engine(db_url), settings.uploads_dir) == 2
    left = {p.name for p in settings.uploads_dir.glob("*.part")}
    assert left == {f"{alive.rsplit('/', 1)[1]}.part", fresh.name}
    assert patch(alive, op, 300, b"x" * 700).status_code == 204  # untouched, completes
