"""Keys found valid are kept by the process for a bounded time, so a client posting every
second does not pay a database look-up per request; a revocation still holds at once in the
process that made it and within ``KEY_CACHE_SECONDS`` everywhere else."""

from __future__ import annotations

import time

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.app import create_app


@pytest.fixture
def client(settings, db_url):
    with TestClient(create_app(settings, db_url, in_process_worker=False)) as c:
        yield c


def _key_lookups(client) -> list[str]:
    """Statements of the app's engine that read api_keys, from now on."""
    seen: list[str] = []

    @event.listens_for(client.app.state.engine.sync_engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM api_keys" in statement:
            seen.append(statement)

    return seen


def _name(db_url: str, key: str) -> str:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT name FROM api_keys WHERE prefix = %s",
                            (key[:10],)).fetchone()[0]


def test_a_valid_key_is_looked_up_once_within_the_window(client, make_key):
    key = make_key("operator")
    headers = {"Authorization": f"Bearer {key}"}
    seen = _key_lookups(client)
    for _ in range(5):
        assert client.get("/jobs", headers=headers).status_code == 200
    assert len(seen) == 1
    # an unknown key is never kept: each try is looked up, each is refused
    bad = {"Authorization": "Bearer tb_not-a-key"}
    assert [client.get("/jobs", headers=bad).status_code for _ in range(3)] == [401] * 3
    assert len(seen) == 4


def test_a_key_revoked_elsewhere_is_refused_within_the_bound(client, make_key, db_url,
                                                             monkeypatch):
    import service.core.auth

    monkeypatch.setattr(service.core.auth, "KEY_CACHE_SECONDS", 1.0)
    key = make_key("operator")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/jobs", headers=headers).status_code == 200  # now kept
    # revoked by another process (`twinbase keys revoke`, another API worker)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = %s",
                     (_name(db_url, key),))
    revoked = time.monotonic()
    while True:
        asked = time.monotonic()
        if client.get("/jobs", headers=headers).status_code == 401:
            break
        assert asked - revoked < 1.0, "still accepted past KEY_CACHE_SECONDS"
        time.sleep(0.05)
    assert client.get("/jobs", headers=headers).status_code == 401


def test_a_key_revoked_by_this_process_is_refused_at_once(client, auth, make_key):
    admin = auth("admin")
    key = make_key("operator")
    headers = {"Authorization": f"Bearer {key}"}
    seen = _key_lookups(client)
    assert client.get("/jobs", headers=headers).status_code == 200
    assert client.get("/jobs", headers=headers).status_code == 200
    assert len(seen) == 1
    name = client.get("/keys", headers=admin).json()
    name = next(k["name"] for k in name if key.startswith(k["prefix"]))
    assert client.delete(f"/keys/{name}", headers=admin).status_code == 204
    assert client.get("/jobs", headers=headers).status_code == 401
