"""Which function runs which job kind: a map of job kind to dotted path
(``"package.module:function"``), read by the worker.

The map lives with the application's assembly (``Settings.job_handlers`` names it, by
default ``service.domains:JOB_HANDLERS``), so this package knows no domain, and the API
process, which only queues jobs, never imports a handler or the heavy libraries its module
loads (ifcopenshell, the tiler). A handler module may define ``warm_up()``: a worker that
starts warm runs it in the background (e.g. to start IFC geometry processes ahead).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from service.jobs.context import JobContext

Handler = Callable[[JobContext], dict[str, Any] | None]
log = logging.getLogger(__name__)


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in filter(None, name.split(".")):
        target = getattr(target, part)
    return target


@cache
def handler_map(path: str) -> Mapping[str, str]:
    """The job kind -> handler path map named by ``path`` (``module:attribute``)."""
    handlers = _resolve(path)
    if not isinstance(handlers, Mapping):
        raise TypeError(f"{path} is not a mapping of job kind to handler path")
    return handlers


class Handlers:
    """Handlers resolved on first use, from the map named by ``path``."""

    def __init__(self, path: str) -> None:
        self.paths = handler_map(path)
        self._loaded: dict[str, Handler] = {}

    def kinds(self) -> list[str]:
        return sorted(self.paths)

    def get(self, kind: str) -> Handler | None:
        if kind not in self.paths:
            return None
        if kind not in self._loaded:
            self._loaded[kind] = _resolve(self.paths[kind])
        return self._loaded[kind]

    def load_all(self) -> list[Callable[[], Any]]:
        """Import every handler; the ``warm_up`` functions of their modules."""
        warmups: dict[str, Callable[[], Any]] = {}
        for kind in self.kinds():
            handler = self.get(kind)
            module = importlib.import_module(getattr(handler, "__module__", ""))
            warm = getattr(module, "warm_up", None)
            if callable(warm):
                warmups[module.__name__] = warm
        return list(warmups.values())


@cache
def handlers(path: str) -> Handlers:
    return Handlers(path)


def prepare_worker_process(path: str) -> list[Callable[[], Any]]:
    """Import every handler with the libraries its module loads, then freeze the heap
    (service/core/heap.py: full collections over those objects slowed every database
    round trip of a job). Returns the handler modules' ``warm_up`` functions."""
    from service.core.heap import freeze_heap

    warmups = handlers(path).load_all()
    freeze_heap()
    return warmups
