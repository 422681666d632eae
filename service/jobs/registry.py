"""Which function runs which job kind. Ingest modules register themselves here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.jobs.context import JobContext

Handler = Callable[[JobContext], dict[str, Any] | None]
_HANDLERS: dict[str, Handler] = {}


def job_handler(kind: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        _HANDLERS[kind] = func
        return func

    return register


def handler_for(kind: str) -> Handler | None:
    load_handlers()
    return _HANDLERS.get(kind)


def known_kinds() -> list[str]:
    load_handlers()
    return sorted(_HANDLERS)


def load_handlers() -> None:
    """Import the modules that register handlers (kept lazy: they pull in heavy libraries)."""
    from service.ingest import handlers  # noqa: F401
    from service.jobs import selfcheck  # noqa: F401


def prepare_worker_process() -> None:
    """Import every handler with the libraries it loads lazily, then freeze the heap
    (service/heap.py): full collections over those objects made each database round trip
    of a job slower; see benchmarks/RESULTS.md."""
    from service.heap import freeze_heap

    load_handlers()
    import ifcopenshell.geom
    import ifcopenshell.util.element
    import ifcopenshell.util.unit  # noqa: F401

    import service.bim.features
    import service.bim.model
    import service.ingest.ifc_store  # noqa: F401
    import tiler.glb
    import tiler.mesh
    import tiler.pointcloud  # noqa: F401

    freeze_heap()
