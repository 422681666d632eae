"""Twinbase's OGC API - Features against tipg on the same PostGIS and data.

    uv run python benchmarks/features_vs_tipg.py [DATABASE_URL] [--duration 8] [--rounds 3] [--load]

The database is the argument, else the DATABASE_URL environment variable. With neither it
starts its own embedded PostGIS (service/runtime/embedded_pg.py) in a temporary directory, migrates
it, writes the scale data set into it (``--scale`` of its full size), and removes it at the
end. Needs ``wrk`` (Debian package).

Both servers run with 2 worker processes on loopback, each the way it is deployed. Twinbase
runs its own production command, ``twinbase serve --workers 2 --no-samples`` (a supervisor
and 2 uvicorn processes, each with its own SO_REUSEPORT socket on the port; no job worker,
since DATABASE_URL is set). tipg (developmentseed, pinned 1.6.1) runs as its documentation
deploys it, under gunicorn with 2 uvicorn workers, and is installed into its own virtualenv
under var/bench-tipg so it can never disturb the project's lock. Neither writes a line per
request (twinbase at TWINBASE_LOG_LEVEL=warning, gunicorn at --log-level warning).
``--load`` first writes the scale data set (benchmarks/scale_data.py: 200,000 road
segments ...). The load generator is ``wrk`` (Debian package), bounded by connection count
(1 and 32) and duration.

Request types (same data, same limits on both servers):
  bbox_small  items in a ~500 m bbox, limit=100
  bbox_large  items in a ~5 km bbox, limit=1000
  filter      a CQL2 text attribute filter, limit=100
  feature     one feature by id
  mvt         one z14 Mapbox Vector Tile

The last line printed is one JSON object: per request type twinbase_rps, tipg_rps, ratio,
twinbase_p50_ms and twinbase_p99_ms at concurrency 32 (the median of alternating rounds),
the concurrency 1 figures (``_c1``), and min_ratio over all request types.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from procs import free_port, start, stop

ROOT = Path(__file__).resolve().parent.parent
TIPG_VERSION = "1.6.1"
TIPG_ENV = ROOT / "var" / "bench-tipg"

REQUESTS = {
    "bbox_small": ("/collections/{c}/items?bbox=114.2446,22.7177,114.2495,22.7222&limit=100"),
    "bbox_large": ("/collections/{c}/items?bbox=114.2500,22.6800,114.2986,22.7250&limit=1000"),
    "filter": ("/collections/{c}/items?filter=road_class%3D%27primary%27%20AND%20lanes%3E%3D4"
               "&filter-lang=cql2-text&limit=100"),
    "feature": "/collections/{c}/items/12345",
    "mvt": "/collections/{c}/tiles/WebMercatorQuad/14/13393/7131",
}


def ensure_tipg() -> Path:
    python = TIPG_ENV / "bin" / "python"
    if not (TIPG_ENV / "bin" / "gunicorn").exists():
        subprocess.run(["uv", "venv", "-q", str(TIPG_ENV), "-p", "3.11"], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "--python", str(python),
                        f"tipg=={TIPG_VERSION}", "gunicorn", "uvicorn[standard]"], check=True)
    return TIPG_ENV / "bin" / "gunicorn"


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, connections: int, duration: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                          "--timeout", "10s", url], capture_output=True, text=True,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # the latency distribution lines ("     50%    3.10ms"), not a stdev column like 99.50%
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses")
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99}


def _ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def check(url: str) -> int:
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    if url.split("?")[0].endswith("7131"):
        return len(body)
    data = json.loads(body)
    return len(data.get("features", [])) if "features" in data else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("database_url", nargs="?", default=os.environ.get("DATABASE_URL"),
                    help="a PostGIS to use (default: $DATABASE_URL, else an embedded one with "
                         "the scale data)")
    ap.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds at concurrency 32")
    ap.add_argument("--load", action="store_true", help="write the scale data set first")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the scale data set to write (the feature request asks "
                         "for id 12345: 0.07 at least)")
    ap.add_argument("--only", nargs="*", choices=sorted(REQUESTS), help="a subset of requests")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    if args.database_url:
        run(args, args.database_url, load=args.load)
        return
    from service.core import db
    from service.runtime.embedded_pg import EmbeddedPostgres

    work = Path(tempfile.mkdtemp(prefix="features_bench_"))
    os.chmod(work, 0o755)  # the cluster runs as the postgres user when we are root
    pg = EmbeddedPostgres(work / "cluster")
    pg.start()
    try:
        db.upgrade(pg.url)
        run(args, pg.url, load=True)
    finally:
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, url: str, *, load: bool) -> None:
    if load:
        # its own JSON line goes to stderr here: ours is the last line of stdout
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_data.py"), url,
                        "--scale", str(args.scale)], check=True, stdout=sys.stderr)
    tipg = ensure_tipg()
    servers = {}
    tb_port, tipg_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": url}
    tipg_env = {**env, "DATABASE_URL": url.replace("postgresql+psycopg://", "postgresql://"),
                "TIPG_DB_SCHEMAS": '["public"]',
                "TIPG_MAX_FEATURES_PER_QUERY": "10000"}
    tb_env = {**env, "TWINBASE_LOG_LEVEL": "warning", "TWINBASE_IN_PROCESS_WORKER": "false"}
    tb_cmd = [sys.executable, "-m", "service.cli", "serve", "--workers", "2",
              "--host", "127.0.0.1", "--port", str(tb_port), "--no-samples", "--no-demo"]
    tipg_cmd = [str(tipg), "tipg.main:app", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
                "--log-level", "warning", "-b", f"127.0.0.1:{tipg_port}"]
    procs = []
    try:
        procs.append(start(tb_cmd, tb_env, tb_port, "/conformance"))
        procs.append(start(tipg_cmd, tipg_env, tipg_port, "/collections"))
        servers = {"twinbase": (tb_port, "road_segments"),
                   "tipg": (tipg_port, "public.road_segments")}
        results: dict[str, dict[str, float]] = {}
        for name, path in REQUESTS.items():
            if args.only and name not in args.only:
                continue
            targets = {server: f"http://127.0.0.1:{port}{path.format(c=collection)}"
                       for server, (port, collection) in servers.items()}
            row: dict[str, float] = {}
            runs: dict[str, list[dict[str, float]]] = {s: [] for s in servers}
            for server, target in targets.items():
                row[f"{server}_returned"] = check(target)
                wrk(target, 32, 2)  # warm caches and pools
                c1 = wrk(target, 1, args.duration)
                row[f"{server}_rps_c1"] = round(c1["rps"], 1)
                row[f"{server}_p99_ms_c1"] = round(c1["p99_ms"], 1)
            # concurrency 32: the servers take turns, several rounds, and each keeps its
            # median round, so a noisy neighbour on the machine hits both alike
            for _ in range(args.rounds):
                for server, target in targets.items():
                    runs[server].append(wrk(target, 32, args.duration))
            for server, measured in runs.items():
                best = sorted(measured, key=lambda m: m["rps"])[len(measured) // 2]
                row[f"{server}_rps"] = round(best["rps"], 1)
                row[f"{server}_p50_ms"] = round(best["p50_ms"], 1)
                row[f"{server}_p99_ms"] = round(best["p99_ms"], 1)
            # a server that finished no request in the time has no ratio (None), not a crash
            row["ratio"] = _ratio(row["twinbase_rps"], row["tipg_rps"])
            row["ratio_c1"] = _ratio(row["twinbase_rps_c1"], row["tipg_rps_c1"])
            results[name] = row
            print(name, json.dumps(row), file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            stop(proc)
    summary = {
        "concurrency": 32, "duration_s": args.duration, "rounds": args.rounds, "workers": 2,
        "tipg_version": TIPG_VERSION, "cpus": os.cpu_count(),
        "scale": args.scale if load else None,  # of the scale data written, if any
        "embedded_database": not args.database_url,
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "requests": results,
        "min_ratio": min((r["ratio"] for r in results.values() if r["ratio"] is not None),
                         default=None),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
