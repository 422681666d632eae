"""Drone routes: conflict check, validation and planning, each beside a brute-force baseline.

Starts a throwaway PostGIS cluster (as the tests do), migrates it, and fills it with a
synthetic Longgang-like city in EPSG:4547 around 114.25 E, 22.72 N:

* 20,000 buildings (40 m squares on a 70 m grid, mostly 10-90 m tall, one in ten 130-180 m,
  so the 120 m limit forces detours), with two empty squares 2 km apart for planning;
* 50,000 approved routes (three-point lines of 0.5-3 km at 30-120 m, windows of 10-60 min
  over three days) across a 20 km square, each with its own drone.

Measured in this one run:

* ``conflict_*``: conflict check of a new route (the same code the approval runs: one query
  on the partial GiST index over corridor, time window and altitude band, then the exact
  test) for ``--queries`` random new routes; p50 and p99. Baselines on the same routes:
  the exact test on every stored route held in memory (``conflict_bruteforce_*``; loading
  them is not counted, which favours it) and the same SQL with index scans switched off
  (``conflict_seqscan_*``). ``conflict_ratio`` = brute-force p50 / indexed p50. Both
  answers are compared and must agree.
* ``validate_*``: validation of a 5 km route through the city (database reads included),
  median of runs; the baseline reads every building and tests each one (no spatial index),
  with the same exact test where a building is within reach. Answers must agree.
* ``plan_ms``: planning a 2 km route across the dense block (reads, search, smoothing and
  validation of the result) around the approved flights of its window, departing later
  where they block every way (``plan_departure_delay_s``), median of runs.

    uv run python benchmarks/routes.py [--queries 300] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import shapely
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.core import db  # noqa: E402
from service.lowalt.checks import find_conflicts, validate_route  # noqa: E402
from service.lowalt.citymodel import load_obstacles, obstacles_from_rows  # noqa: E402
from service.lowalt.conflicts import brute_force, candidates_from_rows  # noqa: E402
from service.lowalt.geo import corridor_polygon, frame  # noqa: E402
from service.lowalt.plan_service import plan_route  # noqa: E402
from service.lowalt.schemas import PlanIn, RouteVolume  # noqa: E402
from service.lowalt.settings import LowAltSettings  # noqa: E402
from service.lowalt.validation import check_buildings  # noqa: E402
from service.runtime.embedded_pg import EmbeddedPostgres  # noqa: E402

N_BUILDINGS = 20_000
N_ROUTES = 50_000
SPACING, SIDE = 70.0, 40.0
GROUND = -2.5  # ellipsoidal height of sea level here (EGM96 N at Longgang)
CITY_N = 142  # 142 x 142 grid >= 20,000 buildings after the plazas
PLAZA_R = 130.0


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fill(url: str, ox: float, oy: float, starts: list[tuple[float, float]]) -> None:
    eng = db.sync_engine(url)
    with eng.begin() as conn:
        ds = conn.execute(text("INSERT INTO datasets (kind, name, status) VALUES"
                               " ('cityjson', 'benchmark city', 'ready') RETURNING id")
                          ).scalar_one()
        plaza = " AND ".join(
            f"((:ox + i * {SPACING} + 20 - {px}) ^ 2 + (:oy + j * {SPACING} + 20 - {py}) ^ 2"
            f" > {PLAZA_R ** 2})" for px, py in starts)
        conn.execute(text(
            "INSERT INTO city_objects (object_id, dataset_id, type, footprint, height, min_z,"
            " max_z) SELECT 'b-' || i || '-' || j, :ds, 'Building',"
            " ST_Multi(ST_Transform(ST_MakeEnvelope(:ox + i * :sp, :oy + j * :sp,"
            " :ox + i * :sp + :side, :oy + j * :sp + :side, 4547), 4326)), h, :g, :g + h"
            " FROM generate_series(0, :n - 1) i, generate_series(0, :n - 1) j,"
            " LATERAL (SELECT CASE WHEN (i * 31 + j * 17) % 10 = 0 THEN 130 + (i * j) % 50"
            " ELSE 10 + (i * 7919 + j * 104729) % 81 END AS h) hh"
            f" WHERE {plaza} ORDER BY i, j LIMIT :limit"),
            {"ds": ds, "ox": ox, "oy": oy, "sp": SPACING, "side": SIDE, "g": GROUND,
             "n": CITY_N, "limit": N_BUILDINGS})
        conn.execute(text("INSERT INTO drones (serial, operator, class) SELECT 'bench-' || n,"
                          " 'benchmark', 'light' FROM generate_series(1, :n) n"),
                     {"n": N_ROUTES})
        conn.execute(text("SELECT setseed(0.42)"))
        conn.execute(text(
            "INSERT INTO drone_routes (name, drone_id, status, priority, geom, corridor,"
            " half_width_m, vertical_half_m, alt_band, time_window, length_m, verdict,"
            " validation)"
            " SELECT 'r' || n, n, 'approved', n % 5, ST_Transform(line, 4326),"
            " ST_Transform(ST_Buffer(ST_Force2D(line), 10, 'quad_segs=8'), 4326), 10, 5,"
            " numrange((ST_ZMin(line) - 5)::numeric, (ST_ZMax(line) + 5)::numeric, '[]'),"
            " tstzrange(t0, t0 + dur), ST_Length(line), 'accepted', '{}'"
            " FROM (SELECT n, ST_SetSRID(ST_MakeLine(ARRAY["
            "  ST_MakePoint(x, y, GREATEST(z0, 30)),"
            "  ST_MakePoint(x + 0.5 * len * cos(a) + 0.2 * len * sin(a),"
            "               y + 0.5 * len * sin(a) - 0.2 * len * cos(a), z1),"
            "  ST_MakePoint(x + len * cos(a), y + len * sin(a), z2)]), 4547) AS line,"
            "  now() + random() * interval '3 days' AS t0,"
            "  (10 + random() * 50) * interval '1 minute' AS dur"
            "  FROM (SELECT n, :ox - 5000 + random() * 20000 AS x,"
            "   :oy - 5000 + random() * 20000 AS y, 500 + random() * 2500 AS len,"
            "   random() * 2 * pi() AS a, :g + 30 + random() * 90 AS z0,"
            "   :g + 30 + random() * 90 AS z1, :g + 30 + random() * 90 AS z2"
            "   FROM generate_series(1, :n) n) p) q"),
            {"ox": ox, "oy": oy, "g": GROUND, "n": N_ROUTES})
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("city_objects", "drone_routes", "drones"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))


def random_routes(rng: np.random.Generator, n: int, ox: float, oy: float,
                  s: LowAltSettings) -> list[RouteVolume]:
    fr = frame(s.metric_crs)
    now = datetime.now(UTC)
    out = []
    for _ in range(n):
        x, y = ox - 5000 + rng.random() * 20000, oy - 5000 + rng.random() * 20000
        length, a = 500 + rng.random() * 2500, rng.random() * 2 * math.pi
        z = GROUND + 30 + rng.random(3) * 90
        xyz = np.array([[x, y, z[0]],
                        [x + 0.5 * length * math.cos(a) + 0.2 * length * math.sin(a),
                         y + 0.5 * length * math.sin(a) - 0.2 * length * math.cos(a), z[1]],
                        [x + length * math.cos(a), y + length * math.sin(a), z[2]]])
        t0 = now + timedelta(seconds=float(rng.random() * 3 * 86400))
        t1 = t0 + timedelta(minutes=float(10 + rng.random() * 50))
        out.append(RouteVolume(fr.lonlatz(xyz), xyz, 10.0, 5.0, corridor_polygon(xyz, 10.0),
                               t0, t1, 0, fr))
    return out


async def bench_conflicts(engine, routes: list[RouteVolume], s: LowAltSettings,
                          n_brute: int) -> dict[str, float]:
    fr = frame(s.metric_crs)
    times, found = [], []
    async with engine.connect() as conn:
        for r in routes[:10]:  # warm the caches and the plan
            await find_conflicts(conn, r, s)
        for r in routes:
            t = time.perf_counter()
            c = await find_conflicts(conn, r, s)
            times.append((time.perf_counter() - t) * 1000)
            found.append(sorted(x["route_id"] for x in c))
        seq = []
        await conn.execute(text("SET enable_indexscan = off"))
        await conn.execute(text("SET enable_bitmapscan = off"))
        for k, r in enumerate(routes[:n_brute]):
            t = time.perf_counter()
            c = await find_conflicts(conn, r, s)
            seq.append((time.perf_counter() - t) * 1000)
            assert sorted(x["route_id"] for x in c) == found[k]
        await conn.execute(text("RESET enable_indexscan"))
        await conn.execute(text("RESET enable_bitmapscan"))
        rows = (await conn.execute(text(
            "SELECT id, drone_id, name, status, priority, half_width_m, vertical_half_m,"
            " ST_AsBinary(geom) AS wkb, lower(time_window) AS t0, upper(time_window) AS t1"
            " FROM drone_routes WHERE status IN ('approved', 'active')"))).all()
    everything = candidates_from_rows(rows, fr)
    brute = []
    for k, r in enumerate(routes[:n_brute]):
        t = time.perf_counter()
        c = brute_force(r, everything, s)
        brute.append((time.perf_counter() - t) * 1000)
        assert sorted(x["route_id"] for x in c) == found[k], (k, c, found[k])
    p50, p99 = statistics.median(times), pct(times, 99)
    return {
        "conflict_p50_ms": round(p50, 2), "conflict_p99_ms": round(p99, 2),
        "conflict_bruteforce_p50_ms": round(statistics.median(brute), 2),
        "conflict_seqscan_p50_ms": round(statistics.median(seq), 2),
        "conflict_ratio": round(statistics.median(brute) / p50, 1),
        "conflict_seqscan_ratio": round(statistics.median(seq) / p50, 1),
        "conflict_queries": len(routes),
        "conflicts_found_mean": round(statistics.mean(len(f) for f in found), 2),
        "routes_stored": len(everything),
    }


async def bench_validate(engine, ox: float, oy: float, s: LowAltSettings, runs: int
                         ) -> dict[str, float]:
    fr = frame(s.metric_crs)
    # 5 km diagonally across the city at 100 m above ground, with a kink
    d = 5000 / 2 / math.sqrt(2)
    xyz = np.array([[ox + 1000, oy + 1500, GROUND + 100],
                    [ox + 1000 + d, oy + 1500 + d, GROUND + 100],
                    [ox + 1000 + 2 * d, oy + 1500, GROUND + 100]])
    now = datetime.now(UTC) + timedelta(hours=1)
    vol = RouteVolume(fr.lonlatz(xyz), xyz, 10.0, 5.0, corridor_polygon(xyz, 10.0), now,
                      now + timedelta(minutes=30), 0, fr)
    fast, slow = [], []
    async with engine.connect() as conn:
        result = await validate_route(conn, vol, "light", s)
        for _ in range(runs):
            t = time.perf_counter()
            result = await validate_route(conn, vol, "light", s)
            fast.append((time.perf_counter() - t) * 1000)
        want = sorted(v["city_object"] for v in result["violations"]
                      if v["rule"] == "building_clearance")
        for _ in range(max(1, runs // 2)):
            t = time.perf_counter()
            rows = (await conn.execute(text(
                "SELECT id, object_id, type, ST_AsBinary(footprint) AS wkb, min_z, max_z"
                " FROM city_objects WHERE valid_to IS NULL AND type = ANY(:types)"),
                {"types": list(s.obstacle_types)})).all()
            every = obstacles_from_rows(rows, fr)
            line = shapely.LineString(xyz[:, :2])
            reach = vol.half_width + s.clearance_h_m
            near = [k for k in range(len(every)) if every.footprints[k].distance(line) <= reach]
            sub = SimpleNamespace(**{f: getattr(every, f) for f in (
                "ids", "min_z", "max_z", "footprints")})
            sub.ids, sub.min_z, sub.max_z = every.ids[near], every.min_z[near], every.max_z[near]
            sub.footprints = every.footprints[near]
            sub.object_ids = [every.object_ids[k] for k in near]
            sub.types = [every.types[k] for k in near]
            sub.__len__ = None
            got = check_buildings(vol, _Obs(sub), s)
            slow.append((time.perf_counter() - t) * 1000)
        assert sorted(v["city_object"] for v in got) == want
        indexed = await load_obstacles(conn, vol.corridor_m.buffer(s.clearance_h_m + 1), fr,
                                       s.obstacle_types)
    ms = statistics.median(fast)
    return {"validate_ms": round(ms, 1), "validate_bruteforce_ms": round(
        statistics.median(slow), 1), "validate_ratio": round(statistics.median(slow) / ms, 1),
        "validate_route_km": round(vol.length_m / 1000, 2),
        "validate_violations": len(result["violations"]),
        "validate_buildings_near": len(indexed), "buildings": len(every)}


class _Obs:
    """Obstacles view over a subset (the brute-force baseline's buildings within reach)."""

    def __init__(self, ns: SimpleNamespace) -> None:
        self.__dict__.update({k: v for k, v in vars(ns).items() if k != "__len__"})

    def __len__(self) -> int:
        return len(self.ids)


async def bench_plan(engine, starts: list[tuple[float, float]], s: LowAltSettings,
                     runs: int) -> dict[str, float]:
    fr = frame(s.metric_crs)
    (sx, sy), (gx, gy) = starts
    lon, lat = fr.to_lonlat(np.array([sx, gx]), np.array([sy, gy]))
    t0 = datetime.now(UTC) + timedelta(hours=2)
    body = PlanIn(drone_id=1, start=[float(lon[0]), float(lat[0]), GROUND + 30],
                  goal=[float(lon[1]), float(lat[1]), GROUND + 30], start_time=t0,
                  end_time=t0 + timedelta(minutes=30))
    times = []
    async with engine.connect() as conn:
        out = await plan_route(conn, body, s)
        for _ in range(runs):
            t = time.perf_counter()
            out = await plan_route(conn, body, s)
            times.append((time.perf_counter() - t) * 1000)
    assert out["validation"]["verdict"] == "accepted"
    return {"plan_ms": round(statistics.median(times), 1),
            "plan_length_m": out["plan"]["length_m"], "plan_straight_m":
            out["plan"]["straight_m"], "plan_voxels": out["plan"]["voxels"],
            "plan_obstacles": out["validation"]["checked"]["obstacles"],
            "plan_waypoints": len(out["route"]["geometry"]["coordinates"]),
            "plan_flights_avoided": out["plan"]["flights_avoided"],
            "plan_departure_delay_s": out["plan"]["departure_delay_s"]}


async def run(url: str, args: argparse.Namespace, ox: float, oy: float,
              starts: list[tuple[float, float]]) -> dict[str, float]:
    s = LowAltSettings()
    engine = db.make_async_engine(url)
    try:
        rng = np.random.default_rng(7)
        routes = random_routes(rng, args.queries, ox, oy, s)
        out = await bench_conflicts(engine, routes, s, args.brute)
        log(f"conflicts: {out}")
        out.update(await bench_validate(engine, ox, oy, s, args.runs))
        log(f"validate: {out['validate_ms']} ms")
        out.update(await bench_plan(engine, starts, s, args.runs))
        log(f"plan: {out['plan_ms']} ms")
    finally:
        await engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--brute", type=int, default=20, help="queries for the baselines")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="cluster directory to keep (default: temporary)")
    args = ap.parse_args()
    fr = frame("EPSG:4547")
    x, y = fr.to_metric(np.array([114.25, 114.26]), np.array([22.72, 22.72]))
    ox, oy = float(x[0]), float(y[0])
    # two squares 2 km apart in the middle of the city
    starts = [(ox + 2500.0, oy + 5000.0), (ox + 4500.0, oy + 5000.0)]
    base = args.keep or Path(tempfile.mkdtemp(prefix="twinbase-bench-routes-"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "cluster")
    pg.start()
    try:
        db.upgrade(pg.url)
        t = time.perf_counter()
        fill(pg.url, ox, oy, starts)
        log(f"filled {N_BUILDINGS} buildings and {N_ROUTES} routes in "
            f"{time.perf_counter() - t:.1f} s")
        out = asyncio.run(run(pg.url, args, ox, oy, starts))
    finally:
        if args.keep is None:
            pg.destroy()
            shutil.rmtree(base, ignore_errors=True)
    out["goal"] = "conflict p99 < 50 ms and >= 10x brute force; plan < 2 s"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
