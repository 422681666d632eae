"""Running the generated statements on the read pool.

The statements are compiled by SQLAlchemy (``text()`` with named bound parameters, compiled
once per statement shape for the asyncpg dialect, cached) and then run, in turn at the read
pool's gate, on a pooled connection's asyncpg driver directly: a feature read is one
prepared statement and one row.
The connection is taken from the engine's pool itself, without the ``Connection`` objects
around it (they cost more than the query on the single-feature path), and a connection that
broke (server restart, backend terminated) is dropped from the pool and the read retried,
instead of the broken connection going back to the pool for the next request."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.pool import Pool
from sqlalchemy.util import greenlet_spawn

from service.core.errors import ServiceUnavailable
from service.features.engine import POOL_SIZE, ReadPool

_DIALECT = asyncpg_dialect()
# the connection itself is gone; anything else (a bad statement, a timeout) leaves it usable
_LOST = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
         asyncpg.AdminShutdownError, asyncpg.CannotConnectNowError, OSError)


@lru_cache(maxsize=1024)
def compiled(sql: str) -> tuple[str, tuple[str, ...]]:
    """The driver's SQL ($1, $2, ...) and the bind names in their order."""
    statement = text(sql).compile(dialect=_DIALECT)
    return str(statement), tuple(statement.positiontup or ())


async def fetchrow(reads: ReadPool, sql: str, values: dict[str, Any]) -> Any:
    query, order = compiled(sql)
    args = [values[n] for n in order]
    await reads.acquire()
    try:
        return await _fetchrow(reads.engine.sync_engine.pool, query, args)
    finally:
        reads.gate.release()


async def _fetchrow(pool: Pool, query: str, args: list[Any]) -> Any:
    # a read can be repeated: after a server restart every pooled connection is dead, and
    # each one fails at once, so they are dropped one by one until a fresh one answers
    for attempt in range(POOL_SIZE + 1):
        # checkout and checkin may open or close a connection, which SQLAlchemy's async
        # pool does from a greenlet; the query itself is a plain await on the driver
        pooled = await greenlet_spawn(pool.connect)
        try:
            return await pooled.driver_connection.fetchrow(query, *args)
        except asyncpg.QueryCanceledError:
            raise ServiceUnavailable("the query ran over the time limit; narrow it with a "
                                     "smaller bbox or a more selective filter") from None
        except _LOST:
            await greenlet_spawn(pooled.invalidate)
            if attempt == POOL_SIZE:
                raise
        finally:
            await greenlet_spawn(pooled.close)
    raise AssertionError("unreachable")
