"""Database engines and URLs.

The API uses an async engine on asyncpg (the fastest PostgreSQL driver for Python); jobs,
migrations and the CLI use synchronous psycopg 3, which procrastinate also uses.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _with_driver(url: str, driver: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    return _with_driver(url, "psycopg")


def async_url(url: str) -> str:
    return _with_driver(url, "asyncpg")


def libpq_url(url: str) -> str:
    """Plain ``postgresql://`` for libpq clients (psycopg, procrastinate, GDAL)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# A pooled connection used within this many seconds is not pinged before its next use.
PING_AFTER_IDLE_S = 2.0


@lru_cache(maxsize=8)
def sync_engine(url: str) -> Engine:
    engine = create_engine(sync_url(url), pool_size=5, max_overflow=5)
    _ping_after_idle(engine)
    return engine


def _ping_after_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle: a job checks
    a connection out ~8 times in a row, and ``pool_pre_ping`` made each of those a round trip
    of its own, a good part of a small IFC model's ingest (benchmarks/RESULTS.md). A server restart
    or an idle timeout happens to connections that have been idle, which are still pinged."""

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, proxy) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            # the pool drops this connection and checks out another (its documented recipe)
            raise exc.DisconnectionError("pooled connection no longer works") from err


@lru_cache(maxsize=8)
def bookkeeping_engine(url: str) -> Engine:
    """Connections for job bookkeeping (claims, progress, tileset versions being built):
    each statement commits on its own, and the commit returns before its WAL reaches the
    disk. That saves the BEGIN / COMMIT round trips and the wait for the disk on each write
    (benchmarks/RESULTS.md). Only for writes whose loss in a crash is harmless; PostgreSQL keeps
    the order, so the next durable commit makes them durable too."""
    engine = create_engine(sync_url(url), pool_size=2, max_overflow=4,
                           isolation_level="AUTOCOMMIT",
                           connect_args={"options": "-c synchronous_commit=off"})
    _ping_after_idle(engine)
    return engine


def make_async_engine(url: str, **options) -> AsyncEngine:
    """The API's engine (``options``: more of ``create_async_engine``'s, such as an isolation
    level). Connections idle for ``PING_AFTER_IDLE_S`` are pinged before use, not every
    checkout: ``pool_pre_ping`` cost each request a round trip (three when the connection is
    taken in a transaction: BEGIN, the ping, ROLLBACK), about a third of a telemetry POST's
    (benchmarks/RESULTS.md). A connection the server dropped while busy fails its statement
    once (a 503 while the database is down); the pool then replaces every older one."""
    engine = create_async_engine(async_url(url), pool_size=options.pop("pool_size", 10),
                                 max_overflow=options.pop("max_overflow", 10), **options)
    _ping_after_idle(engine.sync_engine)
    return engine


def alembic_config(url: str):  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("postgresql://x@localhost/x")).get_current_head()


def current_revision_sync(url: str) -> str | None:
    with sync_engine(url).connect() as conn:
        return _current(conn)


def _current(conn) -> str | None:  # works for sync connections
    exists = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    if not exists:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


async def current_revision(conn: AsyncConnection) -> str | None:
    exists = (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar()
    if not exists:
        return None
    return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        yield conn


# A read a request sends (a series, an area) stops here, so no request holds a backend long.
READ_TIMEOUT_MS = 30_000


@contextlib.asynccontextmanager
async def bounded_read(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection of the app's engine for one request's reads, in a transaction that is
    rolled back at the end, whose statements are cancelled after ``READ_TIMEOUT_MS`` (and
    planned without JIT, which costs more than these bounded reads take)."""
    async with engine.connect() as conn:
        await conn.execute(select(
            func.set_config("statement_timeout", str(READ_TIMEOUT_MS), True),
            func.set_config("jit", "off", True)))
        yield conn
