"""Request logging, Prometheus metrics and the audit log, as one ASGI middleware.

Every write (any method but GET, HEAD, OPTIONS) made with a key lands in ``audit_log`` with
the key's name, after the response went out, so auditing never delays a client. The one
exception: an upload's accepted intermediate chunks (``audit_skip``); its creation, its last
chunk (which makes the dataset) and every refused chunk are logged.

Writes without a valid key are refused, and anyone can send thousands a second: one row per
refusal let a client fill the table (benchmarks/RESULTS.md). So each process writes at most one
row of them per ``REFUSED_ROW_SECONDS``: the refusal at hand, with the count of those refused
since the previous such row (by status, and the busiest clients) in its ``detail``. Each one
is still in the request log.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import insert
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.tables import audit_log

log = logging.getLogger("twinbase.access")

REQUESTS = Counter("twinbase_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "twinbase_http_request_seconds", "HTTP request latency", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSED_ROW_SECONDS = 60.0
MAX_COUNTED_CLIENTS = 1_000  # distinct clients counted between two rows; then "other"


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._last_refused_row = -REFUSED_ROW_SECONDS
        # refused writes since the last row about them, by status and by client
        self._unwritten: collections.Counter[int] = collections.Counter()
        self._unwritten_clients: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(elapsed)
            log.info("%s %s %s %.1fms", method, scope["path"], status, elapsed * 1000)
            if method not in SAFE_METHODS:
                await self._audit(scope, method, status)

    async def _audit(self, scope: Scope, method: str, status: int) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        if state.get("audit_skip") and status < 400:
            return
        principal = state.get("principal")
        engine = getattr(scope.get("app").state, "engine", None) if scope.get("app") else None
        if engine is None:
            return
        client = scope.get("client")
        detail = state.get("audit_detail") or {}
        if principal is None and status >= 400:
            detail = self._refused_detail(client[0] if client else "unknown", status)
            if detail is None:
                return
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(audit_log).values(
                        key_name=principal.name if principal else None,
                        role=principal.role if principal else None,
                        method=method,
                        path=scope["path"],
                        status=status,
                        client=client[0] if client else None,
                        detail=detail,
                    )
                )
        except Exception:  # the write itself happened; a lost audit row must be loud
            log.exception("could not write the audit log for %s %s", method, scope["path"])

    def _refused_detail(self, client: str, status: int) -> dict[str, Any] | None:
        """The detail of this refusal's row, or None when it is only counted."""
        now = time.monotonic()
        if now - self._last_refused_row < REFUSED_ROW_SECONDS:
            self._unwritten[status] += 1
            if client in self._unwritten_clients \
                    or len(self._unwritten_clients) < MAX_COUNTED_CLIENTS:
                self._unwritten_clients[client] += 1
            else:
                self._unwritten_clients["other"] += 1
            return None
        detail: dict[str, Any] = {"refused_without_key": True}
        if self._unwritten:
            detail["refused_since_previous_row"] = {
                "count": sum(self._unwritten.values()),
                "seconds": round(now - self._last_refused_row, 1),
                "by_status": {str(k): v for k, v in sorted(self._unwritten.items())},
                "busiest_clients": dict(self._unwritten_clients.most_common(10)),
            }
        self._last_refused_row = now
        self._unwritten.clear()
        self._unwritten_clients.clear()
        return detail
