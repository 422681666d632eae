"""Running the generated statements on the read pool.

The statements are compiled by SQLAlchemy (``text()`` with named bound parameters, compiled
once per statement shape for the asyncpg dialect, cached) and run, in turn at the read
pool's gate, on a connection of the plain asyncpg pool (engine.py): a feature read is one
prepared statement and one row. A connection that broke (server restart, backend
terminated) is closed by the pool on release, and the read is retried on another.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

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


async def fetchrow(reads: ReadPool, sql: str, values: dict[str, Any] | None = None) -> Any:
    """The first row of ``sql`` (generated SQL with ``:name`` binds), or None."""
    query, order = compiled(sql)
    args = [(values or {})[n] for n in order]
    await reads.acquire()
    try:
        return await _fetchrow(reads.pool, query, args)
    finally:
        reads.gate.release()


async def _fetchrow(pool: asyncpg.Pool | None, query: str, args: list[Any]) -> Any:
    assert pool is not None
    # a read can be repeated: after a server restart every pooled connection is dead, and
    # each one fails at once, so they are dropped one by one until a fresh one answers
    for attempt in range(POOL_SIZE + 1):
        try:
            async with pool.acquire() as conn:
                return await conn.fetchrow(query, *args)
        except asyncpg.QueryCanceledError:
            raise ServiceUnavailable("the query ran over the time limit; narrow it with a "
                                     "smaller bbox or a more selective filter") from None
        except _LOST:
            if attempt == POOL_SIZE:
                raise
    raise AssertionError("unreachable")
