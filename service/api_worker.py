"""One API process of ``twinbase serve --workers N``, started by the supervisor
(service/runtime/supervisor.py) as ``python -m service.api_worker HOST PORT SUPERVISOR_PID``."""

from __future__ import annotations

import os
import signal
import sys

from service.runtime.supervisor import GRACEFUL_SECONDS, worker_socket
from tiler.lifetime import end_with_parent


def _end_with_parent(parent: int) -> None:
    """SIGTERM to this process when the supervisor dies (Linux), and exit if it already
    has (the request is only heard from the moment it is made)."""
    end_with_parent(signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(0)


def run_api_worker(host: str, port: int, parent: int) -> None:
    """Build the app once for this process and serve it on its own socket."""
    _end_with_parent(parent)
    import uvicorn

    from service.app import create_app
    from service.core.heap import freeze_heap
    from service.core.settings import get_settings
    from service.runtime.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    app = create_app(settings, settings.database_url, in_process_worker=False)
    freeze_heap()  # what the app loaded lives as long as the process (core/heap.py)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(GRACEFUL_SECONDS) - 5)
    uvicorn.Server(config).run(sockets=[worker_socket(host, port)])


if __name__ == "__main__":
    run_api_worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
