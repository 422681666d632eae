"""Running the generated statements on the read pool.

The statements are compiled by SQLAlchemy (``text()`` with named bound parameters, compiled
once per statement shape for the asyncpg dialect, cached) and then run on the pooled
connection's asyncpg driver directly: a feature read is one prepared statement and one row,
and skipping the ORM-style result layer keeps the per-request cost at the driver's."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import ServiceUnavailable

_DIALECT = asyncpg_dialect()


@lru_cache(maxsize=1024)
def compiled(sql: str) -> tuple[str, tuple[str, ...]]:
    """The driver's SQL ($1, $2, ...) and the bind names in their order."""
    statement = text(sql).compile(dialect=_DIALECT)
    return str(statement), tuple(statement.positiontup or ())


async def fetchrow(engine: AsyncEngine, sql: str, values: dict[str, Any]) -> Any:
    query, order = compiled(sql)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        try:
            return await raw.driver_connection.fetchrow(query, *(values[n] for n in order))
        except asyncpg.QueryCanceledError:
            raise ServiceUnavailable("the query ran over the time limit; narrow it with a "
                                     "smaller bbox or a more selective filter") from None
