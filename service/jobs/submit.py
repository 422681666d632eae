"""Creating a job and putting it on the queue in the caller's transaction.

The queue row is inserted through procrastinate's own ``procrastinate_defer_jobs_v1`` SQL
function inside the same transaction as the job (and its dataset): either all exist or
none, so a crash between "created" and "queued" cannot strand a job.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from service.jobs import store
from service.jobs.queue import QUEUE

_ENQUEUE: TextClause = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, 'run_job', 0, NULL, NULL, "
    "CAST(:args AS jsonb), NULL)::procrastinate_job_to_defer_v1])) AS id"
).bindparams(bindparam("queue", QUEUE))


def _args(job_id: int) -> dict[str, str]:
    return {"args": json.dumps({"job_id": job_id})}


def new_queue_entry(conn: Connection, job_id: int) -> int:
    """A new queue entry for job ``job_id`` in the caller's transaction; its id."""
    return conn.execute(_ENQUEUE, _args(job_id)).scalar_one()


def submit_job(conn: Connection, kind: str, *, dataset_id: int | None = None,
               params: dict[str, Any] | None = None, created_by: str | None = None,
               max_attempts: int = 3, enqueue: bool = True) -> int:
    job_id = conn.execute(store.new_job(kind, dataset_id=dataset_id, params=params or {},
                                        created_by=created_by,
                                        max_attempts=max_attempts)).scalar_one()
    if enqueue:
        conn.execute(store.link_queue_job(job_id, new_queue_entry(conn, job_id)))
    return job_id


async def submit_job_async(conn: AsyncConnection, kind: str, *, dataset_id: int | None = None,
                           params: dict[str, Any] | None = None, created_by: str | None = None,
                           max_attempts: int = 3) -> int:
    job_id = (await conn.execute(store.new_job(kind, dataset_id=dataset_id,
                                               params=params or {}, created_by=created_by,
                                               max_attempts=max_attempts))).scalar_one()
    queue_id = (await conn.execute(_ENQUEUE, _args(job_id))).scalar_one()
    await conn.execute(store.link_queue_job(job_id, queue_id))
    return job_id
