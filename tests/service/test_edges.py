"""Smaller things at the service's edge: a taken port, the audit log under a flood of
refused writes, admin keys, /ready and /metrics, HEAD, and the public URL in links."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from helpers_server import ServeProcess

from service.app import create_app

ROOT = Path(__file__).resolve().parents[2]
LAS = ROOT / "tests" / "data" / "lidar" / "pdal_1.2-with-color.las"


def _client(settings, url: str) -> TestClient:
    return TestClient(create_app(settings, url, in_process_worker=False))


# -- twinbase serve on a port in use ---------------------------------------------------------

def test_serve_on_a_taken_port_exits_at_once_with_an_error(db_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServeProcess(db_url, tmp_path / "var", port=port)
        try:
            code = server.proc.wait(30)
        except Exception:
            server.stop()
            raise AssertionError("serve kept running on a taken port:\n"
                                 + server.output()) from None
        server.stop()
    assert code == 1, server.output()
    assert f"cannot bind 127.0.0.1:{port}" in server.output()


# -- the audit log and refused writes ----------------------------------------------------------

def test_refused_writes_do_not_flood_the_audit_log_and_none_is_lost(live_server, db_url,
                                                                    monkeypatch):
    from service.core import observe

    window = 3.0
    monkeypatch.setattr(observe, "REFUSED_ROW_SECONDS", window)
    with psycopg.connect(db_url) as conn:
        last = conn.execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()[0]
    sent = 0
    start = time.monotonic()
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        for i in range(300):
            bad = {"Authorization": "Bearer tb_wrong"} if i % 3 == 0 else {}
            r = client.post("/keys", json={"name": "x", "role": "viewer"}, headers=bad)
            assert r.status_code == 401
            sent += 1
        took = time.monotonic() - start
        time.sleep(window + 0.2)
        assert client.post("/keys", json={}).status_code == 401  # carries the count
        sent += 1
    live_server.wait_idle()  # audit rows are written just after the responses
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT key_name, path, status, detail FROM audit_log "
                            "WHERE id > %s AND key_name IS NULL ORDER BY id",
                            (last,)).fetchall()
    assert len(rows) <= took / window + 2, (len(rows), took)
    assert all(r[1] == "/keys" and r[2] == 401 and r[3]["refused_without_key"] for r in rows)
    counted = sum(r[3].get("refused_since_previous_row", {}).get("count", 0) for r in rows)
    assert len(rows) + counted == sent
    last_row = rows[-1][3]["refused_since_previous_row"]
    assert last_row["by_status"] == {"401": last_row["count"]}
    assert last_row["busiest_clients"] == {"127.0.0.1": last_row["count"]}


# -- admin keys ------------------------------------------------------------------------------

@pytest.fixture
def keys_db(migrated_database) -> str:
    return migrated_database()


def _key(url: str, name: str, role: str) -> dict[str, str]:
    from service.core.auth import create_key
    from service.core.db import sync_engine

    with sync_engine(url).begin() as conn:
        return {"Authorization": f"Bearer {create_key(conn, name, role)}"}


def _active_admins(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT name FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL")]


def test_an_admin_key_cannot_revoke_itself_nor_the_last_admin_key(settings, keys_db):
    from service.core.auth import revoke_key
    from service.core.db import sync_engine
    from service.core.errors import Conflict

    first, second = _key(keys_db, "admin-1", "admin"), _key(keys_db, "admin-2", "admin")
    with _client(settings, keys_db) as client:
        own = client.delete("/keys/admin-1", headers=first)
        assert own.status_code == 409 and "cannot revoke itself" in own.json()["detail"]
        assert client.get("/keys", headers=first).status_code == 200  # still works
        assert client.delete("/keys/admin-2", headers=first).status_code == 204
    assert _active_admins(keys_db) == ["admin-1"]
    # the command line, which has no key of its own, keeps the last admin key too
    with pytest.raises(Conflict, match="last active admin key"), \
            sync_engine(keys_db).begin() as conn:
        revoke_key(conn, "admin-1")
    assert _active_admins(keys_db) == ["admin-1"]
    del second


def test_two_admins_revoking_each_other_at_once_leave_one(live_server_factory, settings,
                                                          keys_db):
    keys = {n: _key(keys_db, n, "admin") for n in ("admin-a", "admin-b")}
    with live_server_factory(create_app(settings, keys_db, in_process_worker=False)) as srv:
        answers: dict[str, int] = {}
        go = threading.Barrier(2)

        def revoke(me: str, other: str) -> None:
            go.wait()
            answers[me] = httpx.delete(f"{srv.url}/keys/{other}", headers=keys[me],
                                       timeout=30).status_code

        threads = [threading.Thread(target=revoke, args=("admin-a", "admin-b")),
                   threading.Thread(target=revoke, args=("admin-b", "admin-a"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert sorted(answers.values())[0] == 204, answers
    assert sorted(answers.values())[1] in (401, 409), answers
    assert len(_active_admins(keys_db)) == 1


# -- /ready and /metrics -------------------------------------------------------------------------

def test_ready_does_not_show_the_database_error(settings, caplog):
    url = "postgresql://twinbase:s3cret-pw@127.0.0.1:1/no_such_db"
    with _client(settings, url) as client:
        r = client.get("/ready")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    for leak in ("127.0.0.1", "s3cret", "no_such_db", "refused", "Error", "port"):
        assert leak not in detail, detail
    assert "unreachable" in detail
    assert any("127.0.0.1" in rec.getMessage() or "refused" in rec.getMessage()
               for rec in caplog.records), "the reason must be in the server log"


def test_metrics_need_a_key_when_reads_do(settings, db_url, auth):
    locked = settings.model_copy(update={"read_requires_key": True})
    with _client(locked, db_url) as client:
        r = client.get("/metrics")
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        ok = client.get("/metrics", headers=auth("viewer"))
        assert ok.status_code == 200 and "twinbase_http_requests_total" in ok.text
    with _client(settings, db_url) as client:  # public when reads are
        assert client.get("/metrics").status_code == 200


# -- HEAD ----------------------------------------------------------------------------------------

@pytest.fixture
def published(settings, db_url) -> str:
    """A real point-cloud tileset, tiled and published under a unique name."""
    from service.core.db import sync_engine
    from service.tilesets.store import begin_version, publish_in
    from tiler.pointcloud import tile_point_cloud

    name = f"head-test-{time.monotonic_ns()}"
    engine = sync_engine(db_url)
    tv = begin_version(engine, settings.tiles_dir, name, "pointcloud", dataset_id=None,
                       job_id=None)
    tile_point_cloud(LAS, tv.path, crs="EPSG:2994", workers=1)
    with engine.begin() as conn:
        publish_in(conn, tv, {})
    return name


def test_head_answers_like_get_on_every_get_route(live_server, published):
    root = httpx.get(f"{live_server.url}/tiles/{published}/tileset.json").json()["root"]
    content = root["content"]["uri"] if "content" in root else \
        root["children"][0]["content"]["uri"]
    paths = ["/health", "/ready", "/tiles", f"/tiles/{published}/tileset.json",
             f"/tiles/{published}/{content}", "/collections/road_segments",
             "/collections/road_segments/items?limit=1", "/openapi.json"]
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        for path in paths:
            get = client.get(path, headers={"Accept-Encoding": "identity"})
            head = client.head(path, headers={"Accept-Encoding": "identity"})
            assert get.status_code == 200, (path, get.text[:200])
            assert head.status_code == 200, (path, head.text[:200])
            assert head.content == b""
            for name in ("content-type", "content-length", "etag", "cache-control"):
                assert head.headers.get(name) == get.headers.get(name), (path, name)
        # still a 405 where there is no GET, and tus keeps its own HEAD
        assert client.head("/telemetry/one").status_code == 405
        assert client.head("/uploads/nope", headers={"Tus-Resumable": "1.0.0"}
                           ).status_code in (401, 404)


# -- the public URL ----------------------------------------------------------------------------

def test_links_use_the_public_url_not_the_host_header(settings, db_url, auth,
                                                      live_server_factory):
    public = settings.model_copy(update={"public_url": "https://twin.example.org/base"})
    evil = {"Host": "evil.example.com"}
    with live_server_factory(create_app(public, db_url, in_process_worker=False)) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as client:
        landing = client.get("/", headers=evil).json()
        assert {link["href"] for link in landing["links"]} >= {
            "https://twin.example.org/base/collections",
            "https://twin.example.org/base/api"}
        items = client.get("/collections/road_segments/items?limit=1", headers=evil)
        hrefs = [link["href"] for link in items.json()["links"]]
        assert hrefs and all(h.startswith("https://twin.example.org/base/") for h in hrefs)
        tiles = client.get("/collections/road_segments/tiles", headers=evil).json()
        assert tiles["tilesets"][0]["links"][0]["href"].startswith(
            "https://twin.example.org/base/collections/road_segments/tiles/")
        up = client.post("/uploads", headers=evil | auth("operator") | {
            "Tus-Resumable": "1.0.0", "Upload-Length": "10",
            "Upload-Metadata": "filename YS5sYXM="})
        assert up.status_code == 201, up.text
        assert up.headers["location"].startswith("https://twin.example.org/base/uploads/")
        # the proxy strips /base: the routes' own body limits still apply under the prefix
        # (a 5 MiB tus chunk is bounded by its upload, not by the 4 MiB JSON cap)
        big = client.post("/uploads", headers=auth("operator") | {
            "Tus-Resumable": "1.0.0", "Upload-Length": str(6 * 2**20),
            "Upload-Metadata": "filename YS5sYXM="})
        chunk = client.patch(big.headers["location"].removeprefix("https://twin.example.org/base"),
                             content=b"\0" * (5 * 2**20), headers=auth("operator") | {
                                 "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                                 "Content-Type": "application/offset+octet-stream"})
        assert chunk.status_code == 204, chunk.text
        assert chunk.headers["upload-offset"] == str(5 * 2**20)
        assert "evil" not in client.get("/collections", headers=evil).text
    # without the setting, links follow the request (as before)
    with live_server_factory(create_app(settings, db_url, in_process_worker=False)) as srv:
        landing = httpx.get(f"{srv.url}/", timeout=30).json()
        assert any(link["href"] == f"{srv.url}/collections" for link in landing["links"])


def test_a_public_url_that_is_not_one_is_refused_at_start(monkeypatch):
    from service.core.settings import Settings

    for bad in ("twin.example.org", "ftp://twin.example.org", "https://x.org/?a=1"):
        monkeypatch.setenv("TWINBASE_PUBLIC_URL", bad)
        with pytest.raises(ValueError, match="TWINBASE_PUBLIC_URL"):
            Settings()
    monkeypatch.setenv("TWINBASE_PUBLIC_URL", "https://twin.example.org/base/")
    assert Settings().public_url == "https://twin.example.org/base/"
