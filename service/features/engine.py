"""The read pool of the features API: one plain asyncpg pool per API process.

Feature reads are single generated statements (``query.py``), so they need no ORM and no
transaction: they run in autocommit (no BEGIN/ROLLBACK round trips) on a small pool (see
POOL_SIZE) of fixed size (a new PostgreSQL backend per request under load costs far more
than the query), without a pre-ping (a dropped connection fails its read, which is retried
on another: execute.py) and without asyncpg's reset query on release (these sessions change
no state, so it would be one more round trip per read). The app's main engine keeps
serving everything else (stac-fastapi-pgstac reads through one such pool the same way)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from fastapi import FastAPI, Request

from service.core.db import libpq_url
from service.core.errors import ServiceUnavailable

# Concurrent feature reads per API process; more requests wait their turn at the gate
# (ReadPool). A database does the most work with about two running queries per core: many
# more only slice its CPU between them (and starve the API processes when they share the
# machine), so every query finishes late. On 2 cores, 2 API processes and 32 clients, 4 per
# process gave the lowest p99 of 4, 8 and 20, at the same or higher throughput
# (benchmarks/RESULTS.md). A long query holds one for at most STATEMENT_TIMEOUT_MS.
POOL_SIZE = 4
WAIT_TIMEOUT_S = 30  # a request that waits longer for a connection gets a 503
STATEMENT_TIMEOUT_MS = 30_000
# JIT compiles any plan above jit_above_cost, which these bounded reads pass easily: on the
# 5 km bbox page it took many times the query's own time. Parallel workers only add start-up
# cost when every core already serves a request. The timeout bounds a hostile filter.
SESSION_SETTINGS = {"jit": "off", "max_parallel_workers_per_gather": "0",
                    "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                    # pg_stat_activity tells these sessions from the app's other ones
                    "application_name": "twinbase-features"}


@dataclass(frozen=True)
class ReadPool:
    """The read pool and the gate in front of it.

    The gate serves waiting requests strictly in arrival order (asyncio.Semaphore hands a
    released slot to the longest waiter). SQLAlchemy's async pool alone does not: a request
    arriving just as a connection comes back can take it from the one that was woken for
    it, which then queues again at the back (SQLAlchemy's pool did); under load some
    requests lost that race over and over, which doubled the p99 at the same pool size
    (benchmarks/RESULTS.md)."""

    pool: asyncpg.Pool | None
    gate: asyncio.Semaphore

    async def acquire(self) -> None:
        """Wait for a turn (``gate.release()`` ends it)."""
        if not self.gate.locked():
            await self.gate.acquire()
            return
        try:
            await asyncio.wait_for(self.gate.acquire(), WAIT_TIMEOUT_S)
        except TimeoutError:
            raise ServiceUnavailable(
                f"every database connection of this process stayed busy for "
                f"{WAIT_TIMEOUT_S} s; retry later") from None


class _ReadConnection(asyncpg.Connection):
    def get_reset_query(self) -> str:
        # asyncpg's documented way to skip the reset on release: a read session sets nothing
        return ""


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        libpq_url(app.state.database_url), min_size=0, max_size=POOL_SIZE,
        max_inactive_connection_lifetime=300.0, connection_class=_ReadConnection,
        server_settings=SESSION_SETTINGS)
    app.state.read_pool = ReadPool(pool, asyncio.Semaphore(POOL_SIZE))
    try:
        yield
    finally:
        await pool.close()


def read_pool(request: Request) -> ReadPool:
    return request.app.state.read_pool
