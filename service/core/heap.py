"""Long-lived processes (API workers, job workers) load their libraries once and keep them
for their whole life; this moves those objects out of the cyclic garbage collector's sight."""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Collect once, then freeze every object alive now (``gc.freeze``).

    CPython's full collections walk every tracked object. With the app or the job libraries
    loaded (ifcopenshell, pyproj, shapely, FastAPI's routes: some 160,000 to a few hundred
    thousand objects) each full collection took long enough to stall every request of an
    API process under load (most of the p99 of small bbox pages) and made each database
    round trip of a job slower (benchmarks/RESULTS.md). Frozen objects are never scanned
    again; they live as long as the process anyway, and what requests and jobs allocate is
    still collected."""
    gc.collect()
    gc.freeze()
