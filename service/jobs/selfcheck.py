"""A diagnostic job: counts through N steps with a pause each, reporting progress.

Operators use it (``twinbase jobs selfcheck`` or ``POST /jobs/selfcheck``) to see that a
worker picks jobs up, reports progress and survives restarts, without touching any data.
"""

from __future__ import annotations

import time

from service.jobs.context import JobContext, JobFailed


def selfcheck(ctx: JobContext) -> dict[str, int]:
    steps = int(ctx.params.get("steps", 10))
    pause = float(ctx.params.get("step_seconds", 0.1))
    fail_at = ctx.params.get("fail_at")
    for i in range(steps):
        if fail_at is not None and i == int(fail_at):
            raise JobFailed(f"selfcheck asked to fail at step {i}")
        ctx.progress("counting", i, steps)
        time.sleep(pause)
    ctx.progress("counting", steps, steps)
    return {"steps": steps}
