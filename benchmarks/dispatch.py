"""Fleet dispatch: VRPTW quality of PyVRP against OR-Tools on Solomon-type instances, and a
Longgang day of 200 tasks, 30 drones and 5 vertiports planned by ``dispatch.plan``.

Solomon instances. No package on the registries this project installs from bundles the
Solomon files (pyvrp and vrplib ship readers, not data), so the instances are generated
here following Solomon's (1987) rules for the type-1 classes, written in Solomon's text
format under ``benchmarks/out/solomon/`` and loaded with ``vrplib``:

* C1: 100 customers in 10 clusters, depot (40, 50), horizon 1236, service 90, demands 10-40,
  capacity 200, windows 60 wide;
* R1: 100 customers uniform on [0, 100]^2, depot (35, 35), horizon 230, service 10, demands
  1-50, capacity 200, windows 10 wide;
* RC1: half clustered (8 clusters), half uniform, depot (40, 50), horizon 240, service 10,
  demands 1-50, capacity 200, windows 30 wide;

each with windows on 100 % and on 50 % of the customers (Solomon's 01 and 03 densities),
window centres drawn so that a vehicle going there and straight back meets them. The
fleet is not bounded (100 vehicles): windows drawn at random, unlike Solomon's, make some
R1 instances need more than his 25. Distances are Euclidean, scaled by 10 and truncated
(the DIMACS convention); the objective is total distance. Solomon built the C1 windows
around a good route, which this generator does not: these are instances of the same kind,
not the published ones.

The gap is therefore NOT to the published best-known values: it is to the best solution
found in this run by any solver, a long PyVRP run (``--reference-s``, 60 s) included.

    uv run --group bench python benchmarks/dispatch.py [--seconds 10] [--reference-s 60]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import vrplib
from pyproj import Transformer
from pyvrp import Client, Depot, Location, ProblemData, VehicleType, solve
from pyvrp.stop import MaxRuntime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dispatch import Drone, Problem, StraightLineWithDetour, Task, Vertiport, plan  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "solomon"
# as many vehicles as customers: random R1 windows 10 wide need more than Solomon's 25
N, CAPACITY = 100, 200
VEHICLES = N
CLASSES = {
    # depot, horizon, service, demand range, window width, clustered share, clusters
    "C1": ((40, 50), 1236, 90, (1, 4), 60, 1.0, 10),
    "R1": ((35, 35), 230, 10, (1, 50), 10, 0.0, 0),
    "RC1": ((40, 50), 240, 10, (1, 50), 30, 0.5, 8),
}


def generate(klass: str, density: float, seed: int) -> str:
    depot, horizon, service, (dlo, dhi), width, clustered, k = CLASSES[klass]
    rnd = random.Random(seed)
    centres = [(rnd.uniform(10, 90), rnd.uniform(10, 90)) for _ in range(k)]
    pts = []
    for i in range(N):
        if i < clustered * N:
            cx, cy = centres[i % k]
            pts.append((min(100, max(0, round(rnd.gauss(cx, 4)))),
                        min(100, max(0, round(rnd.gauss(cy, 4))))))
        else:
            pts.append((rnd.randint(0, 100), rnd.randint(0, 100)))
    rows = [(0, *depot, 0, 0, horizon, 0)]
    with_window = set(rnd.sample(range(N), round(density * N)))
    for i, (x, y) in enumerate(pts):
        d = math.hypot(x - depot[0], y - depot[1])
        demand = rnd.randint(dlo, dhi) * (10 if klass == "C1" else 1)
        latest = math.floor(horizon - d - service)
        if i in with_window:
            lo = math.ceil(d)
            c = rnd.uniform(lo, max(lo, latest))
            ready = max(0, round(c - width / 2))
            due = min(latest, max(ready, round(c + width / 2)))
            ready = min(ready, due)
        else:
            ready, due = 0, latest
        rows.append((i + 1, x, y, demand, ready, due, service))
    name = f"{klass}-{round(density * 100)}-{seed}"
    lines = [name, "", "VEHICLE", "NUMBER     CAPACITY", f"  {VEHICLES}         {CAPACITY}", "",
             "CUSTOMER",
             "CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME",
             ""]
    lines += ["  ".join(f"{v:>8}" for v in r) for r in rows]
    return "\n".join(lines) + "\n"


def instances() -> list[tuple[str, dict[str, Any]]]:
    OUT.mkdir(parents=True, exist_ok=True)
    out = []
    for seed, (klass, density) in enumerate(
            [(c, d) for c in CLASSES for d in (1.0, 0.5)], start=1):
        text = generate(klass, density, seed)
        path = OUT / f"{text.splitlines()[0]}.txt"
        path.write_text(text)
        out.append((path.stem, vrplib.read_instance(str(path), instance_format="solomon")))
    return out


def dimacs(inst: dict[str, Any]) -> dict[str, np.ndarray]:
    xy = np.asarray(inst["node_coord"], dtype=float)
    dist = np.trunc(10 * np.hypot(xy[:, None, 0] - xy[None, :, 0],
                                  xy[:, None, 1] - xy[None, :, 1])).astype(np.int64)
    return {"dist": dist, "tw": (10 * np.asarray(inst["time_window"])).astype(np.int64),
            "service": (10 * np.asarray(inst["service_time"])).astype(np.int64),
            "demand": np.asarray(inst["demand"]).astype(np.int64), "xy": xy}


def pyvrp_cost(inst: dict[str, Any], seconds: float, seed: int) -> float | None:
    d = dimacs(inst)
    n = len(d["xy"])
    locs = [Location(float(x), float(y)) for x, y in d["xy"]]
    clients = [Client(i, delivery=[int(d["demand"][i])], service_duration=int(d["service"][i]),
                      tw_early=int(d["tw"][i, 0]), tw_late=int(d["tw"][i, 1]))
               for i in range(1, n)]
    depot = Depot(0, tw_early=int(d["tw"][0, 0]), tw_late=int(d["tw"][0, 1]))
    vt = VehicleType(int(inst["vehicles"]), capacity=[int(inst["capacity"])],
                     tw_early=int(d["tw"][0, 0]), tw_late=int(d["tw"][0, 1]))
    data = ProblemData(locs, clients, [depot], [vt], [d["dist"]], [d["dist"]])
    res = solve(data, stop=MaxRuntime(seconds), seed=seed, display=False)
    return res.cost() / 10 if res.best.is_feasible() else None


def ortools_cost(inst: dict[str, Any], seconds: float) -> float | None:
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    d = dimacs(inst)
    n, vehicles = len(d["xy"]), int(inst["vehicles"])
    manager = pywrapcp.RoutingIndexManager(n, vehicles, 0)
    routing = pywrapcp.RoutingModel(manager)
    dist, service = d["dist"], d["service"]

    def arc(i: int, j: int) -> int:
        return int(dist[manager.IndexToNode(i), manager.IndexToNode(j)])

    def travel(i: int, j: int) -> int:
        a, b = manager.IndexToNode(i), manager.IndexToNode(j)
        return int(service[a] + dist[a, b])

    cost_cb = routing.RegisterTransitCallback(arc)
    routing.SetArcCostEvaluatorOfAllVehicles(cost_cb)
    time_cb = routing.RegisterTransitCallback(travel)
    horizon = int(d["tw"][0, 1])
    routing.AddDimension(time_cb, horizon, horizon, False, "time")
    tdim = routing.GetDimensionOrDie("time")
    for node in range(1, n):
        tdim.CumulVar(manager.NodeToIndex(node)).SetRange(int(d["tw"][node, 0]),
                                                          int(d["tw"][node, 1]))
    for v in range(vehicles):
        tdim.CumulVar(routing.Start(v)).SetRange(0, horizon)
        tdim.CumulVar(routing.End(v)).SetRange(0, horizon)
    demand = d["demand"]
    dem_cb = routing.RegisterUnaryTransitCallback(
        lambda i: int(demand[manager.IndexToNode(i)]))
    routing.AddDimensionWithVehicleCapacity(dem_cb, 0, [int(inst["capacity"])] * vehicles,
                                            True, "load")
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH)
    params.time_limit.FromMilliseconds(int(seconds * 1000))
    sol = routing.SolveWithParameters(params)
    return None if sol is None else sol.ObjectiveValue() / 10


def longgang_drones(rnd: random.Random, homes: list[str], n: int = 30) -> tuple[Drone, ...]:
    """The Longgang day's drones: endurance 25-40 min, payload 2.5 or 5 kg, 12-18 m/s,
    available 9 hours, homes taken in turn (``benchmarks/airspace.py`` uses them too)."""
    return tuple(Drone(f"D{i:02d}", homes[i % len(homes)],
                       endurance_min=rnd.choice([25, 30, 40]),
                       payload_kg=rnd.choice([2.5, 5.0]), speed_ms=rnd.choice([12, 15, 18]),
                       available_from=0, available_until=9 * 3600) for i in range(n))


def longgang_task(rnd: random.Random, tid: str, x: float, y: float) -> Task:
    """One task of the Longgang day at (x, y): its window opens in the first 7 hours and
    lasts 0.5-2 h; a third are deliveries (60 s, 0.5-4 kg), the rest inspections of 1-10
    min (``benchmarks/airspace.py`` uses it too)."""
    early = rnd.uniform(0, 7 * 3600)
    delivery = rnd.random() < 0.35
    return Task(tid, x, y, "delivery" if delivery else "inspection",
                service_s=rnd.choice([60, 120, 300, 600]) if not delivery else 60,
                tw_early=early, tw_late=early + rnd.choice([1800, 3600, 7200]),
                payload_kg=rnd.choice([0.5, 1.0, 2.0, 4.0]) if delivery else 0.0,
                priority=rnd.randint(0, 9))


def longgang(seconds: float, seed: int = 7) -> dict[str, Any]:
    """200 tasks over an 8-hour day in Longgang, 30 drones, 5 vertiports."""
    rnd = random.Random(seed)
    to_m = Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True)

    def xy(lon: float, lat: float) -> tuple[float, float]:
        x, y = to_m.transform(lon, lat)
        return float(x), float(y)

    # Longgang's built-up area, about 24 x 16 km; five pads spread over it
    ports = tuple(Vertiport(f"VP{i}", *xy(lon, lat), swap_s=120) for i, (lon, lat) in
                  enumerate([(114.17, 22.64), (114.25, 22.72), (114.32, 22.70),
                             (114.20, 22.74), (114.29, 22.63)]))
    drones = longgang_drones(rnd, [p.id for p in ports])
    tasks = []
    for i in range(200):
        lon, lat = rnd.uniform(114.14, 114.36), rnd.uniform(22.60, 22.78)
        tasks.append(longgang_task(rnd, f"T{i:03d}", *xy(lon, lat)))
    problem = Problem(ports, drones, tuple(tasks))
    t0 = time.perf_counter()
    result = plan(problem, StraightLineWithDetour(1.3), time_limit_s=seconds, seed=seed)
    elapsed = time.perf_counter() - t0
    return {"longgang_tasks": len(tasks), "longgang_drones": len(drones),
            "longgang_vertiports": len(ports), "longgang_plan_s": round(elapsed, 2),
            "longgang_planned": len(result.planned_tasks()),
            "longgang_unassigned": dict(Counter(u.reason for u in result.unassigned)),
            "longgang_trips": sum(len(d.trips) for d in result.drones)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per instance per solver")
    ap.add_argument("--reference-s", type=float, default=60.0,
                    help="the long PyVRP run each gap is measured against (with the others)")
    ap.add_argument("--longgang-s", type=float, default=15.0, help="solver time, Longgang")
    args = ap.parse_args()
    rows = []
    for name, inst in instances():
        py = pyvrp_cost(inst, args.seconds, seed=1)
        ort = ortools_cost(inst, args.seconds)
        ref = pyvrp_cost(inst, args.reference_s, seed=2)
        best = min(c for c in (py, ort, ref) if c is not None)
        row = {"instance": name, "pyvrp": py, "ortools": ort, "reference": ref, "best": best,
               "pyvrp_gap_pct": None if py is None else round(100 * (py - best) / best, 3),
               "ortools_gap_pct": None if ort is None else round(100 * (ort - best) / best, 3)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return round(statistics.fmean(vals), 3) if len(vals) == len(rows) else None

    out = {"solomon_mean_gap_pct": mean("pyvrp_gap_pct"),
           "ortools_mean_gap_pct": mean("ortools_gap_pct"),
           "ortools_failed": sum(r["ortools"] is None for r in rows),
           "instances": len(rows), "instance_kind": "generated Solomon-type (C1, R1, RC1)",
           "gap_reference": f"best of this run incl. PyVRP {args.reference_s:g} s",
           "seconds_per_instance": args.seconds, "per_instance": rows,
           **longgang(args.longgang_s), "python": platform.python_version()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
