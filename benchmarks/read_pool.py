"""The features read pool: one row by primary key through a plain asyncpg pool (what
service/features/engine.py does) against the same read through SQLAlchemy's async pool
driven from outside (what it did before), on one embedded PostGIS, in alternating rounds
at concurrency 1 and 8.

    uv run python benchmarks/read_pool.py

The last line is one JSON object: reads per second of each and their ratio per concurrency.
"""
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.util import greenlet_spawn

from service.core.db import async_url, libpq_url
from service.features.engine import SESSION_SETTINGS, _ReadConnection
from service.runtime.embedded_pg import EmbeddedPostgres

SQL = "SELECT id, code, ST_AsGeoJSON(geom) FROM t WHERE id = $1"

async def main(url):
    c = await asyncpg.connect(libpq_url(url))
    await c.execute(
        "CREATE EXTENSION IF NOT EXISTS postgis; DROP TABLE IF EXISTS t;"
        " CREATE TABLE t AS SELECT g AS id, 'c' || g AS code,"
        " ST_MakePoint(g * 0.001, 22) AS geom FROM generate_series(1, 100000) g;"
        " ALTER TABLE t ADD PRIMARY KEY (id); ANALYZE t")
    await c.close()
    eng = create_async_engine(async_url(url), pool_size=4, max_overflow=0,
                              pool_pre_ping=False, isolation_level="AUTOCOMMIT",
                              connect_args={"server_settings": SESSION_SETTINGS})
    pool = eng.sync_engine.pool
    apool = await asyncpg.create_pool(libpq_url(url), min_size=0, max_size=4,
                                      connection_class=_ReadConnection,
                                      server_settings=SESSION_SETTINGS)
    async def old(i):
        pooled = await greenlet_spawn(pool.connect)
        try:
            return await pooled.driver_connection.fetchrow(SQL, i)
        finally:
            await greenlet_spawn(pooled.close)
    async def new(i):
        async with apool.acquire() as conn:
            return await conn.fetchrow(SQL, i)
    async def run(fn, n, conc):
        sem = asyncio.Semaphore(conc)
        async def one(i):
            async with sem:
                await fn(i)
        t = time.perf_counter()
        await asyncio.gather(*(one(1 + (i * 7919) % 100000) for i in range(n)))
        return n / (time.perf_counter() - t)
    for fn in (old, new):
        await run(fn, 500, 4)
    res = {("old", 1): [], ("new", 1): [], ("old", 8): [], ("new", 8): []}
    for r in range(5):
        for conc in (1, 8):
            pair = (("old", old), ("new", new))
            for name, fn in pair if r % 2 == 0 else pair[::-1]:
                res[(name, conc)].append(await run(fn, 3000, conc))
    out = {"load_avg_before": LOAD}
    for conc in (1, 8):
        o, n = statistics.median(res[("old", conc)]), statistics.median(res[("new", conc)])
        out[f"asyncpg_pool_rps_c{conc}"] = round(n)
        out[f"sqlalchemy_pool_rps_c{conc}"] = round(o)
        out[f"ratio_c{conc}"] = round(n / o, 2)
    await eng.dispose()
    await apool.close()
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))

LOAD = [round(x, 2) for x in os.getloadavg()]
base = Path(tempfile.mkdtemp(prefix="read-pool-"))
base.chmod(0o755)
pg = EmbeddedPostgres(base / "c")
pg.start()
try:
    asyncio.run(main(pg.url))
finally:
    pg.destroy()
