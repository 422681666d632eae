"""Scale data set for the layers: 200,000 road segments, 5,000,000 traffic observations,
2,000 water stations and 1,000,000 water samples around Longgang, Shenzhen
(lon 114.20-114.35, lat 22.60-22.80), loaded with COPY.

    uv run python benchmarks/scale_data.py [DATABASE_URL] [--scale 1.0] [--seed 7]

The database must be migrated (``twinbase db upgrade``); existing layer rows are replaced.
With no DATABASE_URL argument it loads a throwaway embedded PostGIS (migrated here, removed
at the end), which times the load alone; the environment's DATABASE_URL is not read, so that
no database is emptied without being named.
Roads are random-walk polylines cut into ~150 m segments (5 % expressway, 15 % primary,
30 % secondary, 50 % branch); traffic follows a two-peak weekday profile, so the
GB/T 33171 levels cover every band; water samples are lognormal around typical Shenzhen
river and reservoir values and are classed by the service's own GB 3838-2002 code.
Prints one JSON object with the row counts and timings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import itertools

from service.layers import gb3838

LON = (114.20, 114.35)
LAT = (22.60, 22.80)
CLASSES = np.array(["expressway", "primary", "secondary", "branch"])
CLASS_P = [0.05, 0.15, 0.30, 0.50]
LIMIT_BY_CLASS = np.array([80.0, 60.0, 50.0, 40.0])
LANES_BY_CLASS = [(6, 8), (4, 6), (2, 4), (1, 2)]
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(22.7))
START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday


def _copy(conn: psycopg.Connection, sql: str, lines: list[str]) -> None:
    with conn.cursor().copy(sql) as copy:
        for i in range(0, len(lines), 50_000):
            copy.write("".join(lines[i:i + 50_000]))


def roads(rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray]:
    per_road = 100
    n_roads = math.ceil(n / per_road)
    cls = rng.choice(4, size=n_roads, p=CLASS_P)
    lines, seg_class = [], []
    sid = 0
    for r in range(n_roads):
        x = rng.uniform(*LON)
        y = rng.uniform(*LAT)
        heading = rng.uniform(0, 2 * math.pi)
        c = int(cls[r])
        lo, hi = LANES_BY_CLASS[c]
        lanes = int(rng.integers(lo, hi + 1))
        limit = LIMIT_BY_CLASS[c]
        for k in range(per_road):
            if sid >= n:
                break
            sid += 1
            pts = [(x, y)]
            for _ in range(int(rng.integers(1, 4))):
                heading += rng.normal(0, 0.15)
                step = rng.uniform(30, 80)
                nx = x + step * math.cos(heading) / M_PER_DEG_LON
                ny = y + step * math.sin(heading) / M_PER_DEG_LAT
                if not (LON[0] < nx < LON[1] and LAT[0] < ny < LAT[1]):
                    heading += math.pi  # turn back at the edge of the district
                    nx = x + step * math.cos(heading) / M_PER_DEG_LON
                    ny = y + step * math.sin(heading) / M_PER_DEG_LAT
                x, y = nx, ny
                pts.append((x, y))
            length = sum(math.hypot((b[0] - a[0]) * M_PER_DEG_LON, (b[1] - a[1]) * M_PER_DEG_LAT)
                         for a, b in itertools.pairwise(pts))
            wkt = ",".join(f"{px:.7f} {py:.7f}" for px, py in pts)
            free = limit * rng.uniform(0.85, 1.05)
            lines.append(f"{sid}\tLG-{r:05d}-{k:03d}\t龙岗路{r:05d}\t{CLASSES[c]}\t{lanes}\t"
                         f"{limit:.0f}\t{free:.1f}\t{length:.1f}\tSRID=4326;LINESTRING({wkt})\n")
            seg_class.append(c)
    return lines, np.array(seg_class)


def traffic(rng: np.random.Generator, seg_class: np.ndarray, n_obs: int) -> list[str]:
    """5-minute readings 06:00-22:40 on a subset of segments, written in time order (as a
    live feed arrives), which is what keeps the BRIN index on observed_at selective."""
    steps = 200
    n_segments = min(len(seg_class), n_obs // steps)
    seg_ids = np.sort(rng.choice(len(seg_class), size=n_segments, replace=False) + 1)
    cls = seg_class[seg_ids - 1]
    limit = LIMIT_BY_CLASS[cls][:, None]
    minutes = 360 + 5 * np.arange(steps)
    hours = minutes / 60.0
    # congestion factor: two weekday peaks (08:00 and 18:00), stronger on some segments
    peak = 0.55 * np.exp(-((hours - 8.2) ** 2) / 1.2) + 0.6 * np.exp(-((hours - 18.2) ** 2) / 1.5)
    severity = rng.uniform(0.3, 1.3, size=(n_segments, 1))
    factor = np.clip(1 - severity * peak[None, :] + rng.normal(0, 0.06, (n_segments, steps)),
                     0.05, 1.1)
    speed = limit * factor
    lam = (4 - cls)[:, None] * 40 * (0.4 + peak[None, :])
    volume = rng.poisson(lam=lam) + 1
    occupancy = np.clip(100 * (1 - factor) * 0.6 + rng.normal(5, 2, (n_segments, steps)), 0, 100)
    lines = []
    for k, m in enumerate(minutes):
        t = (START + timedelta(minutes=int(m))).isoformat()
        lines.extend(f"{sid}\t{t}\t{v}\t{sp:.1f}\t{o:.1f}\n" for sid, v, sp, o in
                     zip(seg_ids, volume[:, k], speed[:, k], occupancy[:, k], strict=True))
    return lines


def stations(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    lines, bodies = [], []
    for i in range(1, n + 1):
        body = "lake" if rng.random() < 0.25 else "river"
        water_body = (f"水库{i % 40:02d}" if body == "lake" else f"龙岗河支流{i % 120:03d}")
        x, y = rng.uniform(*LON), rng.uniform(*LAT)
        lines.append(f"{i}\tWQ{i:05d}\t监测站{i:05d}\t{water_body}\t{body}\t"
                     f"SRID=4326;POINT({x:.7f} {y:.7f})\n")
        bodies.append(body)
    return lines, bodies


WATER_COLS = ("ph", "dissolved_oxygen", "codmn", "cod", "bod5", "nh3_n", "tp", "tn")


def water(rng: np.random.Generator, bodies: list[str], n_obs: int) -> list[str]:
    per = max(1, n_obs // len(bodies))
    lines = []
    for sid, body in enumerate(bodies, start=1):
        quality = rng.uniform(0.4, 2.5)  # station pollution level
        t0 = START - timedelta(hours=4 * per)
        ph = np.clip(rng.normal(7.4, 0.4, per), 5.5, 9.5)
        do = np.clip(rng.normal(8.0 / quality, 1.0, per), 0.5, 12)
        codmn = rng.lognormal(math.log(3 * quality), 0.3, per)
        cod = rng.lognormal(math.log(14 * quality), 0.3, per)
        bod5 = rng.lognormal(math.log(2.5 * quality), 0.3, per)
        nh3 = rng.lognormal(math.log(0.3 * quality ** 1.5), 0.5, per)
        tp = rng.lognormal(math.log((0.03 if body == "lake" else 0.1) * quality), 0.4, per)
        tn = rng.lognormal(math.log(0.8 * quality), 0.3, per) if body == "lake" else None
        for k in range(per):
            values = {"ph": ph[k], "dissolved_oxygen": do[k], "codmn": codmn[k], "cod": cod[k],
                      "bod5": bod5[k], "nh3_n": nh3[k], "tp": tp[k],
                      "tn": None if tn is None else tn[k]}
            values = {n: (None if v is None else round(float(v), 4)) for n, v in values.items()}
            a = gb3838.assess(values, body)
            cells = "\t".join("\\N" if values[c] is None else str(values[c]) for c in WATER_COLS)
            when = (t0 + timedelta(hours=4 * k)).isoformat()
            lines.append(f"{sid}\t{when}\t{cells}\t{a.grade}\t{{{','.join(a.deciding)}}}\t"
                         f"{json.dumps(a.exceedance)}\n")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("database_url", nargs="?",
                    help="a migrated PostGIS whose layer rows are replaced (default: a "
                         "throwaway embedded one)")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full size")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.database_url:
        print(json.dumps(load(args.database_url, args)))
        return
    from service.core import db
    from service.runtime.embedded_pg import EmbeddedPostgres

    work = Path(tempfile.mkdtemp(prefix="scale_data_"))
    os.chmod(work, 0o755)  # the cluster runs as the postgres user when we are root
    pg = EmbeddedPostgres(work / "cluster")
    pg.start()
    try:
        db.upgrade(pg.url)
        out = load(pg.url, args)
    finally:
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({**out, "embedded_database": True}))


def load(database_url: str, args: argparse.Namespace) -> dict:
    """Replace the layer rows with the data set; row counts and seconds per stage."""
    rng = np.random.default_rng(args.seed)
    n_seg, n_traffic = int(200_000 * args.scale), int(5_000_000 * args.scale)
    n_st, n_water = max(1, int(2_000 * args.scale)), int(1_000_000 * args.scale)
    timings: dict[str, float] = {}
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    # the observations are partitioned by month: COPY needs the months it writes to exist
    from service.core.db import sync_engine
    from service.core.partitions import ensure
    from service.layers.tables import TRAFFIC_PARTITIONS, WATER_PARTITIONS

    span = [START - timedelta(hours=4 * max(1, n_water // n_st)), START + timedelta(days=31)]
    with sync_engine(database_url).begin() as conn:
        for spec in (TRAFFIC_PARTITIONS, WATER_PARTITIONS):
            ensure(conn, spec, span, None)
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE water_observations, water_stations, traffic_observations,"
                     " road_segments RESTART IDENTITY CASCADE")
        t = time.perf_counter()
        seg_lines, seg_class = roads(rng, n_seg)
        _copy(conn, "COPY road_segments (id, code, name, road_class, lanes, speed_limit_kmh,"
                    " free_flow_kmh, length_m, geom) FROM STDIN", seg_lines)
        conn.execute("SELECT setval('road_segments_id_seq', (SELECT max(id) FROM road_segments))")
        timings["road_segments_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _copy(conn, "COPY traffic_observations (segment_id, observed_at, volume, speed_kmh,"
                    " occupancy) FROM STDIN", traffic(rng, seg_class, n_traffic))
        timings["traffic_observations_s"] = time.perf_counter() - t
        t = time.perf_counter()
        st_lines, bodies = stations(rng, n_st)
        _copy(conn, "COPY water_stations (id, code, name, water_body, body_type, geom)"
                    " FROM STDIN", st_lines)
        conn.execute("SELECT setval('water_stations_id_seq', (SELECT max(id) FROM"
                     " water_stations))")
        _copy(conn, f"COPY water_observations (station_id, observed_at, {', '.join(WATER_COLS)},"
                    " grade, deciding, exceedance) FROM STDIN", water(rng, bodies, n_water))
        timings["water_s"] = time.perf_counter() - t
        conn.commit()
        conn.autocommit = True
        t = time.perf_counter()
        for table in ("road_segments", "traffic_observations", "water_stations",
                      "water_observations"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        timings["vacuum_analyze_s"] = time.perf_counter() - t
        counts = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("road_segments", "traffic_observations", "water_stations",
                                "water_observations")}
    return {"counts": counts, **{k: round(v, 1) for k, v in timings.items()}}


if __name__ == "__main__":
    main()
