"""1,000 drones live: telemetry at 1 Hz over loopback while dashboards watch the stream.

    uv run python benchmarks/live_drones.py [--drones 1000] [--seconds 600] [--clients 50]
                                            [--operators 20]

Starts a throwaway embedded PostGIS and `twinbase serve --workers 2` on 127.0.0.1, registers
the drones, and drives them with the telemetry simulator (service/lowalt/simulator.py): every
second each drone makes one report, sent by its operator's ground station (``--operators``
stations, each posting its drones' reports as one /telemetry batch, as a network Remote ID
service provider does). ``--clients`` Server-Sent-Events clients follow /drones-live/stream.

Measured (the goals are ASTM F3411-22a's network Remote ID figures at SILAS scale):

- ``post_p99_ms``: telemetry POST latency after the first minute (goal < 100 ms);
- ``display_p95_ms`` / ``display_p99_ms``: from a report's time to its state event reaching
  a stream client, over every client, after the first minute (goals < 1 s / < 3 s);
- ``lost``: reports answered 201 but not stored, plus reports refused (goal 0);
- ``rss_growth_mb``: the server processes' resident memory at the end minus after the first
  minute (goal: flat);
- ``reports_per_s``: reports stored per second over the run.

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procs import free_port, start, stop, tree_rss_kb  # noqa: E402

from service.core import db  # noqa: E402
from service.core.auth import create_key  # noqa: E402
from service.core.db import sync_engine  # noqa: E402
from service.lowalt.simulator import FleetSimulator  # noqa: E402
from service.runtime.embedded_pg import EmbeddedPostgres  # noqa: E402

# a state event's report time (its properties' "t"; the stream's events are one line each)
REPORT_TIME = re.compile(rb'"t": "([^"]+)"')


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float | None:
    return round(float(np.percentile(xs, p)), 1) if xs else None


def rss_mb(root: int) -> float:
    """Resident memory of the server and every process under it (API workers, children)."""
    return tree_rss_kb(root) / 1024


def start_server(url: str, port: int, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url,
           "TWINBASE_LOG_LEVEL": os.environ.get("TWINBASE_LOG_LEVEL", "warning"),
           "TWINBASE_IN_PROCESS_WORKER": "false", "TWINBASE_DATA_DIR": str(data_dir)}
    return start([sys.executable, "-m", "service.cli", "serve", "--workers", "2",
                  "--host", "127.0.0.1", "--port", str(port), "--no-samples", "--no-demo"],
                 env, port, "/ready", timeout_s=90)


class Watcher:
    """One stream client: the latency of every state event of a report it has not seen."""

    def __init__(self, base: str, latencies: list[float]) -> None:
        self.base = base
        self.latencies = latencies
        self.events = 0
        self.ready = asyncio.Event()

    async def run(self, stop_at: float) -> None:
        # the events' report times are found by a regular expression over the raw bytes:
        # parsing every event's JSON (50 clients x 1,000 events a second) took more CPU in
        # this process than the server spent sending them, on the same two cores
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client, \
                client.stream("GET", f"{self.base}/drones-live/stream") as r:
            self.ready.set()
            rest = b""
            async for chunk in r.aiter_raw():
                if time.monotonic() > stop_at:
                    return
                now = time.time()
                rest += chunk
                cut = rest.rfind(b"\n\n")
                if cut < 0:
                    continue
                done, rest = rest[:cut], rest[cut + 2:]
                for t in REPORT_TIME.findall(done):
                    self.events += 1
                    self.latencies.append((now - datetime.fromisoformat(t.decode())
                                           .timestamp()) * 1000)


async def drive(base: str, key: str, ids: list[int], args: argparse.Namespace,
                server_pid: int) -> dict[str, object]:
    sim = FleetSimulator(ids)
    groups = [ids[i::args.operators] for i in range(args.operators)]
    index = {d: i for i, d in enumerate(ids)}
    latencies: list[float] = []
    post_ms: list[float] = []
    sent = refused = resent = 0
    warm_s = min(60.0, args.seconds / 4)
    stop_at = time.monotonic() + args.seconds + 5
    watchers = [Watcher(base, latencies) for _ in range(args.clients)]
    tasks = [asyncio.create_task(w.run(stop_at)) for w in watchers]
    await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in watchers)), 60)
    limits = httpx.Limits(max_connections=args.operators + 5)
    headers = {"Authorization": f"Bearer {key}"}
    rss_start = rss_end = 0.0
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits,
                                 headers=headers) as client:

        async def post(batch: list[dict]) -> None:
            nonlocal sent, refused, resent
            t0 = time.perf_counter()
            try:
                r = await client.post("/telemetry", json={"points": batch})
            except httpx.TransportError as e:
                # a kept-alive connection the server closed as this request went out (the
                # warm-up's slow first batches leave some idle past the server's keep-alive
                # timeout): sent again, as a ground station would; a report sent twice
                # replaces itself
                resent += len(batch)
                log(f"sent again after {type(e).__name__}")
                r = await client.post("/telemetry", json={"points": batch})
            post_ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code == 201:
                sent += len(batch)
            else:
                refused += len(batch)
                log(f"refused {r.status_code}: {r.text[:200]}")

        began = time.monotonic()
        tick = 0
        while time.monotonic() - began < args.seconds:
            due = began + tick
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            reports = sim.reports(datetime.now(UTC))
            await asyncio.gather(*(post([reports[index[d]] for d in g]) for g in groups))
            tick += 1
            if rss_start == 0.0 and time.monotonic() - began >= warm_s:
                rss_start = rss_mb(server_pid)
                # the snapshot and the warm-up (each process reads the ground of every tile
                # and the routes of every drone once) are not the steady state measured
                latencies.clear()
                post_ms.clear()
            if tick % 30 == 0:
                log(f"{tick} s: {sent} reports, post p99 {pct(post_ms, 99)} ms, display p99 "
                    f"{pct(latencies, 99)} ms, rss {rss_mb(server_pid):.0f} MB")
        elapsed = time.monotonic() - began
        rss_end = rss_mb(server_pid)
    await asyncio.sleep(3)  # the last events reach the clients
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"sent": sent, "refused": refused, "resent": resent, "elapsed": elapsed,
            "post_ms": post_ms,
            "latencies": latencies, "rss_start": rss_start, "rss_end": rss_end,
            "events": sum(w.events for w in watchers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drones", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--operators", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="twinbase-bench-live-"))
    os.chmod(work, 0o755)
    pg = EmbeddedPostgres(work / "cluster")
    pg.start()
    proc = None
    try:
        db.upgrade(pg.url)
        engine = sync_engine(pg.url)
        from sqlalchemy import text

        with engine.begin() as conn:
            ids = list(conn.execute(text(
                "INSERT INTO drones (serial, operator, class) SELECT 'LG-' || g, "
                "'operator ' || (g % :ops), 'light' FROM generate_series(1, :n) g "
                "RETURNING id"), {"n": args.drones, "ops": args.operators}).scalars())
            key = create_key(conn, "bench-live", "operator")
        port = free_port()
        (work / "var").mkdir()
        proc = start_server(pg.url, port, work / "var")
        log(f"server on {port}; {len(ids)} drones, {args.clients} stream clients, "
            f"{args.operators} ground stations, {args.seconds} s")
        out = asyncio.run(drive(f"http://127.0.0.1:{port}", key, ids, args, proc.pid))
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM drone_telemetry")).scalar()
        engine.dispose()
    finally:
        if proc is not None:
            stop(proc, grace_s=20)
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "drones": args.drones, "seconds": args.seconds, "clients": args.clients,
        "operators": args.operators,
        "reports_per_s": round(stored / out["elapsed"], 1),
        "post_p99_ms": pct(out["post_ms"], 99), "post_p50_ms": pct(out["post_ms"], 50),
        "display_p95_ms": pct(out["latencies"], 95),
        "display_p99_ms": pct(out["latencies"], 99),
        "stream_events": out["events"],
        "lost": int(out["sent"] - stored) + int(out["refused"]),
        "resent": out["resent"],
        "rss_growth_mb": round(out["rss_end"] - out["rss_start"], 1),
        "rss_end_mb": round(out["rss_end"], 1),
        "load": os.getloadavg()[0],
        "goal": "post p99 < 100 ms, display p95 < 1 s and p99 < 3 s, lost 0, memory flat",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
