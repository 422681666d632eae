"""The procrastinate app: one task, ``run_job``, that runs a row of the ``jobs`` table."""

from __future__ import annotations

import procrastinate

from service.core.db import libpq_url
from service.core.settings import Settings

QUEUE = "twinbase"


def make_queue(database_url: str, settings: Settings | None = None) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(conninfo=libpq_url(database_url))
    app = procrastinate.App(connector=connector)

    @app.task(name="run_job", queue=QUEUE, pass_context=False)
    def run_job_task(job_id: int) -> None:
        # imported here: the API process queues jobs but never runs them
        from service.jobs.execute import run_job

        run_job(job_id, database_url, settings)

    return app
