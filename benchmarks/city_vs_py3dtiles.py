"""City models from PostGIS to 3D Tiles: twinbase against ``py3dtiles export`` (12.1.1), same run.

Two data sets, each in a database of its own on a throwaway PostGIS cluster:

* real: the real CityJSON samples in ``tests/data/cim`` (3D BAG Rotterdam, Den Haag, a
  multi-LoD file, citygml4j's 100 LoD2 buildings), ingested with ``twinbase ingest city``;
* synthetic: ``--buildings`` (default 50,000) LoD2 buildings around Longgang in EPSG:4547
  from ``benchmarks/synthetic_city.py``, ingested the same way.

For each, the stored rows are then tiled by twinbase (``build_city_tileset``: rows read back,
triangulated, glb tiles with ids and property tables) and by ``py3dtiles export`` reading the
same rows through a view that gives them in EPSG:4978 (earth-centred metres, the only frame
py3dtiles' PostGIS export can place correctly: it only translates). Each tiling runs in its
own process; its time is measured inside the process (imports included, interpreter start
excluded, so the ``uv`` wrapper py3dtiles needs for psycopg2 does not count against it).
py3dtiles' error replaces its time where it crashes.

Peak RSS is the largest of the twinbase processes (ingest and tiling), each from its own
rusage. The last stdout line is
one JSON object (see the issue's "How fast" section).

    uv run --group bench python benchmarks/city_vs_py3dtiles.py [--buildings 50000]

py3dtiles and psycopg2 are in the ``bench`` dependency group. The cluster is always its own
(DATABASE_URL is not read): the script creates and fills two databases in it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = [("rotterdam_subset.json", "EPSG:7415"), ("DH_01_subs.city.json", "EPSG:7415"),
        ("multi_lod.json", "EPSG:7415"), ("citygml4j_lod2_buildings_v2.city.json", None)]
ECEF_VIEW = ("CREATE VIEW city_ecef AS SELECT object_id, ST_Transform(geom, 4978) AS geom "
             "FROM city_objects WHERE valid_to IS NULL AND geom IS NOT NULL")

# Child programs: each prints "ELAPSED <seconds>" measured from its first statement.
TWINBASE_TILE = """
import time; t0 = time.perf_counter()
import json, sys
from pathlib import Path
from service.core.db import sync_engine
from service.cim.tiles import build_city_tileset
url, out = sys.argv[1], Path(sys.argv[2])
with sync_engine(url).begin() as conn:
    r = build_city_tileset(conn, out, out.parent, max_triangles_per_tile=100_000)
print(json.dumps({"features": r.features, "tiles": r.tiles, "triangles": r.triangles}))
print("ELAPSED", time.perf_counter() - t0)
"""
PY3DTILES_EXPORT = """
import time; t0 = time.perf_counter()
import sys
from py3dtiles.command_line import main
sys.argv[0] = "py3dtiles"
try:
    main()
finally:
    print("ELAPSED", time.perf_counter() - t0, flush=True)
"""


PEAK_RSS_KB = {"twinbase": 0}


def run(cmd: list[str], env: dict[str, str] | None = None, *, tool: str = "",
        timeout: float | None = None) -> dict:
    """Run ``cmd``; exit code, wall and in-process time, output; the peak RSS of the process
    (its own rusage from wait4) counts towards ``tool``. Past ``timeout`` seconds its whole
    process group is killed and ``timed_out`` is set."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, text=True, cwd=ROOT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        killer = None
        if timeout:
            killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
            killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        if killer is not None:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    if tool:
        PEAK_RSS_KB[tool] = max(PEAK_RSS_KB.get(tool, 0), usage.ru_maxrss)
    inner = None
    for line in out.splitlines():
        if line.startswith("ELAPSED "):
            inner = float(line.split()[1])
    return {"rc": proc.returncode, "wall_s": wall, "s": inner if inner is not None else wall,
            "out": out, "err": err, "timed_out": bool(timeout) and wall >= timeout}


def new_database(cluster_url: str, name: str) -> str:
    import psycopg

    from service.core import db

    admin = cluster_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # a fixed name of this script, not input
    url = cluster_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    db.upgrade(url)
    return url


def ingest(url: str, work: Path, path: Path, crs: str | None) -> dict:
    cmd = [sys.executable, "-c", "from service.cli import app; app()", "ingest", "city",
           str(path)] + (["--crs", crs] if crs else [])
    got = run(cmd, env={"DATABASE_URL": url, "TWINBASE_DATA_DIR": str(work / "var"),
                        "TWINBASE_LOAD_SAMPLES": "false"}, tool="twinbase")
    if got["rc"] != 0:
        raise RuntimeError(f"ingest of {path.name} failed: {got['err'][-2000:]}")
    report = json.loads(got["out"][got["out"].index("{"):])
    return {"s": got["wall_s"], "objects": report["objects"], "report": report}


def twinbase_tiles(url: str, out: Path) -> dict:
    got = run([sys.executable, "-c", TWINBASE_TILE, url, str(out / "tiles")],
              tool="twinbase")
    if got["rc"] != 0:
        raise RuntimeError(f"twinbase tiling failed: {got['err'][-2000:]}")
    stats = json.loads(next(line for line in got["out"].splitlines() if line.startswith("{")))
    return {"s": got["s"], **stats}


def py3dtiles_python() -> list[str] | str:
    """The command that runs Python with py3dtiles and psycopg2 (its PostGIS export needs
    psycopg2, which the project does not depend on), or why there is none."""
    try:
        import psycopg2  # noqa: F401

        return [sys.executable]
    except ImportError:
        pass
    uv = shutil.which("uv")
    if uv is None:
        return "py3dtiles export needs psycopg2, and uv is not there to add it"
    return [uv, "run", "--quiet", "--with", "psycopg2-binary", "python"]


def py3dtiles_tiles(url: str, out: Path, timeout: float) -> dict:
    from service.core.db import libpq_url, sync_engine

    with sync_engine(url).begin() as conn:
        conn.exec_driver_sql("DROP VIEW IF EXISTS city_ecef")
        conn.exec_driver_sql(ECEF_VIEW)
    python = py3dtiles_python()
    if isinstance(python, str):
        return {"s": None, "error": python}
    # libpq keyword form: py3dtiles hands it to psycopg2.connect
    cmd = [*python, "-c", PY3DTILES_EXPORT, "export", "-D", libpq_url(url), "-t", "city_ecef",
           "-c", "geom", "-i", "object_id", "-s", str(out / "py3dtiles")]
    got = run(cmd, timeout=timeout)
    if got["timed_out"]:
        return {"s": None, "error": f"did not finish within {timeout:.0f} s (killed)"}
    if got["rc"] != 0:
        lines = [ln for ln in got["err"].strip().splitlines() if ln.strip()]
        return {"s": None, "error": lines[-1][:300] if lines else f"exit {got['rc']}",
                "after_s": round(got["s"], 2)}
    tiles = list((out / "py3dtiles").rglob("*.b3dm"))
    return {"s": got["s"], "tiles": len(tiles)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buildings", type=int, default=50_000)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--py3dtiles-timeout", type=float, default=1800,
                    help="seconds before a py3dtiles export is given up (default 1800)")
    args = ap.parse_args()
    if importlib.util.find_spec("py3dtiles") is None:
        sys.exit("py3dtiles is missing: uv run --group bench python benchmarks/"
                 "city_vs_py3dtiles.py")

    from benchmarks.synthetic_city import generate
    from service.runtime.embedded_pg import EmbeddedPostgres

    work = Path(tempfile.mkdtemp(prefix="city_bench_"))
    os.chmod(work, 0o755)  # the cluster runs as the postgres user when we are root
    pg = EmbeddedPostgres(work / "cluster")
    pg.start()
    try:
        data = ROOT / "tests" / "data" / "cim"
        real_url = new_database(pg.url, "real")
        real_ingest = [ingest(real_url, work / "real", data / name, crs) for name, crs in REAL]
        real_tb = twinbase_tiles(real_url, work / "real")
        real_py = py3dtiles_tiles(real_url, work / "real", args.py3dtiles_timeout)
        print("real:", json.dumps({"ingest": [{k: v for k, v in r.items() if k != "report"}
                                              for r in real_ingest],
                                   "twinbase": real_tb, "py3dtiles": real_py}), flush=True)

        t = time.perf_counter()
        synthetic = work / "longgang_synthetic.city.json"
        synthetic.write_text(json.dumps(generate(args.buildings), separators=(",", ":")))
        gen_s = time.perf_counter() - t
        syn_url = new_database(pg.url, "synthetic")
        syn_ingest = ingest(syn_url, work / "synthetic", synthetic, None)
        syn_tb = twinbase_tiles(syn_url, work / "synthetic")
        syn_py = py3dtiles_tiles(syn_url, work / "synthetic", args.py3dtiles_timeout)
        print("synthetic:", json.dumps({"generate_s": round(gen_s, 2),
                                        "ingest_s": round(syn_ingest["s"], 2),
                                        "ingest_report": syn_ingest["report"],
                                        "twinbase": syn_tb, "py3dtiles": syn_py},
                                       default=str), flush=True)
    finally:
        pg.destroy()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def ratio(py: dict, tb: dict) -> float | None:
        return round(py["s"] / tb["s"], 2) if py.get("s") else None

    print(json.dumps({
        "objects": real_tb["features"],
        "twinbase_s": round(real_tb["s"], 3),
        "py3dtiles_s": round(real_py["s"], 3) if real_py.get("s") else real_py["error"],
        "ratio": ratio(real_py, real_tb),
        "synthetic_buildings": args.buildings,
        # ingest = parse + transform + COPY into PostGIS + tiles from the rows + publish
        "synthetic_s": round(syn_ingest["s"], 2),
        "synthetic_tile_s": round(syn_tb["s"], 2),
        "synthetic_py3dtiles_s": round(syn_py["s"], 2) if syn_py.get("s") else syn_py["error"],
        "synthetic_ratio": ratio(syn_py, syn_tb),
        "triangles_per_s": round(syn_tb["triangles"] / syn_tb["s"]),
        "peak_rss_mb": round(PEAK_RSS_KB["twinbase"] / 1024),
    }))


if __name__ == "__main__":
    main()
