"""Worker processes for CPU-bound stages (point tiling, building reconstruction)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def worker_pool(workers: int, preload: str, initializer: Callable[..., None] | None = None,
                initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """``workers`` processes, started now, each with one BLAS thread.

    'forkserver' (else 'spawn'): workers fork from a clean server process that imports only
    ``preload``, so no thread of the caller (a job's progress writer, a database pool, a LAZ
    decoder) is ever forked, which can deadlock a worker; a spawned worker instead pays its
    imports before its first task. One BLAS thread per worker: the workers already use every
    core. The environment is read when the server (or a spawned worker) starts, so every
    worker is started here, while it is set."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload([preload])
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer,
                                 initargs=initargs)
        for _ in range(workers):
            ex.submit(os.getpid)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return ex
