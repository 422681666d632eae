"""The low-altitude route network and 4D reservations on a generated Longgang-like city.

Starts a throwaway PostGIS cluster (as the tests do), migrates it and fills it with:

* a 10 x 10 km district in EPSG:4547 around 114.25 E, 22.72 N: a road grid every 500 m,
  four diagonal arterials and a meandering river (the guide layer, GeoJSON); hilly ground
  (0-60 m above the sea);
* 20,000 buildings (footprint shapes and log-normal heights of ``synthetic_city``) set back
  at least 28 m from every guide's centre line, and 30 towers of 100-200 m standing within
  20 m of a road (they block every layer of their road);
* three prohibited zones (400 m circles) and 40 vertiports in plazas 80 m off a road.

Measured:

* ``network_build_s``: ``POST /airspace/network/generate`` as the service runs it (reads,
  noding, validation of every edge, writes); ``network_edges`` kept, ``network_dropped``;
* ``network_valid_fraction``: a random sample of the stored edges (``--validate-sample``)
  validated again one by one exactly as ``POST /drone-routes/validate`` does (obstacles,
  zones and ground read from the database for each), fraction accepted;
* ``stretch_median``: path length over straight-line distance between every pair of
  vertiports, on the network's fastest paths (goal <= 1.25);
* ``flights_per_day`` of ``--flights`` asked for over one day (random vertiport pairs,
  departures uniform over 24 h, up to 10 min of delay allowed): approved;
  ``approve_p50_ms``/``approve_p99_ms`` of one approval (its transaction, commit included);
* ``reservation_conflicts_missed``: a brute-force 4D check of a sample of approved flights
  against every other approved flight (positions every 0.25 s from their timelines; a
  conflict is less than separation_h + 2 x half-width horizontally and less than
  separation_v + 2 x vertical half vertically at one time): pairs found in conflict, that
  the reservations let through (0 is right).

The Longgang day (issue 17; run before the day of flights but dated two days after it, so
neither holds slots of the other): ``--longgang-drones`` (30) drones registered as ``POST /drones``
does, homed at ``--longgang-vertiports`` (5) of the network's vertiports spread over the
district (all in the part of the network that reaches each other), and ``--longgang-tasks``
(200) tasks at random places whose nearest node is in that part and outside the zones, with
the drones' batteries, payloads and the tasks' windows, service times, payloads and
priorities drawn as ``benchmarks/dispatch.py`` draws them (its ``longgang_drones`` and
``longgang_task``). The plan is made by ``make_plan``, what ``POST /fleet/plans`` runs: the
network's travel times, the solver for ``--longgang-s``, then, in one transaction, the plan
stored and every flight reserved and approved. ``longgang_plan_s``: the wall time of that
call; ``longgang_planned`` of ``longgang_tasks``; ``longgang_valid_fraction``: every
reserved flight's ``drone_routes`` row read back (``store.load_volume``) and validated as
``POST /drone-routes/validate`` does (``validate_route``), fraction accepted. When a flight
cannot be reserved the service refuses the whole plan: ``longgang_error`` says why, and
nothing is reserved.

``solomon_mean_gap_pct``, ``ortools_mean_gap_pct``: ``benchmarks/dispatch.py`` imported and
run (not copied): its generated Solomon-type instances, PyVRP and OR-Tools side by side.

    uv run --group bench python benchmarks/airspace.py [--flights 10000] [--keep DIR]
        [--quick] [--longgang-only] [--no-solomon] [--longgang-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import shapely
import shapely.affinity
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from synthetic_city import _footprint  # noqa: E402

from service.core import db  # noqa: E402
from service.lowalt.checks import validate_route  # noqa: E402
from service.lowalt.geo import corridor_polygon, frame  # noqa: E402
from service.lowalt.network import service as net_service  # noqa: E402
from service.lowalt.network.reserve import reserve_flight  # noqa: E402
from service.lowalt.network.schemas import FlightIn, GenerateIn, VertiportIn  # noqa: E402
from service.lowalt.schemas import RouteVolume  # noqa: E402
from service.lowalt.settings import LowAltSettings  # noqa: E402
from service.runtime.embedded_pg import EmbeddedPostgres  # noqa: E402

SIDE = 10_000.0
ROAD_STEP = 500.0
SETBACK = 28.0
N_BUILDINGS = 20_000
N_TOWERS = 30
N_VERTIPORTS = 40
GEOID = -2.5  # EGM96 N at Longgang: ellipsoidal height of the sea


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


def terrain(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ground above the sea (m): two hills and a valley, 0-60 m."""
    u, v = x / SIDE, y / SIDE
    return 30 + 18 * np.sin(2.1 * math.pi * u) * np.cos(1.3 * math.pi * v) + 12 * u * v - 6


def guides() -> list[tuple[str, np.ndarray]]:
    out = []
    for i, c in enumerate(np.arange(0, SIDE + 1, ROAD_STEP)):
        out.append((f"ns-{i}", np.array([[c, 0], [c, SIDE]])))
        out.append((f"ew-{i}", np.array([[0, c], [SIDE, c]])))
    square = shapely.box(0, 0, SIDE, SIDE)
    for i, c in enumerate((-3000.0, 3000.0)):  # two arterials each diagonal way
        for name, line in ((f"diag-ne-{i}", [(-SIDE, -SIDE + c), (2 * SIDE, 2 * SIDE + c)]),
                           (f"diag-nw-{i}", [(-SIDE, 2 * SIDE - c), (2 * SIDE, -SIDE - c)])):
            part = shapely.LineString(line).intersection(square)
            if not part.is_empty:
                out.append((name, shapely.get_coordinates(part)))
    t = np.linspace(0, 1, 200)
    river = np.column_stack([t * SIDE, 5250 + 900 * np.sin(t * 5.3 * math.pi)])
    out.append(("river", river))
    return out


def layout(rng: np.random.Generator, n_buildings: int = N_BUILDINGS) -> dict:
    lines = guides()
    geoms = np.array([shapely.LineString(c) for _, c in lines], dtype=object)
    tree = shapely.STRtree(geoms)
    # zones: three circles over the grid
    zones = [shapely.Point(x, y).buffer(400) for x, y in ((2250, 7750), (7600, 2400),
                                                        (5750, 8900))]
    # vertiports: plazas 80 m off a road (a corridor passing closer than 50 m to a pad
    # would be dropped: the pad's column is where drones change layers), away from zones
    ports = []
    while len(ports) < N_VERTIPORTS:
        x, y = rng.uniform(300, SIDE - 300, 2)
        p = shapely.Point(x, y)
        d = shapely.distance(geoms, p)
        i = int(np.argmin(d))
        q = geoms[i].interpolate(geoms[i].project(p))
        dx, dy = x - q.x, y - q.y
        n = math.hypot(dx, dy) or 1.0
        v = shapely.Point(q.x + 80 * dx / n, q.y + 80 * dy / n)
        if shapely.distance(geoms, v).min() < 79.9 or any(z.distance(v) < 150 for z in zones):
            continue
        if any(v.distance(shapely.Point(a)) < 600 for a in ports):
            continue
        ports.append((v.x, v.y))
    plazas = [shapely.Point(p).buffer(100) for p in ports]
    ptree = shapely.STRtree(plazas)
    # buildings on a jittered grid of plots, clear of the guides and the plazas
    plot = 52.0
    per = int(SIDE / plot)
    gx, gy = np.meshgrid(np.arange(per), np.arange(per))
    cx = (gx.ravel() + 0.5) * plot + rng.uniform(-0.1, 0.1, per * per) * plot
    cy = (gy.ravel() + 0.5) * plot + rng.uniform(-0.1, 0.1, per * per) * plot
    order = rng.permutation(per * per)
    fps, heights = [], []
    for k in order:
        fp = shapely.Polygon(_footprint(rng, plot) + np.array([cx[k], cy[k]]))
        near = tree.query(fp, predicate="dwithin", distance=SETBACK)
        if near.size or ptree.query(fp, predicate="intersects").size:
            continue
        fps.append(fp)
        heights.append(float(np.clip(rng.lognormal(2.6, 0.6), 4, 95)))
        if len(fps) == n_buildings - N_TOWERS:
            break
    # towers standing beside roads (within the corridor's reach)
    for _ in range(N_TOWERS):
        _, c = lines[int(rng.integers(0, 2 * int(SIDE / ROAD_STEP)))]
        t = rng.uniform(0.1, 0.9)
        p = c[0] + t * (c[-1] - c[0])
        normal = np.array([c[-1][1] - c[0][1], c[0][0] - c[-1][0]], float)
        normal /= np.linalg.norm(normal)
        centre = p + normal * (20 + 15)
        fps.append(shapely.box(*(centre - 15), *(centre + 15)))
        heights.append(float(rng.uniform(100, 200)))
    return {"lines": lines, "zones": zones, "ports": ports, "footprints": fps,
            "heights": np.array(heights)}


def fill(url: str, world: dict, ox: float, oy: float) -> None:
    fr = frame("EPSG:4547")
    eng = db.sync_engine(url)

    def ll(geom):
        return fr.geom_to_lonlat(shapely.affinity.translate(geom, ox, oy))

    fps = [ll(f) for f in world["footprints"]]
    cent = np.array([[f.centroid.x, f.centroid.y] for f in world["footprints"]])
    ground = terrain(cent[:, 0], cent[:, 1]) + GEOID
    with eng.begin() as conn:
        ds = conn.execute(text("INSERT INTO datasets (kind, name, status) VALUES"
                               " ('cityjson', 'airspace benchmark city', 'ready')"
                               " RETURNING id")).scalar_one()
        conn.execute(text(
            "INSERT INTO city_objects (object_id, dataset_id, type, footprint, height, min_z,"
            " max_z) SELECT 'LG-' || i, :ds, 'Building',"
            " ST_Multi(ST_GeomFromWKB(w, 4326)), h, g, g + h"
            " FROM unnest(:wkb, :h, :g) WITH ORDINALITY AS u(w, h, g, i)"),
            {"ds": ds, "wkb": [shapely.to_wkb(f) for f in fps],
             "h": world["heights"].tolist(), "g": ground.tolist()})
        for i, z in enumerate(world["zones"]):
            conn.execute(text(
                "INSERT INTO airspace_zones (name, zone_type, geom, floor_m, ceiling_m)"
                " VALUES (:n, 'prohibited', ST_Multi(ST_GeomFromWKB(:w, 4326)), 0, 500)"),
                {"n": f"zone-{i}", "w": shapely.to_wkb(ll(z))})
        conn.execute(text("INSERT INTO drones (serial, operator, class) SELECT 'air-' || n,"
                          " 'benchmark', 'light' FROM generate_series(1, :n) n"),
                     {"n": 20_000})
    eng.dispose()


def guide_geojson(world: dict, ox: float, oy: float) -> dict:
    fr = frame("EPSG:4547")
    feats = []
    for name, c in world["lines"]:
        lon, lat = fr.to_lonlat(c[:, 0] + ox, c[:, 1] + oy)
        feats.append({"type": "Feature", "properties": {"name": name},
                      "geometry": {"type": "LineString",
                                   "coordinates": np.column_stack([lon, lat]).tolist()}})
    return {"type": "FeatureCollection", "features": feats}


def dispatch_benchmark() -> object:
    """benchmarks/dispatch.py as a module (its name would shadow the dispatch package)."""
    import importlib
    import importlib.util

    bench = str(ROOT / "benchmarks")
    path = [p for p in sys.path if p != bench]
    saved, sys.path[:] = list(sys.path), path
    try:
        importlib.import_module("dispatch")
        spec = importlib.util.spec_from_file_location("dispatch_benchmark",
                                                      ROOT / "benchmarks" / "dispatch.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path[:] = saved
    return mod


def solomon_figures(args: argparse.Namespace) -> dict:
    """benchmarks/dispatch.py's figures (its ``main`` run with these arguments)."""
    import contextlib
    import io

    mod = dispatch_benchmark()
    argv, buf = sys.argv, io.StringIO()
    sys.argv = ["dispatch.py", "--seconds", str(args.solomon_seconds), "--reference-s",
                str(args.reference_s), "--longgang-s", "1"]
    try:
        with contextlib.redirect_stdout(buf):
            mod.main()
    finally:
        sys.argv = argv
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def spread(xy: np.ndarray, k: int) -> list[int]:
    """k of the points far apart: the one nearest their centre, then each time the one
    farthest from those taken."""
    take = [int(np.argmin(np.hypot(*(xy - xy.mean(axis=0)).T)))]
    while len(take) < min(k, len(xy)):
        d = np.min(np.hypot(xy[:, None, 0] - xy[None, take, 0],
                            xy[:, None, 1] - xy[None, take, 1]), axis=1)
        take.append(int(np.argmax(d)))
    return take


async def longgang(engine, net, port_ids: list[int], world: dict, ox: float, oy: float,
                   start: datetime, args: argparse.Namespace, s: LowAltSettings,
                   seed: int = 7) -> dict:
    """The Longgang day on the benchmark's network, through the service's own plan code:
    registered drones at vertiports of the network, tasks at places the network reaches,
    ``make_plan`` (what ``POST /fleet/plans`` runs: plan on the network's travel times,
    store, reserve and approve every flight in one transaction), then every reserved
    flight's ``drone_routes`` row validated as ``POST /drone-routes/validate`` does."""
    from scipy.sparse.csgraph import connected_components

    from service.lowalt import store
    from service.lowalt.checks import drone_class
    from service.lowalt.dispatch_api import make_plan
    from service.lowalt.dispatch_schemas import FleetPlanIn

    fr = frame(s.metric_crs)
    mod = dispatch_benchmark()
    rnd = random.Random(seed)  # 7: dispatch.py's
    # vertiports in the largest group that reach each other, spread over the district
    groups = net.vertiport_groups()
    main = max(set(groups.values()), key=list(groups.values()).count)
    cand = [i for i, v in enumerate(port_ids) if groups.get(v) == main]
    xy = np.array([world["ports"][i] for i in cand], float)
    ports = [cand[i] for i in spread(xy, args.longgang_vertiports)]
    codes = [f"VP-{i}" for i in ports]
    drones = mod.longgang_drones(rnd, codes, args.longgang_drones)
    # tasks at places whose nearest node reaches those vertiports and back (the main
    # strongly connected part at ground level), outside the prohibited zones
    _, labels = connected_components(net.graph(), directed=True, connection="strong")
    lv = net.levels
    tasks, tries = [], 0
    for i in range(args.longgang_tasks):
        while True:
            tries += 1
            x, y = rnd.uniform(200, SIDE - 200), rnd.uniform(200, SIDE - 200)
            p = shapely.Point(x, y)
            if any(z.distance(p) < 50 for z in world["zones"]):
                continue
            node, _ = net.nearest_nodes(np.array([[x + ox, y + oy]]))
            if labels[int(node[0]) * lv + lv - 1] == main:
                break
        tasks.append(mod.longgang_task(rnd, f"T{i:03d}", x, y))

    def ll(x: float, y: float) -> list[float]:
        lon, lat = fr.to_lonlat(np.array([x + ox]), np.array([y + oy]))
        return [float(lon[0]), float(lat[0])]

    def at(sec: float) -> str:
        return (start + timedelta(seconds=sec)).isoformat()

    body = FleetPlanIn.model_validate({
        "start": start.isoformat(),
        "vertiports": [{"id": f"VP-{i}", "position": ll(*world["ports"][i]), "swap_s": 120}
                       for i in ports],
        "drones": [{"id": d.id, "home": d.home, "endurance_min": d.endurance_min,
                    "payload_kg": d.payload_kg, "speed_ms": d.speed_ms,
                    "available_from": at(d.available_from),
                    "available_until": at(d.available_until)} for d in drones],
        "tasks": [{"id": t.id, "kind": t.kind, "position": ll(t.x, t.y),
                   "service_s": t.service_s, "payload_kg": t.payload_kg,
                   "priority": t.priority,
                   "window": {"start": at(t.tw_early), "end": at(t.tw_late)}} for t in tasks],
        "time_limit_s": args.longgang_s})
    async with engine.begin() as conn:  # registered, as POST /drones does
        have = set((await conn.execute(text(
            "SELECT serial FROM drones WHERE serial = ANY(CAST(:s AS text[]))"),
            {"s": [d.id for d in drones]})).scalars())
        for d in drones:
            if d.id not in have:
                await conn.execute(store.new_drone(d.id, "benchmark fleet", "light", None,
                                                   d.speed_ms, "bench"))
    out: dict = {"longgang_tasks": len(tasks), "longgang_drones": len(drones),
                 "longgang_vertiports": len(ports), "longgang_solver_s": args.longgang_s,
                 "longgang_task_draws": tries}
    t = time.perf_counter()
    try:
        plan = await make_plan(engine, body, s, "bench")
    except Exception as e:  # a refusal names the flight that could not be reserved
        out["longgang_plan_s"] = round(time.perf_counter() - t, 2)
        out["longgang_error"] = f"{type(e).__name__}: {getattr(e, 'detail', e)}"
        log(out["longgang_error"])
        return out
    out["longgang_plan_s"] = round(time.perf_counter() - t, 2)
    flights = [{**f, "drone": d["drone"]} for d in plan["drones"] for tr in d["trips"]
               for f in tr["flights"]]
    res = plan["reservation"]
    routes = [f["route_id"] for f in flights if f.get("route_id") is not None]
    out.update({
        "longgang_travel": plan["travel"], "longgang_planned": plan["planned"],
        "longgang_unassigned": dict(Counter(u["reason"] for u in plan["unassigned"])),
        "longgang_trips": sum(len(d["trips"]) for d in plan["drones"]),
        "longgang_flights": len(flights),
        "longgang_flights_by_status": dict(Counter(f["status"] for f in flights)),
        "longgang_reserved": res.get("approved"), "longgang_delayed": res.get("delayed"),
        "longgang_delay_max_s": max((f.get("delay_s", 0) for f in flights), default=0),
        "longgang_access_m_median": round(statistics.median(
            a for f in flights for a in f["access_m"]), 1) if flights else None,
        "longgang_access_m_max": max((a for f in flights for a in f["access_m"]),
                                     default=None)})
    log(f"longgang: {plan['planned']} planned, {len(routes)} flights reserved in "
        f"{out['longgang_plan_s']} s")
    # every reserved flight's stored route, validated as POST /drone-routes/validate does
    ok, verdicts, rules, status = 0, Counter(), Counter(), Counter()
    async with engine.connect() as conn:
        for rid in routes:
            row, vol = await store.load_volume(conn, rid, s)
            status[row.status] += 1
            res = await validate_route(conn, vol, await drone_class(conn, row.drone_id), s)
            verdicts[res["verdict"]] += 1
            ok += res["verdict"] == "accepted"
            for v in res["violations"]:
                if v["severity"] != "notice":
                    rules[v["rule"]] += 1
                    if rules[v["rule"]] <= 3:
                        log(f"route {rid}: {v['rule']} {v['severity']}: {v['message']}")
    out["longgang_valid_fraction"] = round(ok / len(routes), 4) if routes else None
    out["longgang_verdicts"] = dict(verdicts)
    out["longgang_refused_by_rule"] = dict(rules)
    out["longgang_route_status"] = dict(status)
    return out


def brute_force(flights: list[dict], sample: list[int], s: LowAltSettings) -> int:
    """Pairs (a sampled flight, any other) closer than the separation at one time."""
    hsep = s.separation_h_m + 2 * s.network_half_width_m
    vsep = s.separation_v_m + 2 * s.network_vertical_half_m
    t0 = np.array([f["t"][0] for f in flights])
    t1 = np.array([f["t"][-1] for f in flights])
    found = set()
    for i in sample:
        a = flights[i]
        for j in np.flatnonzero((t0 < a["t"][-1]) & (t1 > a["t"][0])).tolist():
            if j == i:
                continue
            b = flights[j]
            lo, hi = max(a["t"][0], b["t"][0]), min(a["t"][-1], b["t"][-1])
            ts = np.arange(lo, hi, 0.25)
            if ts.size == 0:
                continue
            pa = np.column_stack([np.interp(ts, a["t"], a["xyz"][:, k]) for k in range(3)])
            pb = np.column_stack([np.interp(ts, b["t"], b["xyz"][:, k]) for k in range(3)])
            h = np.hypot(pa[:, 0] - pb[:, 0], pa[:, 1] - pb[:, 1])
            v = np.abs(pa[:, 2] - pb[:, 2])
            bad = (h < hsep - 1e-6) & (v < vsep - 1e-6)
            if np.any(bad):
                if (min(i, j), max(i, j)) not in found:
                    k = int(np.flatnonzero(bad)[np.argmin(h[bad])])
                    log(f"conflict {i} {j}: {h[k]:.1f} m apart, {v[k]:.1f} m vertically at"
                        f" {pa[k].round(1).tolist()} / {pb[k].round(1).tolist()}")
                found.add((min(i, j), max(i, j)))
    return len(found)


async def run(url: str, args: argparse.Namespace, world: dict, ox: float, oy: float
              ) -> dict:
    s = LowAltSettings()
    fr = frame(s.metric_crs)
    engine = db.make_async_engine(url)
    out: dict = {}
    try:
        port_ids = []
        async with engine.begin() as conn:
            for k, (x, y) in enumerate(world["ports"]):
                lon, lat = fr.to_lonlat(np.array([x + ox]), np.array([y + oy]))
                f = await net_service.create_vertiport(conn, VertiportIn(
                    name=f"VP-{k}", code=f"VP-{k}", position=[float(lon[0]), float(lat[0])],
                    capacity_per_hour=120), s, "bench")
                port_ids.append(f["id"])
        body = GenerateIn(guides=guide_geojson(world, ox, oy))
        t = time.perf_counter()
        async with engine.begin() as conn:
            gen = await net_service.generate(conn, body, s, "bench")
        out["network_build_s"] = round(time.perf_counter() - t, 2)
        out["network_edges"] = gen["edges"]
        out["network_dropped"] = gen["dropped"]
        out["network_nodes"] = gen["nodes"]
        out["network_unconnected_vertiports"] = len(gen["unconnected_vertiports"])
        out["network_dropped_by_rule"] = {}
        for d in gen["dropped_edges"]:
            for r in d["rules"]:
                out["network_dropped_by_rule"][r] = out["network_dropped_by_rule"].get(r, 0) + 1
        log(f"network: {gen['edges']} edges, {gen['dropped']} dropped in "
            f"{out['network_build_s']} s ({gen['load_s']} s reads, {gen['build_s']} s build)")
        async with engine.connect() as conn:
            net = await net_service.load_network(conn, s)
        if not args.no_longgang:
            # two days after the day of flights below, so neither holds the other's slots
            start = (datetime.now(UTC) + timedelta(days=3)).replace(minute=0, second=0,
                                                                    microsecond=0)
            runs = [await longgang(engine, net, port_ids, world, ox, oy,
                                   start + timedelta(days=k), args, s, seed=7 + k)
                    for k in range(args.longgang_runs)]
            out.update(runs[0])
            if len(runs) > 1:  # each on a day of its own, with tasks of its own
                keys = ("longgang_plan_s", "longgang_planned", "longgang_reserved",
                        "longgang_delayed", "longgang_valid_fraction", "longgang_error")
                out["longgang_runs"] = [{k: r.get(k) for k in keys} for r in runs]
        if args.longgang_only:
            return out
        # validation again, edge by edge, as POST /drone-routes/validate does
        rng = np.random.default_rng(11)
        sample = rng.choice(len(net.edge_ids), min(args.validate_sample, len(net.edge_ids)),
                            replace=False)
        ok = 0
        now = datetime.now(UTC) + timedelta(minutes=5)
        async with engine.connect() as conn:
            for k in sample.tolist():
                xyz = net.edge_xyz[k]
                vol = RouteVolume(fr.lonlatz(xyz), xyz, s.network_half_width_m,
                                  s.network_vertical_half_m,
                                  corridor_polygon(xyz, s.network_half_width_m), now,
                                  now + timedelta(hours=1), 0, fr)
                res = await validate_route(conn, vol, "light", s)
                ok += res["verdict"] == "accepted"
        out["network_valid_fraction"] = round(ok / max(len(sample), 1), 4)
        out["network_validated_sample"] = len(sample)
        log(f"valid: {ok} of {len(sample)}")
        # stretch between every pair of vertiports
        vnodes = {int(v): i for i, v in enumerate(net.node_vertiport) if v >= 0}
        stretches = []
        ids = [v for v in port_ids if v in vnodes]
        for a in ids:
            for b in ids:
                if a >= b:
                    continue
                ia, ib = vnodes[a], vnodes[b]
                states = net.path(ia, ib)
                if not states:
                    continue
                length = 0.0
                for (na, la), (nb, _) in pairwise(states):
                    if na != nb:
                        length += net.edge_length[net.edge_between(na, nb, la)]
                straight = float(np.hypot(*(net.node_xy[ia] - net.node_xy[ib])))
                stretches.append(length / straight)
        out["stretch_median"] = round(statistics.median(stretches), 3)
        out["stretch_p90"] = round(pct(stretches, 90), 3)
        out["vertiport_pairs"] = len(stretches)
        log(f"stretch median {out['stretch_median']}")
        # a day of flights
        day0 = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0,
                                                               microsecond=0)
        times, approved, refused = [], [], 0
        prof = None
        if os.environ.get("AIRSPACE_PROFILE"):
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        for n in range(args.flights):
            a, b = rng.choice(ids, 2, replace=False).tolist()
            dep = day0 + timedelta(seconds=float(rng.uniform(0, 86_400)))
            fl = FlightIn(drone_id=n + 1, from_vertiport=a, to_vertiport=b, departure=dep,
                          max_delay_s=600)
            t = time.perf_counter()
            try:
                async with engine.begin() as conn:
                    r = await reserve_flight(conn, fl, s, "bench")
                approved.append(r["reservation_id"])
            except Exception as e:  # a refusal is a Conflict; anything else is reported
                if type(e).__name__ not in ("Conflict", "Unprocessable"):
                    raise
                refused += 1
            times.append((time.perf_counter() - t) * 1000)
            if n % 1000 == 999:
                log(f"{n + 1} flights: {len(approved)} approved, p99 "
                    f"{pct(times, 99):.1f} ms")
        if prof is not None:
            import pstats

            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        out["flights_asked"] = args.flights
        out["flights_per_day"] = len(approved)
        out["flights_refused"] = refused
        out["approve_p50_ms"] = round(pct(times, 50), 2)
        out["approve_p99_ms"] = round(pct(times, 99), 2)
        # brute force on a sample
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT r.path, lower(r.time_window) AS t0, ST_AsBinary(d.geom) AS wkb"
                " FROM network_reservations r JOIN drone_routes d ON d.id = r.route_id"
                " WHERE r.status = 'held' ORDER BY r.id"))).all()
        flights = []
        for r in rows:
            c = shapely.get_coordinates(shapely.from_wkb(r.wkb), include_z=True)
            base = r.t0.timestamp() - day0.timestamp()
            tt = np.array(r.path["times_s"]) + base
            flights.append({"t": tt, "xyz": fr.xyz(c)})
        smp = rng.choice(len(flights), min(args.brute_sample, len(flights)),
                         replace=False).tolist()
        t = time.perf_counter()
        out["reservation_conflicts_missed"] = brute_force(flights, smp, s)
        out["brute_force_sample"] = len(smp)
        out["brute_force_s"] = round(time.perf_counter() - t, 1)
        log(f"brute force: {out['reservation_conflicts_missed']} missed")
        if not args.no_solomon:
            fleet = solomon_figures(args)
            for k in ("solomon_mean_gap_pct", "ortools_mean_gap_pct", "ortools_failed",
                      "instances", "instance_kind", "gap_reference"):
                out[k] = fleet.get(k)
    finally:
        await engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flights", type=int, default=10_000)
    ap.add_argument("--validate-sample", type=int, default=1000)
    ap.add_argument("--brute-sample", type=int, default=300)
    ap.add_argument("--buildings", type=int, default=N_BUILDINGS)
    ap.add_argument("--solomon-seconds", type=float, default=10.0,
                    help="benchmarks/dispatch.py: solver time per instance per solver")
    ap.add_argument("--reference-s", type=float, default=60.0,
                    help="benchmarks/dispatch.py: the long PyVRP run gaps are measured to")
    ap.add_argument("--no-solomon", action="store_true",
                    help="skip benchmarks/dispatch.py's Solomon-type instances")
    ap.add_argument("--longgang-tasks", type=int, default=200)
    ap.add_argument("--longgang-drones", type=int, default=30)
    ap.add_argument("--longgang-vertiports", type=int, default=5)
    ap.add_argument("--longgang-s", type=float, default=10.0,
                    help="solver time of the Longgang day (the plan's time_limit_s)")
    ap.add_argument("--longgang-runs", type=int, default=1,
                    help="Longgang days planned, each on a day of its own with other tasks "
                         "(the keys are the first's; longgang_runs lists them all)")
    ap.add_argument("--no-longgang", action="store_true", help="skip the Longgang day")
    ap.add_argument("--longgang-only", action="store_true",
                    help="the network, then the Longgang day only")
    ap.add_argument("--quick", action="store_true",
                    help="a small run: 4,000 buildings, 300 flights, 100 edges revalidated, "
                         "30 brute-forced, no Solomon instances, a Longgang day of 60 tasks, "
                         "10 drones, 3 vertiports, 3 s of solver")
    ap.add_argument("--keep", type=Path, help="cluster directory to keep (default: temporary)")
    args = ap.parse_args()
    if args.quick:
        args.buildings, args.flights, args.validate_sample, args.brute_sample = 4000, 300, \
            100, 30
        args.no_solomon = True
        args.longgang_tasks, args.longgang_drones, args.longgang_vertiports = 60, 10, 3
        args.longgang_s = 3.0
    fr = frame("EPSG:4547")
    x, y = fr.to_metric(np.array([114.25]), np.array([22.68]))
    ox, oy = float(x[0]), float(y[0])
    t = time.perf_counter()
    world = layout(np.random.default_rng(4547), args.buildings)
    log(f"layout: {len(world['footprints'])} buildings in {time.perf_counter() - t:.1f} s")
    base = args.keep or Path(tempfile.mkdtemp(prefix="twinbase-bench-airspace-"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "cluster")
    pg.start()
    try:
        db.upgrade(pg.url)
        fill(pg.url, world, ox, oy)
        out = {"buildings": len(world["footprints"]), "zones": len(world["zones"]),
               "vertiports": len(world["ports"])}
        out.update(asyncio.run(run(pg.url, args, world, ox, oy)))
    finally:
        if args.keep is None:
            pg.destroy()
            shutil.rmtree(base, ignore_errors=True)
    for k in ("solomon_mean_gap_pct", "ortools_mean_gap_pct", "longgang_tasks",
              "longgang_plan_s", "longgang_valid_fraction"):
        out.setdefault(k, None)
    out["load_1min"] = round(os.getloadavg()[0], 2)
    out["goal"] = ("stretch_median <= 1.25; network_valid_fraction 1.0; network_build_s < 60;"
                   " approve_p99_ms < 50; reservation_conflicts_missed 0")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
