"""Keys and roles: hashed at rest, checked on every write, audited."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from service.app import create_app

PROBLEM = "application/problem+json"


@pytest.fixture
def client(settings, db_url):
    with TestClient(create_app(settings, db_url, in_process_worker=False)) as c:
        yield c


def test_key_is_stored_only_as_a_hash(make_key, db_url):
    key = make_key("operator")
    assert key.startswith("tb_") and len(key) > 40
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT key_hash, prefix FROM api_keys").fetchall()
        dump = conn.execute("SELECT string_agg(t::text, ' ') FROM api_keys t").fetchone()[0]
    assert key not in dump
    assert any(len(h) == 64 and key.startswith(p) for h, p in rows)


def test_wrong_key_is_refused_even_on_public_reads(client):
    r = client.get("/jobs", headers={"Authorization": "Bearer tb_not-a-key"})
    assert r.status_code == 401
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "not valid" in r.json()["detail"]


def test_roles(client, auth):
    body = {"steps": 1, "step_seconds": 0}
    assert client.post("/jobs/selfcheck", json=body).status_code == 401
    viewer = client.post("/jobs/selfcheck", json=body, headers=auth("viewer"))
    assert viewer.status_code == 403 and "admin" in viewer.json()["detail"]
    assert client.post("/jobs/selfcheck", json=body, headers=auth("admin")).status_code == 202
    # uploads: operator and admin, not viewer or planner
    up = {"Tus-Resumable": "1.0.0", "Upload-Length": "10"}
    for role, expected in (("viewer", 403), ("planner", 403)):
        assert client.post("/uploads", headers=up | auth(role)).status_code == expected
    # key management: admin only
    assert client.get("/keys", headers=auth("operator")).status_code == 403
    assert client.get("/keys", headers=auth("admin")).status_code == 200


def test_admin_manages_keys_and_revoked_keys_stop_working(client, auth):
    admin = auth("admin")
    made = client.post("/keys", json={"name": "drone-team-7", "role": "operator"},
                       headers=admin)
    assert made.status_code == 201
    key = made.json()["key"]
    listed = client.get("/keys", headers=admin).json()
    assert any(k["name"] == "drone-team-7" and "key" not in k for k in listed)
    again = client.post("/keys", json={"name": "drone-team-7", "role": "operator"},
                        headers=admin)
    assert again.status_code == 409
    bad_role = client.post("/keys", json={"name": "x", "role": "superuser"}, headers=admin)
    assert bad_role.status_code == 422 and "role must be one of" in bad_role.json()["detail"]
    op = {"Authorization": f"Bearer {key}"}
    assert client.get("/jobs", headers=op).status_code == 200
    assert client.delete("/keys/drone-team-7", headers=admin).status_code == 204
    assert client.get("/jobs", headers=op).status_code == 401


def test_reads_can_require_a_key(settings, db_url, auth):
    settings.read_requires_key = True
    with TestClient(create_app(settings, db_url, in_process_worker=False)) as client:
        r = client.get("/tiles")
        assert r.status_code == 401 and "viewer" in r.json()["detail"]
        assert client.get("/tiles", headers=auth("viewer")).status_code == 200
        assert client.get("/health").status_code == 200  # probes stay open


def test_every_write_is_audited_with_its_key_name(live_server, make_key, db_url):
    key = make_key("admin")
    with psycopg.connect(db_url) as conn:
        name = conn.execute("SELECT name FROM api_keys WHERE prefix = %s",
                            (key[:10],)).fetchone()[0]
    r = httpx.post(f"{live_server.url}/jobs/selfcheck", json={"steps": 1},
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 202
    httpx.post(f"{live_server.url}/jobs/selfcheck", json={"steps": 1})  # refused, audited
    # audit rows are written just after each response went out: wait for both, in any order
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                "SELECT key_name, role, method, path, status, detail FROM audit_log "
                "WHERE path = '/jobs/selfcheck' AND (detail->>'job')::bigint IS NOT DISTINCT "
                "FROM %s OR (path = '/jobs/selfcheck' AND status = 401) "
                "ORDER BY id DESC LIMIT 2", (r.json()["job_id"],)).fetchall()
        by_status = {row[4]: row for row in rows}
        if {202, 401} <= set(by_status) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert by_status[401][:5] == (None, None, "POST", "/jobs/selfcheck", 401)
    assert by_status[202][:5] == (name, "admin", "POST", "/jobs/selfcheck", 202)
    assert by_status[202][5]["job"] == r.json()["job_id"]


def test_cli_creates_a_key_once(db_url, tmp_path):
    import subprocess
    import sys

    env = {"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "TWINBASE_DATA_DIR":
           str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "service.cli", "keys", "create", "--name",
                          "cli-made", "--role", "planner"], env=env, capture_output=True,
                         text=True, check=True)
    key = out.stdout.strip()
    assert key.startswith("tb_")
    listed = subprocess.run([sys.executable, "-m", "service.cli", "keys", "list"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert "cli-made\tplanner" in listed and key not in listed
    dup = subprocess.run([sys.executable, "-m", "service.cli", "keys", "create", "--name",
                          "cli-made", "--role", "planner"], env=env, capture_output=True,
                         text=True)
    assert dup.returncode == 2 and "exists already" in dup.stderr
