"""One LiDAR survey tiled by several `twinbase worker` processes, against the single job.

The survey is the LiDAR benchmark's (``benchmarks/out/survey_<n>.laz``, written by
``lidar_vs_py3dtiles.py``'s ``write_survey`` when missing: 20 M points by default). Three
ingests of it, each by real worker processes on a throwaway PostgreSQL cluster and a local
tile store:

1. the single-job path (``split`` false), one worker (its tiler uses a 2-process pool);
2. split into chunk jobs, one worker;
3. split into chunk jobs, two workers.

Each is timed from the job's first claim to its end (``started_at`` .. ``finished_at``; the
workers are started and warm before the job is queued). The tiles of 2 and 3 are compared
byte for byte with those of 1 (``identical``). The chunk rows give the per-chunk costs the
projection in RESULTS.md is made from.

    uv run python benchmarks/distributed_tiling.py [--points 20000000] [--chunk-points N]

Last stdout line: one JSON object with ``points``, ``pps_1_worker``, ``pps_2_workers``,
``split_overhead_pct`` (the 2-worker split's time over the single job's, both on the same
2 cores), ``identical`` and the per-stage figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "tiler"))

from helpers_lidar import write_survey  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from service.core import db  # noqa: E402
from service.core.tables import jobs  # noqa: E402
from service.datasets.store import new_dataset  # noqa: E402
from service.jobs.submit import submit_job  # noqa: E402
from service.lidar.tables import lidar_chunks  # noqa: E402
from service.runtime.embedded_pg import EmbeddedPostgres  # noqa: E402
from service.tilesets.store import slug_name  # noqa: E402


def survey_file(n: int) -> Path:
    work = ROOT / "benchmarks" / "out"
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"survey_{n}.laz"
    if not path.exists():
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp.laz")
        write_survey(tmp, n)
        tmp.rename(path)
        print(f"wrote {path.name} ({path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return path


def start_workers(count: int, url: str, data_dir: Path, chunk_points: int,
                  log: Path) -> list[subprocess.Popen]:
    env = dict(os.environ, DATABASE_URL=url, TWINBASE_DATA_DIR=str(data_dir),
               TWINBASE_LIDAR_CHUNK_POINTS=str(chunk_points), TWINBASE_WARM_START="false",
               TWINBASE_LOG_LEVEL="warning", TWINBASE_DEMO="false",
               TWINBASE_LOAD_SAMPLES="false")
    procs = []
    with log.open("ab") as out:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-m", "service.cli", "worker"],
                                          cwd=ROOT, env=env, stdout=out,
                                          stderr=subprocess.STDOUT))
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def ingest(url: str, survey: Path, label: str, split: bool, workers: int, data_dir: Path,
           chunk_points: int, log: Path) -> dict:
    procs = start_workers(workers, url, data_dir, chunk_points, log)
    try:
        time.sleep(8)  # started (and connected) before the job is queued
        engine = db.sync_engine(url)
        with engine.begin() as conn:
            dataset_id = conn.execute(new_dataset(
                "lidar", survey.name, source_path=str(survey), sha256=None,
                size_bytes=survey.stat().st_size,
                options={"survey": label, "split": str(split).lower(), "model": "false"},
                uploaded_by="bench")).scalar_one()
            job_id = submit_job(conn, "ingest_lidar", dataset_id=dataset_id,
                                created_by="bench", max_attempts=1)
        while True:
            with engine.connect() as conn:
                row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
            if row.status in ("succeeded", "failed"):
                break
            if all(p.poll() is not None for p in procs):
                raise RuntimeError(f"the workers ended; see {log}")
            time.sleep(0.2)
        if row.status != "succeeded":
            raise RuntimeError(f"job {job_id} failed: {row.error}")
        with engine.connect() as conn:
            elapsed = conn.execute(select(func.extract(
                "epoch", jobs.c.finished_at - jobs.c.started_at)).where(
                jobs.c.id == job_id)).scalar_one()
            chunks = conn.execute(select(lidar_chunks.c.points, lidar_chunks.c.elapsed_s,
                                         lidar_chunks.c.tiles, lidar_chunks.c.worker)
                                  .where(lidar_chunks.c.split_job_id == job_id)).all()
        return {"s": float(elapsed), "report": row.report, "points": row.items_total,
                "chunks": [c._asdict() for c in chunks]}
    finally:
        stop_workers(procs)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20_000_000)
    ap.add_argument("--chunk-points", type=int, default=3_000_000)
    args = ap.parse_args()
    load = [round(x, 2) for x in os.getloadavg()]
    survey = survey_file(args.points)
    base = Path(tempfile.mkdtemp(prefix="distributed-tiling-"))
    base.chmod(0o755)
    data_dir = base / "var"
    log = base / "workers.log"
    pg = EmbeddedPostgres(base / "pg")
    pg.start()
    try:
        db.upgrade(pg.url)
        runs = {}
        for key, split, workers in (("single", False, 1), ("split_1", True, 1),
                                    ("split_2", True, 2)):
            label = f"bench {key}"
            runs[key] = ingest(pg.url, survey, label, split, workers, data_dir,
                               args.chunk_points, log)
            runs[key]["dir"] = data_dir / "tiles" / slug_name("survey", label) / "v1"
            print(f"{key}: {runs[key]['s']:.1f} s", file=sys.stderr, flush=True)
        ref = tree(runs["single"]["dir"])
        identical = all(tree(runs[k]["dir"]) == ref for k in ("split_1", "split_2"))
    except BaseException:
        print(f"workers' log: {log}", file=sys.stderr)
        raise
    finally:
        pg.destroy()
    n = runs["single"]["points"]
    chunks = runs["split_2"]["chunks"]
    split_report = runs["split_2"]["report"]["split"]
    result = {
        "points": n,
        "single_s": round(runs["single"]["s"], 2),
        "split_1_worker_s": round(runs["split_1"]["s"], 2),
        "split_2_workers_s": round(runs["split_2"]["s"], 2),
        "pps_single": round(n / runs["single"]["s"]),
        "pps_1_worker": round(n / runs["split_1"]["s"]),
        "pps_2_workers": round(n / runs["split_2"]["s"]),
        "split_overhead_pct": round(100 * (runs["split_2"]["s"] / runs["single"]["s"] - 1), 1),
        "identical": identical,
        "chunks": len(chunks),
        "chunk_points_mean": round(sum(c["points"] for c in chunks) / max(1, len(chunks))),
        "chunk_s_mean": round(sum(c["elapsed_s"] for c in chunks) / max(1, len(chunks)), 3),
        "chunk_pps_per_worker": round(sum(c["points"] for c in chunks)
                                      / max(1e-9, sum(c["elapsed_s"] for c in chunks))),
        "prepare_s": split_report.get("prepare_s"),
        "finish_s": runs["split_2"]["report"]["split"].get("finish_s"),
        "tiles": sum(1 for p in (runs["single"]["dir"] / "content").rglob("*.glb")),
        "workers_used_2": len({c["worker"] for c in chunks}),
        "load_before": load,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
