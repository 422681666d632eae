"""Telemetry's audit rows are written in batches by a background task: every row of a burst
lands; when the queue is full a row is dropped, said in the log and counted in /metrics, never
lost silently."""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from helpers_lowalt import Local, drone
from test_live import _point

DROPPED = re.compile(r'^twinbase_audit_rows_dropped_total\{reason="queue_full"\} (\S+)$', re.M)


def _key_name(db_url: str, headers: dict[str, str]) -> str:
    key = headers["Authorization"].split()[1]
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT name FROM api_keys WHERE prefix = %s",
                            (key[:10],)).fetchone()[0]


def _rows(db_url: str, name: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT path, status, detail FROM audit_log WHERE key_name = %s",
                            (name,)).fetchall()


def _dropped(api) -> float:
    found = DROPPED.search(api.get("/metrics").text)
    return float(found.group(1)) if found else 0.0


def _burst(api, w, d, here, n: int) -> list[int]:
    def post(i: int) -> int:
        body = {"points": [_point(here, d, i, 0, 60)]}
        return api.post("/telemetry", json=body, headers=w).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, range(n)))


def test_every_audit_row_of_a_burst_is_written(api, auth, db_url):
    w = auth("operator")
    name = _key_name(db_url, w)
    d = drone(api, w)
    assert _burst(api, w, d, Local(40), 60) == [201] * 60
    deadline = time.monotonic() + 10
    while len(rows := _rows(db_url, name)) < 61 and time.monotonic() < deadline:
        time.sleep(0.1)
    telemetry = [r for r in rows if r[0] == "/telemetry"]
    assert len(telemetry) == 60
    assert all(r[1] == 201 and r[2] == {"telemetry": 1} for r in telemetry)


def test_a_full_queue_drops_rows_loudly_and_counts_them(api, auth, db_url, monkeypatch,
                                                        caplog, live_server):
    import service.core.observe

    w = auth("operator")
    name = _key_name(db_url, w)
    d = drone(api, w)
    dropped_before = _dropped(api)
    app = live_server.server.config.app
    observe = app.middleware_stack
    while not isinstance(observe, service.core.observe.ObserveMiddleware):
        observe = observe.app  # the middleware of this app, under the outer ones
    import asyncio

    monkeypatch.setattr(observe, "_queue", asyncio.Queue(3))
    # the table locked: the writer's INSERT waits, rows pile up behind it
    with psycopg.connect(db_url) as lock, caplog.at_level(logging.ERROR, "twinbase.access"):
        lock.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
        assert _burst(api, w, d, Local(41), 20) == [201] * 20
        dropped = _dropped(api) - dropped_before
        lock.rollback()
    assert dropped > 0
    assert sum("audit queue full" in r.getMessage() for r in caplog.records) == dropped
    # every row not dropped is written once the table is free
    deadline = time.monotonic() + 10
    while len(rows := _rows(db_url, name)) < 21 - dropped and time.monotonic() < deadline:
        time.sleep(0.1)
    telemetry = [r for r in rows if r[0] == "/telemetry"]
    assert len(telemetry) == 20 - dropped
