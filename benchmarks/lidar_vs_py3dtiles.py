"""Drone LiDAR to 3D Tiles: twinbase against ``py3dtiles convert`` (12.1.1), same run.

Writes a synthetic survey (LAS 1.4 point format 7: RGB, intensity, classification, GPS time;
EPSG:4547 around x 500000-502000, y 2510000-2512000; terrain, building blocks, trees; flown in
strips) as LAS and as LAZ, then converts each to ECEF 3D Tiles with both tools, ``--runs``
times each, as separate processes timed from the outside (interpreter start included).

py3dtiles runs in its correct configuration: ``--pyproj-always-xy`` (EPSG:4547 is defined
northing-first; without it the survey lands at 131.8 E, 4.3 N), ``--srs_out 4978``,
``--jobs 2`` like our two workers, ``--spec-version 1.1`` (glb content, as we write), and
multiprocessing in 'forkserver' mode: its default fork after laspy's lazrs backend started
threads deadlocks on LAZ (this avoids installing the ``laszip`` package; laspy would prefer
lazrs anyway). Each tool's output is checked to land at about 114.0 E, 22.7 N.

Peak memory is the summed RSS of the whole process tree, sampled from /proc every 50 ms.
The last stdout line is one JSON object (see the issue's "How fast" section).

    uv run --group bench python benchmarks/lidar_vs_py3dtiles.py [--points 20000000] [--runs 3]

py3dtiles is in the ``bench`` dependency group, not the service's dependencies. No database.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "tiler"))

from helpers_lidar import write_survey  # noqa: E402

from tiler.frames import ecef_to_geodetic  # noqa: E402

PY3DTILES = (
    "import multiprocessing as mp, sys; mp.set_start_method('forkserver'); "
    "from py3dtiles.command_line import main; sys.argv[0] = 'py3dtiles'; sys.exit(main())"
)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _tree_rss_kb(root: int, cpu: dict[int, float] | None = None) -> int:
    """Summed VmRSS of ``root`` and all its descendants, from /proc; records each process's
    CPU seconds so far (utime + stime) in ``cpu``."""
    parent: dict[int, int] = {}
    ticks: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(")") + 2:].split()
            parent[int(d)] = int(fields[1])
            if cpu is not None:
                ticks[int(d)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for c, pp in parent.items():
            if pp == p and c not in tree:
                tree.add(c)
                frontier.append(c)
    if cpu is not None:
        for p in tree:
            if p in ticks:
                cpu[p] = max(cpu.get(p, 0.0), ticks[p])
    total = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def timed(cmd: list[str], *, watch_preview: bool = False) -> dict:
    """Run ``cmd``; wall time, CPU time of the whole tree (sampled from /proc with the
    memory: a shared machine inflates wall time, not CPU time), peak tree RSS, time of a
    'preview' line, last stdout line."""
    cpu: dict[int, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid, cpu))
            done.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    first_view = None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if watch_preview and first_view is None and line.startswith("preview "):
            first_view = time.perf_counter() - t0
        lines.append(line)
    err = proc.stderr.read() if proc.stderr else ""
    rc = proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    if rc != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({rc}): {err[-2000:]}")
    return {"s": wall, "cpu_s": sum(cpu.values()), "peak_mb": peak[0] / 1024,
            "first_view_s": first_view, "last": lines[-1].strip() if lines else ""}


def lands_at(tileset: Path) -> tuple[float, float]:
    """Longitude, latitude of the root bounding volume's centre (follows the transform)."""
    doc = json.loads(tileset.read_text())
    root = doc["root"]
    bv = root["boundingVolume"]
    if "region" in bv:
        w, s, e, n = bv["region"][:4]
        return math.degrees((w + e) / 2), math.degrees((s + n) / 2)
    c = np.array([*bv.get("box", bv.get("sphere"))[:3], 1.0])
    if "transform" in root:
        c = np.asarray(root["transform"], float).reshape(4, 4).T @ c
    g = ecef_to_geodetic(c[:3][None, :])[0]
    return float(g[0]), float(g[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--skip-py3dtiles", action="store_true")
    args = ap.parse_args()
    if not args.skip_py3dtiles and importlib.util.find_spec("py3dtiles") is None:
        sys.exit("py3dtiles is missing: uv run --group bench python benchmarks/"
                 "lidar_vs_py3dtiles.py (or --skip-py3dtiles)")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    n = args.points
    files = {}
    for kind in ("las", "laz"):
        path = work / f"survey_{n}.{kind}"
        if not path.exists():
            t = time.perf_counter()
            write_survey(path.with_suffix(".tmp." + kind), n)
            path.with_suffix(".tmp." + kind).rename(path)
            print(f"wrote {path.name} ({path.stat().st_size / 1e6:.0f} MB) in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)
        files[kind] = path

    py = sys.executable
    res: dict[str, dict[str, list]] = {}
    peak = 0.0
    tiles = nbytes = 0
    first_views: list[float] = []
    where: dict[str, tuple[float, float]] = {}
    for kind, path in files.items():
        for tool in ("twinbase", "py3dtiles"):
            if tool == "py3dtiles" and args.skip_py3dtiles:
                continue
            for i in range(args.runs):
                out = work / f"out_{tool}_{kind}"
                shutil.rmtree(out, ignore_errors=True)
                if tool == "twinbase":
                    r = timed([py, "-m", "tiler.pointcloud", str(path), str(out), "--workers",
                               "2", "--json"], watch_preview=True)
                    summary = json.loads(r["last"])
                    tiles, nbytes = summary["tiles"], summary["bytes"]
                    first_views.append(r["first_view_s"])
                    peak = max(peak, r["peak_mb"])
                else:
                    r = timed([py, "-c", PY3DTILES, "convert", str(path), "--out", str(out),
                               "--overwrite", "--jobs", "2", "--srs_in", "4547", "--srs_out",
                               "4978", "--pyproj-always-xy", "--spec-version", "1.1"])
                res.setdefault(f"{kind}_{tool}", {"s": [], "peak": [], "cpu": []})
                res[f"{kind}_{tool}"]["s"].append(r["s"])
                res[f"{kind}_{tool}"]["cpu"].append(r["cpu_s"])
                res[f"{kind}_{tool}"]["peak"].append(r["peak_mb"])
                where[f"{kind}_{tool}"] = lands_at(out / "tileset.json")
                print(f"{kind} {tool} run {i + 1}: {r['s']:.2f} s (CPU {r['cpu_s']:.1f} s), "
                      f"peak {r['peak_mb']:.0f} MB"
                      + (f", first view {r['first_view_s']:.2f} s" if r["first_view_s"] else "")
                      + f", lands at {where[f'{kind}_{tool}'][0]:.3f} E "
                        f"{where[f'{kind}_{tool}'][1]:.3f} N", flush=True)
    for key, (lon, lat) in where.items():
        if abs(lon - 114.0) > 0.1 or abs(lat - 22.7) > 0.1:
            print(f"WARNING: {key} landed at {lon:.3f} E {lat:.3f} N, not 114.0 E 22.7 N",
                  flush=True)

    def med(key: str) -> float | None:
        return statistics.median(res[key]["s"]) if key in res else None

    las_t, laz_t = med("las_twinbase"), med("laz_twinbase")
    las_p, laz_p = med("las_py3dtiles"), med("laz_py3dtiles")
    out = {
        "points": n,
        "las_twinbase_s": round(las_t, 3),
        "las_py3dtiles_s": round(las_p, 3) if las_p else None,
        "laz_twinbase_s": round(laz_t, 3),
        "laz_py3dtiles_s": round(laz_p, 3) if laz_p else None,
        "las_ratio": round(las_p / las_t, 3) if las_p else None,
        "laz_ratio": round(laz_p / laz_t, 3) if laz_p else None,
        "las_points_per_s": round(n / las_t),
        "laz_points_per_s": round(n / laz_t),
        "peak_rss_mb": round(peak, 1),
        "py3dtiles_peak_rss_mb": round(max(max(v["peak"]) for k, v in res.items()
                                           if k.endswith("py3dtiles")), 1)
        if not args.skip_py3dtiles else None,
        "first_view_s": round(statistics.median(first_views), 3),
        # CPU seconds of each tool's process tree (medians): comparable on a busy machine
        "cpu_s": {k: round(statistics.median(v["cpu"]), 1) for k, v in res.items()},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "tiles": tiles,
        "bytes": nbytes,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
