"""An independent check of a plan: every time recomputed from the travel times alone."""

from __future__ import annotations

import numpy as np

from dispatch import Plan, Problem, TravelTimes

TOL = 1e-6


def times(problem: Problem, travel: TravelTimes, drone_id: str) -> dict[tuple[str, str], float]:
    sites = [(v.id, v.x, v.y) for v in problem.vertiports] + [
        (t.id, t.x, t.y) for t in problem.tasks]
    m = np.asarray(travel.matrix(sites, problem.drone(drone_id)), dtype=float)
    return {(a[0], b[0]): float(m[i, j]) for i, a in enumerate(sites)
            for j, b in enumerate(sites)}


def check(problem: Problem, travel: TravelTimes, plan: Plan,
          starts: dict[str, tuple[str, float]] | None = None) -> int:
    """Assert every rule on every trip; the number of stops checked."""
    tasks = {t.id: t for t in problem.tasks}
    ports = {v.id: v for v in problem.vertiports}
    seen: list[str] = []
    checked = 0
    for dp in plan.drones:
        d = problem.drone(dp.drone)
        t = times(problem, travel, d.id)
        where, free = (starts or {}).get(d.id, (d.home, d.available_from))
        for trip in dp.trips:
            assert trip.origin == where, (d.id, trip.origin, where)
            assert trip.departure >= free - TOL, (d.id, trip.departure, free)
            here, clock, load = trip.origin, trip.departure, 0.0
            for s in trip.stops:
                task = tasks[s.task]
                assert abs(s.arrival - (clock + t[here, s.task])) < 1e-6
                assert s.start >= s.arrival - TOL and s.start >= task.tw_early - TOL
                assert s.start <= task.tw_late + TOL, (s.task, s.start, task.tw_late)
                assert abs(s.departure - (s.start + task.service_s)) < 1e-6
                clock, here = s.departure, s.task
                load += task.payload_kg
                seen.append(s.task)
                checked += 1
            assert abs(trip.arrival - (clock + t[here, trip.destination])) < 1e-6
            assert trip.arrival - trip.departure <= d.endurance_s + TOL, (d.id, trip)
            assert load <= d.payload_kg + TOL
            assert trip.arrival <= d.available_until + TOL
            where, free = trip.destination, trip.arrival + ports[trip.destination].swap_s
    assert len(seen) == len(set(seen)), "a task served twice"
    assert not set(seen) & {u.task for u in plan.unassigned}
    return checked
