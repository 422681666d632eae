"""The schema comes from Alembic: up from empty, down to nothing, up again."""

from __future__ import annotations

import psycopg
import pytest

from service.core import db

TABLES = {"datasets", "jobs", "tilesets", "api_keys", "audit_log", "uploads",
          "procrastinate_jobs", "procrastinate_workers"}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_upgrade_from_empty_then_downgrade_and_again(fresh_database):
    url = fresh_database()
    assert db.current_revision_sync(url) is None
    assert not (TABLES & _tables(url))
    db.upgrade(url)
    assert db.current_revision_sync(url) == db.head_revision()
    assert _tables(url) >= TABLES
    db.downgrade(url, "base")
    assert db.current_revision_sync(url) is None
    assert not (TABLES & _tables(url))
    db.upgrade(url)
    assert _tables(url) >= TABLES


def test_one_current_version_per_tileset_is_enforced(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO tilesets (name, version, kind, path, is_current) "
                     "VALUES ('unique-test', 1, 'pointcloud', 'x/v1', true)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO tilesets (name, version, kind, path, is_current) "
                         "VALUES ('unique-test', 2, 'pointcloud', 'x/v2', true)")
        conn.rollback()


def test_ready_reports_schema_behind(fresh_database, settings):
    from fastapi.testclient import TestClient

    from service.app import create_app

    url = fresh_database()
    with TestClient(create_app(settings, url, in_process_worker=False)) as client:
        behind = client.get("/ready")
        assert behind.status_code == 503
        assert behind.headers["content-type"] == "application/problem+json"
        assert "twinbase db upgrade" in behind.json()["detail"]
        db.upgrade(url)
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["migration"] == db.head_revision()
