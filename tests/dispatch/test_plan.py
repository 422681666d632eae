"""The dispatcher on small problems with known answers, and on random ones checked rule by
rule with the travel times recomputed here."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from helpers_dispatch import check, times

from dispatch import (
    Drone,
    FixedMatrix,
    Problem,
    StraightLineWithDetour,
    Task,
    Vertiport,
    plan,
)

DETOUR = StraightLineWithDetour(1.3)


def _integer_instance(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 2000, size=(n + 1, 2))
    m = np.ceil(np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)) / 10)
    return ["v0", *[f"t{i}" for i in range(n)]], m


def _brute_force(m: np.ndarray, n: int, per_trip: int) -> float:
    """Shortest flight time serving every task, at most ``per_trip`` a trip from v0."""
    best = float("inf")
    for order in itertools.permutations(range(1, n + 1)):
        # every way to cut the order into trips of at most per_trip tasks
        for cuts in itertools.product((False, True), repeat=n - 1):
            trips, cur = [], [order[0]]
            for k, cut in zip(order[1:], cuts, strict=True):
                if cut:
                    trips.append(cur)
                    cur = []
                cur.append(k)
            trips.append(cur)
            if any(len(t) > per_trip for t in trips):
                continue
            cost = sum(m[0, t[0]] + sum(m[a, b] for a, b in itertools.pairwise(t)) + m[t[-1], 0]
                       for t in trips)
            best = min(best, cost)
    return best


def _travel(plan_, m: np.ndarray, ids: list[str]) -> float:
    ix = {k: i for i, k in enumerate(ids)}
    total = 0.0
    for dp in plan_.drones:
        for trip in dp.trips:
            seq = [trip.origin, *[s.task for s in trip.stops], trip.destination]
            total += sum(m[ix[a], ix[b]] for a, b in itertools.pairwise(seq))
    return total


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_small_multi_trip_instances_are_solved_to_optimality(seed):
    n = 6
    ids, m = _integer_instance(n, seed)
    travel = FixedMatrix(ids, m)
    # 2 kg a trip, 1 kg a delivery: at least three trips, with swaps at v0
    problem = Problem(
        (Vertiport("v0", 0, 0, swap_s=60),),
        (Drone("d", "v0", endurance_min=600, payload_kg=2, speed_ms=10),),
        tuple(Task(f"t{i}", 0, 0, "delivery", service_s=30, payload_kg=1) for i in range(n)))
    got = plan(problem, travel, time_limit_s=1.5, seed=seed)
    assert not got.unassigned
    assert sorted(got.planned_tasks()) == sorted(ids[1:])
    assert all(len(t.stops) <= 2 for t in got.drones[0].trips)
    assert _travel(got, m, ids) == _brute_force(m, n, 2)
    check(problem, travel, got)


def _random_problem(seed: int, n_tasks: int = 40, n_drones: int = 5, n_ports: int = 3
                    ) -> Problem:
    rnd = random.Random(seed)
    ports = tuple(Vertiport(f"v{i}", rnd.uniform(0, 6000), rnd.uniform(0, 6000), 90)
                  for i in range(n_ports))
    drones = tuple(Drone(f"d{i}", f"v{i % n_ports}", endurance_min=rnd.choice([15, 20, 30]),
                         payload_kg=rnd.choice([1.0, 2.5]), speed_ms=rnd.choice([12, 15, 18]),
                         available_from=0, available_until=5 * 3600)
                   for i in range(n_drones))
    tasks = []
    for i in range(n_tasks):
        early = rnd.uniform(0, 4 * 3600)
        delivery = i % 3 == 0
        tasks.append(Task(f"t{i}", rnd.uniform(0, 6000), rnd.uniform(0, 6000),
                          "delivery" if delivery else "inspection",
                          service_s=rnd.choice([60, 180, 300]), tw_early=early,
                          tw_late=early + rnd.choice([600, 1800, 3600]),
                          payload_kg=rnd.choice([0.5, 1.0, 2.0]) if delivery else 0.0,
                          priority=rnd.randint(0, 9)))
    return Problem(ports, drones, tuple(tasks))


@pytest.mark.parametrize("seed", [11, 12])
def test_every_returned_schedule_keeps_windows_payload_and_battery(seed):
    problem = _random_problem(seed)
    got = plan(problem, DETOUR, time_limit_s=2, seed=seed)
    stops = check(problem, DETOUR, got)
    assert stops + len(got.unassigned) == len(problem.tasks)
    assert stops >= len(problem.tasks) // 2
    # multi-trip: some drone swaps a battery and flies again
    assert max(len(dp.trips) for dp in got.drones) >= 2


def _one_port_problem(*extra: Task, endurance_min: float = 20) -> Problem:
    return Problem((Vertiport("v0", 0, 0), Vertiport("v1", 3000, 0)),
                   (Drone("d0", "v0", endurance_min, 2.0, 15),
                    Drone("d1", "v1", endurance_min, 5.0, 15)),
                   (Task("a", 500, 500, service_s=60), Task("b", 2500, -400, service_s=60,
                                                              priority=3),
                    Task("c", 1500, 800, "delivery", 30, payload_kg=1.5), *extra))


def test_a_task_out_of_battery_range_is_reported_and_the_rest_planned():
    # 20 min at 15 m/s with a 1.3 detour reaches about 6.9 km there and back
    problem = _one_port_problem(Task("far", 40_000, 0, service_s=60))
    got = plan(problem, DETOUR, time_limit_s=1)
    assert [(u.task, u.reason) for u in got.unassigned] == [("far", "out_of_battery_range")]
    assert "battery" in got.unassigned[0].detail
    assert sorted(got.planned_tasks()) == ["a", "b", "c"]
    check(problem, DETOUR, got)


def test_a_delivery_too_heavy_for_every_drone_is_reported():
    problem = _one_port_problem(Task("piano", 100, 100, "delivery", payload_kg=80))
    got = plan(problem, DETOUR, time_limit_s=1)
    assert [(u.task, u.reason) for u in got.unassigned] == [("piano", "too_heavy")]
    assert "80 kg" in got.unassigned[0].detail and "5 kg" in got.unassigned[0].detail
    assert sorted(got.planned_tasks()) == ["a", "b", "c"]


def test_a_heavy_delivery_goes_to_the_drone_that_can_carry_it():
    problem = _one_port_problem(Task("crate", 200, 200, "delivery", payload_kg=4))
    got = plan(problem, DETOUR, time_limit_s=1)
    by = {s.task: dp.drone for dp in got.drones for t in dp.trips for s in t.stops}
    assert by["crate"] == "d1"
    check(problem, DETOUR, got)


def test_a_window_no_drone_can_meet_and_a_place_with_no_way_there():
    # 'soon' closes 10 s after the start, but the nearest drone needs about a minute
    problem = _one_port_problem(Task("soon", 800, 0, tw_early=0, tw_late=10),
                                Task("fenced", 1000, 1000))
    ids = ["v0", "v1", "a", "b", "c", "soon", "fenced"]
    sites = [(v.id, v.x, v.y) for v in problem.vertiports] + [
        (t.id, t.x, t.y) for t in problem.tasks]
    m = DETOUR.matrix(sites, problem.drones[0])
    m[:, ids.index("fenced")] = np.inf  # inside a prohibited zone: no path in
    m[ids.index("fenced"), ids.index("fenced")] = 0
    travel = FixedMatrix(ids, m)
    got = plan(problem, travel, time_limit_s=1)
    reasons = {u.task: u.reason for u in got.unassigned}
    assert reasons == {"soon": "infeasible_window", "fenced": "unreachable"}
    assert sorted(got.planned_tasks()) == ["a", "b", "c"]
    check(problem, travel, got)


def test_the_travel_time_of_a_plan_is_the_callers():
    problem = _one_port_problem()
    got = plan(problem, DETOUR, time_limit_s=1)
    t = times(problem, DETOUR, "d0")
    assert t["v0", "a"] == pytest.approx(np.hypot(500, 500) * 1.3 / 15)
    check(problem, DETOUR, got)


def test_low_priority_is_left_out_first_when_the_fleet_is_short():
    # one drone, one short battery, two tasks far apart in the same narrow window
    problem = Problem((Vertiport("v0", 0, 0),), (Drone("d", "v0", 10, 1, 10,
                                                        available_until=3600),),
                      (Task("low", 1500, 0, service_s=60, tw_early=600, tw_late=700,
                            priority=1),
                       Task("high", -1500, 0, service_s=60, tw_early=600, tw_late=700,
                            priority=8)))
    got = plan(problem, DETOUR, time_limit_s=1)
    assert got.planned_tasks() == ["high"]
    assert [(u.task, u.reason) for u in got.unassigned] == [("low", "not_planned")]
    check(problem, DETOUR, got)


def test_duplicate_ids_and_unknown_homes_are_refused():
    with pytest.raises(ValueError, match="unique"):
        plan(_one_port_problem(Task("a", 0, 0)), DETOUR)
    bad = Problem((Vertiport("v0", 0, 0),), (Drone("d", "nowhere", 10, 1, 10),), ())
    with pytest.raises(ValueError, match="nowhere"):
        plan(bad, DETOUR)
