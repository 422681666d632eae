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
