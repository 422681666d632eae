"""The read pool of the features API.

Feature reads are single statements, so they run in autocommit (no BEGIN/ROLLBACK round
trips) on a pool sized for a worker's concurrency with no overflow (overflow connections
are opened and closed per request under load, and a new PostgreSQL backend costs far more
than the query) and without a pre-ping (a dropped connection is invalidated on its first
error and replaced). The app's main engine keeps serving everything else."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db import async_url

POOL_SIZE = 20
STATEMENT_TIMEOUT_MS = 30_000
# JIT compiles any plan above jit_above_cost, which these bounded reads pass easily: on the
# 5 km bbox page it added 300-600 ms to a 30 ms query. Parallel workers only add start-up
# cost when every core already serves a request. The timeout bounds a hostile filter.
SESSION_SETTINGS = {"jit": "off", "max_parallel_workers_per_gather": "0",
                    "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                    # pg_stat_activity tells these sessions from the app's other ones
                    "application_name": "twinbase-features"}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.read_engine = create_async_engine(
        async_url(app.state.database_url), pool_size=POOL_SIZE, max_overflow=0,
        pool_timeout=30, pool_pre_ping=False, isolation_level="AUTOCOMMIT",
        connect_args={"server_settings": SESSION_SETTINGS})
    try:
        yield
    finally:
        await app.state.read_engine.dispose()


def read_engine(request: Request) -> AsyncEngine:
    return request.app.state.read_engine
