"""The job engine's pool: connections idle for a while are checked before use; a connection
used a moment ago is not (that ping was a round trip per checkout)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError


def _terminate(db_url: str, pid: int) -> None:
    import psycopg

    from service.core.db import libpq_url

    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


@pytest.fixture
def engine(db_url):
    from service.core.db import sync_engine

    eng = sync_engine.__wrapped__(db_url)  # a pool of its own, not the shared cached one
    yield eng
    eng.dispose()


def _pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_idle_connection_killed_by_the_server_is_replaced(engine, db_url, monkeypatch):
    import service.core.db

    first = _pid(engine)
    _terminate(db_url, first)
    monkeypatch.setattr(service.core.db, "PING_AFTER_IDLE_S", 0.0)  # every checkout counts as idle
    second = _pid(engine)
    assert second != first


def test_recently_used_connection_is_not_pinged(engine, db_url, monkeypatch):
    """The price of skipping the ping: a connection killed within the window fails its next
    statement once; the pool then drops it and the next checkout gets a working one."""
    import service.core.db

    monkeypatch.setattr(service.core.db, "PING_AFTER_IDLE_S", 3600.0)
    first = _pid(engine)
    _terminate(db_url, first)
    with pytest.raises(OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert _pid(engine) != first
