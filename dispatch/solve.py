"""The fleet problem as a PyVRP prize-collecting, multi-trip VRP with time windows.

Mapping: vertiports are depots and every vertiport is a reload depot (a battery swap takes
its ``swap_s``); each drone is a vehicle type of one vehicle with its own home, shift and
travel profile; a task is an optional client whose prize grows with its priority, so a
task the fleet cannot serve is left out and reported, not made infeasible. Load has two
dimensions per trip: the payload (grams) and the battery.

PyVRP bounds load per trip but duration only per route, so the battery is carried as a
load: each task is charged its service time plus half of its two shortest arcs (a lower
bound of the flight it adds). The plan is then timed exactly (``timetable``); a trip over
its battery makes its tasks dearer and the problem is solved again (up to
``TIGHTEN_ROUNDS`` times); what still breaks a rule after that is repaired by leaving the
lowest-priority task of the trip out, reported with the reason. Tasks no drone can serve
(too heavy for all, out of every battery's range, a window no drone can meet, no way
there) are screened out before solving, each with its reason.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pyvrp import (
    Activity,
    Client,
    Depot,
    Location,
    ProblemData,
    Route,
    Solution,
    VehicleType,
    solve,
)
from pyvrp.exceptions import PenaltyBoundWarning
from pyvrp.stop import MaxRuntime, MultipleCriteria, NoImprovement

from dispatch.model import INF, Drone, DronePlan, Plan, Problem, Task, Trip, Unassigned
from dispatch.timetable import Clock, Leg, split_trips, time_legs, violations
from dispatch.travel import StraightLineWithDetour, TravelTimes

TIGHTEN_ROUNDS = 3
BIG = 10**9  # an arc no drone takes: costlier than any prize
GRAMS = 1000
# a small problem has its best plan long before the time is up: stop after this many
# iterations without a better one
NO_IMPROVEMENT = 20_000


def _stop(seconds: float) -> MultipleCriteria:
    return MultipleCriteria([MaxRuntime(seconds), NoImprovement(NO_IMPROVEMENT)])


def prize(priority: int, scale: float) -> int:
    # worth ten of the longest hops at priority 0, a hundred times that at 9: a drone
    # serves a reachable task rather than save flight time, and gives up the lower one first
    return int(10 * scale * (priority + 1) ** 2)


@dataclass(frozen=True)
class Start:
    """Where and when a drone is free to start (a re-plan: after its committed trips)."""

    vertiport: str
    at: float


class _Sites:
    def __init__(self, problem: Problem, travel: TravelTimes) -> None:
        self.problem = problem
        self.ids = [v.id for v in problem.vertiports] + [t.id for t in problem.tasks]
        self.nv = len(problem.vertiports)
        sites = [(v.id, v.x, v.y) for v in problem.vertiports] + [
            (t.id, t.x, t.y) for t in problem.tasks]
        self.times: dict[str, np.ndarray] = {}
        for d in problem.drones:
            m = np.array(travel.matrix(sites, d), dtype=float)
            m[~np.isfinite(m)] = INF
            np.fill_diagonal(m, 0.0)
            self.times[d.id] = m

        self._profiles: dict[tuple[int, ...], tuple[dict[str, int], list[np.ndarray]]] = {}

    def profiles(self, sel: tuple[int, ...]) -> tuple[dict[str, int], list[np.ndarray]]:
        """Whole-second matrices over the sites ``sel``, one per distinct drone profile."""
        if sel not in self._profiles:
            index: dict[bytes, int] = {}
            matrices: list[np.ndarray] = []
            of: dict[str, int] = {}
            ix = np.ix_(sel, sel)
            for d in self.problem.drones:
                m = self.times[d.id][ix].copy()
                # no ferry hop longer than one battery
                hops = m[:self.nv, :self.nv]
                hops[hops > d.endurance_s] = INF
                im = np.where(np.isfinite(m), np.ceil(m), BIG).astype(np.int64)
                key = im.tobytes()
                if key not in index:
                    index[key] = len(matrices)
                    matrices.append(im)
                of[d.id] = index[key]
            self._profiles[sel] = (of, matrices)
        return self._profiles[sel]

    def clock(self, drone: str) -> Clock:
        return Clock(self.problem, self.ids, self.times[drone])


def _screen(problem: Problem, sites: _Sites, starts: Mapping[str, Start]
            ) -> tuple[dict[str, list[str]], list[Unassigned]]:
    """For each task the drones that could serve it alone; the others with a reason."""
    nv, tasks = sites.nv, problem.tasks
    port_ix = {v.id: i for i, v in enumerate(problem.vertiports)}
    swap = np.array([v.swap_s for v in problem.vertiports])
    service = np.array([t.service_s for t in tasks])
    early = np.array([t.tw_early for t in tasks])
    late = np.array([t.tw_late for t in tasks])
    load = np.array([t.payload_kg for t in tasks])
    shape = (len(problem.drones), len(tasks))
    carry, reach, power, fits = (np.zeros(shape, bool) for _ in range(4))
    with np.errstate(invalid="ignore"):
        for j, d in enumerate(problem.drones):
            m = sites.times[d.id]
            into, back = m[:nv, nv:], m[nv:, :nv]  # (ports, tasks), (tasks, ports)
            carry[j] = load <= d.payload_kg
            reach[j] = carry[j] & np.isfinite(into).any(0) & np.isfinite(back).any(1)
            shortest_back = back.min(1)
            power[j] = reach[j] & (into.min(0) + service + shortest_back <= d.endurance_s)
            s = starts[d.id]
            # the earliest the drone can be there: from where it starts, or via another
            # vertiport after a swap (a lower bound: the hop's own battery is not checked)
            h = port_ix[s.vertiport]
            hop = m[h, :nv] + swap
            hop[h] = 0.0
            begin = np.maximum(s.at + (hop[:, None] + into).min(0), early)
            fits[j] = power[j] & (begin <= late) & (
                begin + service + shortest_back <= d.available_until)
    able: dict[str, list[str]] = {}
    out: list[Unassigned] = []
    heaviest = max((d.payload_kg for d in problem.drones), default=0.0)
    for k, task in enumerate(tasks):
        if task.tw_early > task.tw_late:
            out.append(Unassigned(task.id, "infeasible_window",
                                  "its window closes before it opens"))
        elif fits[:, k].any():
            able[task.id] = [d.id for j, d in enumerate(problem.drones) if fits[j, k]]
        elif not carry[:, k].any():
            out.append(Unassigned(task.id, "too_heavy",
                                  f"payload {task.payload_kg:g} kg; the largest any drone "
                                  f"carries is {heaviest:g} kg"))
        elif not reach[:, k].any():
            out.append(Unassigned(task.id, "unreachable",
                                  "no way there or back from any vertiport for the drones "
                                  "that could carry it"))
        elif not power[:, k].any():
            out.append(Unassigned(task.id, "out_of_battery_range",
                                  "the nearest vertiports are farther than one battery of "
                                  "every drone that could carry it allows (there, the work, "
                                  "and back)"))
        else:
            out.append(Unassigned(task.id, "infeasible_window",
                                  "no drone that could carry and reach it can be there "
                                  "before its window closes (or back before its shift ends)"))
    return able, out


def _data(problem: Problem, sites: _Sites, tasks: Sequence[Task], starts: Mapping[str, Start],
          energy_factor: Mapping[str, float], required: bool = False) -> ProblemData:
    nv = sites.nv
    where = {k: i for i, k in enumerate(sites.ids)}
    sel = list(range(nv)) + [where[t.id] for t in tasks]
    profile_of, matrices = sites.profiles(tuple(sel))
    # the longest hop any drone can fly: the unit of the prizes
    scale = float(max(int(m[m < BIG].max(initial=1)) for m in matrices))
    ref = float(np.median([d.speed_ms for d in problem.drones]))
    ref_drone = min(problem.drones, key=lambda d: abs(d.speed_ms - ref))

    locations = [Location(v.x, v.y, name=v.id) for v in problem.vertiports] + [
        Location(t.x, t.y, name=t.id) for t in tasks]
    depots = [Depot(i, service_duration=math.ceil(v.swap_s), name=v.id)
              for i, v in enumerate(problem.vertiports)]
    refm = sites.times[ref_drone.id][np.ix_(sel, sel)].copy()
    np.fill_diagonal(refm, INF)
    # half of the shortest arc in and the shortest arc out: a share of the flight
    half = 0.5 * (refm[:, nv:].min(0) + refm[nv:, :].min(1))
    half[~np.isfinite(half)] = 0.0
    clients = []
    for k, t in enumerate(tasks):
        i = nv + k
        energy = math.ceil((t.service_s + float(half[k])) * energy_factor.get(t.id, 1.0))
        clients.append(Client(
            i, delivery=[round(t.payload_kg * GRAMS), energy],
            service_duration=math.ceil(t.service_s), tw_early=math.floor(t.tw_early),
            tw_late=math.floor(t.tw_late) if math.isfinite(t.tw_late) else np.iinfo(np.int64).max,
            prize=0 if required else prize(t.priority, scale), required=required,
            name=t.id))

    vtypes = []
    ports = [v.id for v in problem.vertiports]
    for d in problem.drones:
        s = starts[d.id]
        vtypes.append(VehicleType(
            1, capacity=[round(d.payload_kg * GRAMS),
                         math.floor(d.endurance_s * d.speed_ms / ref)],
            start_depot=ports.index(s.vertiport), end_depot=ports.index(d.home),
            tw_early=math.ceil(s.at),
            tw_late=(math.floor(d.available_until) if math.isfinite(d.available_until)
                     else np.iinfo(np.int64).max),
            reload_depots=list(range(nv)), profile=profile_of[d.id], name=d.id))
    return ProblemData(locations, clients, depots, vtypes, matrices, matrices)


def _carry(solution: Solution, data: ProblemData) -> Solution:
    """The same routes (trips and all) as a solution of another data of the same shape."""
    return Solution(data, [Route(data, [Activity(a.type, a.idx) for a in r.schedule()][1:-1],
                                 r.vehicle_type()) for r in solution.routes()])


def _search(problem: Problem, sites: _Sites, tasks: Sequence[Task], starts: Mapping[str, Start],
            factor: Mapping[str, float], budget: float, seed: int,
            init: Solution | None) -> tuple[ProblemData, Solution]:
    """Every task required first; if the fleet cannot do them all, the prize-collecting
    problem from there on.

    PyVRP's moves that insert an optional task do not open a new trip for it (a reload
    visit comes only with a required task's move), so prize-collecting alone, started
    empty, stops at the trips it began with. Started from the all-required solution (over
    capacity where the fleet is short), it drops what cannot fit instead.
    """
    req = _data(problem, sites, tasks, starts, factor, required=True)
    opt = _data(problem, sites, tasks, starts, factor)
    with warnings.catch_warnings():
        # a fleet short of the work has no feasible all-required solution: expected here
        warnings.simplefilter("ignore", PenaltyBoundWarning)
        first = solve(req, stop=_stop(budget / 2), seed=seed, display=False,
                      initial_solution=_carry(init, req) if init is not None else None).best
    if first.is_feasible():
        return req, first
    best = solve(opt, stop=_stop(budget / 2), seed=seed, display=False,
                 initial_solution=_carry(first, opt)).best
    return opt, best


def _legs(data: ProblemData, solution, problem: Problem, tasks: Sequence[Task]
          ) -> dict[str, list[Leg]]:
    ports = [v.id for v in problem.vertiports]
    out: dict[str, list[Leg]] = {}
    for route in solution.routes():
        drone = problem.drones[route.vehicle_type()].id
        legs: list[Leg] = []
        cur: Leg | None = None
        for act in route.schedule():
            if act.is_depot():
                port = ports[act.idx]
                if cur is not None:
                    cur.destination = port
                    legs.append(cur)
                cur = Leg(port, [], port)
            else:
                assert cur is not None
                cur.tasks.append(tasks[act.idx].id)
        out[drone] = legs
    return out


def _repair(clock: Clock, drone: Drone, legs: list[Leg], start: float
            ) -> tuple[list[Trip], list[Unassigned]]:
    """Leave out the lowest-priority task of the first broken trip until nothing breaks."""
    dropped: list[Unassigned] = []
    while True:
        legs = split_trips(clock, drone, legs, start)
        trips = time_legs(clock, drone, legs, start)
        bad = violations(clock, drone, trips)
        if not bad:
            return trips, dropped
        i, why = bad[0]
        if not legs[i].tasks:
            # a ferry hop that cannot be flown: the drone stays where it is from here on
            for leg in legs[i:]:
                dropped += [Unassigned(t, "not_planned", f"drone {drone.id}: {why}")
                            for t in leg.tasks]
            legs = legs[:i]
            continue
        worst = min(legs[i].tasks, key=lambda t: (clock.tasks[t].priority, t))
        legs[i].tasks.remove(worst)
        dropped.append(Unassigned(worst, "not_planned",
                                  f"left out of drone {drone.id}'s trip when timed exactly: "
                                  f"{why}"))


def plan(problem: Problem, travel: TravelTimes | None = None, *, time_limit_s: float = 5.0,
         seed: int = 0, starts: Mapping[str, Start] | None = None) -> Plan:
    """Assign and schedule ``problem.tasks`` over the fleet.

    ``starts`` moves a drone's start (vertiport, time) from its home and shift start: a
    re-plan gives where each drone is free after the trips it keeps.
    """
    travel = travel or StraightLineWithDetour()
    ids = [t.id for t in problem.tasks]
    if len(set(ids)) != len(ids) or len({d.id for d in problem.drones}) != len(problem.drones):
        raise ValueError("task and drone ids must be unique")
    port_ids = {v.id for v in problem.vertiports}
    for d in problem.drones:
        if d.home not in port_ids:
            raise ValueError(f"drone {d.id}: home {d.home!r} is not a vertiport")
    starts = {d.id: (starts or {}).get(d.id, Start(d.home, d.available_from))
              for d in problem.drones}
    sites = _Sites(problem, travel)
    able, unassigned = _screen(problem, sites, starts)
    tasks = [t for t in problem.tasks if t.id in able]
    by_drone = {d.id: DronePlan(d.id) for d in problem.drones}
    if not tasks or not problem.drones:
        return Plan(list(by_drone.values()), unassigned, objective={"planned": 0})

    factor: dict[str, float] = {}
    legs: dict[str, list[Leg]] = {}
    best: Solution | None = None
    rounds = 0
    for rounds in range(1, TIGHTEN_ROUNDS + 2):
        # the first solve has most of the time; a re-solve after tightening, the rest
        budget = time_limit_s * (0.6 if rounds == 1 else 0.4 / TIGHTEN_ROUNDS)
        data, best = _search(problem, sites, tasks, starts, factor, budget, seed, best)
        legs = _legs(data, best, problem, tasks)
        over = False
        for did, dl in legs.items():
            d = problem.drone(did)
            clock = sites.clock(did)
            legs[did] = split_trips(clock, d, dl, starts[did].at)
            trips = time_legs(clock, d, legs[did], starts[did].at)
            for trip in trips:
                if trip.flight_s > d.endurance_s:
                    over = True
                    for s in trip.stops:
                        factor[s.task] = factor.get(s.task, 1.0) * (
                            1.05 * trip.flight_s / d.endurance_s)
        if not over or rounds > TIGHTEN_ROUNDS:
            break

    planned: set[str] = set()
    for did, dl in legs.items():
        d = problem.drone(did)
        trips, dropped = _repair(sites.clock(did), d, dl, starts[did].at)
        unassigned += dropped
        by_drone[did].trips = trips
        planned |= {s.task for t in trips for s in t.stops}
    dropped_ids = {u.task for u in unassigned}
    for t in tasks:
        if t.id not in planned and t.id not in dropped_ids:
            unassigned.append(Unassigned(
                t.id, "not_planned",
                "reachable, but the fleet's batteries and time within its window go to "
                "tasks of higher priority or nearer ones"))
    return Plan(list(by_drone.values()), unassigned, objective={
        "planned": len(planned), "rounds": rounds,
        "flight_s": sum(t.flight_s for p in by_drone.values() for t in p.trips)})


__all__ = ["Start", "plan", "prize"]
