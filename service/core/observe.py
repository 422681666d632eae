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

High-rate writes (a route sets ``audit_batch``: telemetry, a POST a second per ground station)
do not wait for a commit of their own: their rows go to a bounded queue that one background
task writes many rows at a time. When the queue is full a row is dropped, said in the log and
counted in ``twinbase_audit_rows_dropped_total``; rows a failed write loses are counted there
too. At shutdown the queue is written out before the app lets go of its database.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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
AUDIT_QUEUE_MAX = 10_000  # batched rows waiting; minutes of 20 ground stations' POSTs
AUDIT_BATCH_MAX = 500  # rows a background INSERT writes at most
AUDIT_DROPPED = Counter("twinbase_audit_rows_dropped_total",
                        "audit rows not written: queue full, or their batched write failed",
                        ["reason"])


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._last_refused_row = -REFUSED_ROW_SECONDS
        # refused writes since the last row about them, by status and by client
        self._unwritten: collections.Counter[int] = collections.Counter()
        self._unwritten_clients: collections.Counter[str] = collections.Counter()
        # batched audit rows and the task that writes them (made on the first one)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(AUDIT_QUEUE_MAX)
        self._writer: asyncio.Task[None] | None = None
        self._engine: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._flushing_at_shutdown(receive), send)
            return
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
        row = {"key_name": principal.name if principal else None,
               "role": principal.role if principal else None,
               "method": method, "path": scope["path"], "status": status,
               "client": client[0] if client else None, "detail": detail}
        if state.get("audit_batch") and principal is not None:
            self._enqueue(engine, row)
            return
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(audit_log).values(**row))
        except Exception:  # the write itself happened; a lost audit row must be loud
            log.exception("could not write the audit log for %s %s", method, scope["path"])

    def _enqueue(self, engine: Any, row: dict[str, Any]) -> None:
        self._engine = engine
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            AUDIT_DROPPED.labels("queue_full").inc()
            log.error("audit queue full (%d rows): no audit row for %s %s by %s",
                      AUDIT_QUEUE_MAX, row["method"], row["path"], row["key_name"])
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_batches())

    async def _write_batches(self) -> None:
        while True:
            rows = [await self._queue.get()]
            while len(rows) < AUDIT_BATCH_MAX and not self._queue.empty():
                rows.append(self._queue.get_nowait())
            try:
                await self._write(rows)
            finally:  # marked done once written (or counted as lost): flush() waits on it
                for _ in rows:
                    self._queue.task_done()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(audit_log), rows)
        except Exception:  # the writes themselves happened; lost audit rows must be loud
            AUDIT_DROPPED.labels("write_failed").inc(len(rows))
            log.exception("could not write %d batched audit rows (first: %s %s by %s)",
                          len(rows), rows[0]["method"], rows[0]["path"], rows[0]["key_name"])

    async def flush(self) -> None:
        """Wait until every batched row waiting is written; then stop the writer (idle)."""
        if self._writer is None:
            return
        if not self._writer.done():
            await self._queue.join()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None

    def _flushing_at_shutdown(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.flush()
            return message
        return wrapped

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
