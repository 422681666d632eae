"""Planning again while flying: a drone drops out, a task is added, an emergency comes in."""

from __future__ import annotations

import pytest
from helpers_dispatch import check

from dispatch import (
    Drone,
    Plan,
    Problem,
    StraightLineWithDetour,
    Task,
    Vertiport,
    emergency,
    plan,
    replan,
    with_task,
)

DETOUR = StraightLineWithDetour(1.3)


def _problem() -> Problem:
    ports = (Vertiport("west", 0, 0, 60), Vertiport("east", 6000, 0, 60))
    drones = (Drone("w1", "west", 20, 2, 15, available_until=4 * 3600),
              Drone("w2", "west", 20, 2, 15, available_until=4 * 3600),
              Drone("e1", "east", 20, 2, 15, available_until=4 * 3600))
    tasks = tuple(Task(f"t{i}", x, y, service_s=120, tw_early=e, tw_late=e + 1800,
                       priority=p)
                  for i, (x, y, e, p) in enumerate([
                      (800, 600, 0, 2), (1200, -900, 600, 3), (2000, 300, 1200, 1),
                      (400, -1500, 2400, 2), (5200, 800, 0, 2), (6800, -700, 900, 4),
                      (5600, -1200, 2000, 1), (3000, 1500, 3000, 5), (900, 1800, 4000, 2),
                      (6400, 1600, 4200, 3)]))
    return Problem(ports, drones, tasks)


def _stops(p: Plan, drone: str) -> list[tuple[str, float]]:
    return [(s.task, s.start) for dp in p.drones if dp.drone == drone
            for t in dp.trips for s in t.stops]


def test_a_drone_dropping_out_keeps_the_others_flown_stops_and_replans_its_work():
    problem = _problem()
    first = plan(problem, DETOUR, time_limit_s=1)
    check(problem, DETOUR, first)
    assert not first.unassigned
    w1 = [s for s in _stops(first, "w1")]
    assert len(w1) >= 2
    now = w1[0][1] + 1  # w1 is at work on its first stop
    again = replan(problem, first, now, DETOUR, dropped=["w1"], time_limit_s=1)
    # every stop the other drones had begun by then is where it was, at the same time
    for d in ("w2", "e1"):
        before = [(t.departure, [(s.task, s.start) for s in t.stops])
                  for dp in first.drones if dp.drone == d for t in dp.trips
                  if t.departure < now]
        after = [(t.departure, [(s.task, s.start) for s in t.stops])
                 for dp in again.drones if dp.drone == d for t in dp.trips
                 if t.departure < now]
        assert after == before
    # w1 keeps only its finished stops; what it had left is flown by others or reported
    kept_w1 = [task for task, _ in _stops(again, "w1")]
    assert all(start <= now for _, start in _stops(again, "w1"))
    assert w1[0][0] not in kept_w1  # not finished at now: back in the pool
    left = {task for task, _ in w1} - set(kept_w1)
    planned_now = {task for d in ("w2", "e1") for task, _ in _stops(again, d)}
    reported = {u.task for u in again.unassigned}
    assert left <= planned_now | reported
    assert set(again.planned_tasks()) | reported == {t.id for t in problem.tasks}
    # the future is checked like any plan, from where each drone is free
    future = Plan([type(dp)(dp.drone, [t for t in dp.trips if t.departure > now])
                   for dp in again.drones if dp.drone != "w1"], [])
    starts = {}
    for dp in again.drones:
        flown = [t for t in dp.trips if t.departure <= now]
        if flown:
            port = problem.vertiport(flown[-1].destination)
            starts[dp.drone] = (port.id, flown[-1].arrival + port.swap_s)
    sub = Problem(problem.vertiports, tuple(d for d in problem.drones if d.id != "w1"),
                  problem.tasks)
    check(sub, DETOUR, future, starts=starts)


def test_a_task_added_later_is_planned_with_the_rest_kept():
    problem = _problem()
    first = plan(problem, DETOUR, time_limit_s=1)
    now = 1500.0
    added = with_task(problem, Task("new", 3000, -500, service_s=60, tw_early=2000,
                                    tw_late=6000, priority=6))
    again = replan(added, first, now, DETOUR, time_limit_s=1)
    assert "new" in again.planned_tasks()
    for dp_old, dp_new in zip(first.drones, again.drones, strict=True):
        old = [t for t in dp_old.trips if t.departure <= now]
        assert dp_new.trips[:len(old)] == old


def test_replanning_an_unknown_drone_out_is_refused():
    problem = _problem()
    first = plan(problem, DETOUR, time_limit_s=0.5)
    with pytest.raises(ValueError, match="ghost"):
        replan(problem, first, 0, DETOUR, dropped=["ghost"])


def _idle_problem() -> Problem:
    ports = (Vertiport("west", 0, 0, 60), Vertiport("east", 6000, 0, 60))
    drones = (Drone("w", "west", 20, 2, 15), Drone("e", "east", 20, 2, 15),
              Drone("small", "east", 20, 0.2, 15))
    return Problem(ports, drones, ())


def test_an_emergency_goes_to_the_nearest_suitable_free_drone():
    problem = _idle_problem()
    idle = plan(problem, DETOUR, time_limit_s=0.2)
    fire = Task("fire", 5000, 500, "emergency", service_s=300, payload_kg=1, priority=9)
    answer = emergency(problem, idle, fire, now=100, travel=DETOUR)
    # 'small' is nearer (east) but cannot carry the 1 kg extinguisher
    assert answer.drone == "e"
    assert answer.preempted == []
    assert answer.eta == pytest.approx(100 + 1.3 * (1000**2 + 500**2) ** 0.5 / 15)
    assert "small" in answer.refused and "0.2 kg" in answer.refused["small"]
    whole = with_task(problem, fire)
    check(whole, DETOUR, answer.plan)


def test_an_emergency_preempts_lower_priority_work_only():
    ports = (Vertiport("west", 0, 0, 60),)
    drones = (Drone("a", "west", 25, 2, 15), Drone("b", "west", 25, 2, 15))
    tasks = (Task("low1", 2000, 0, service_s=300, priority=1),
             Task("low2", 2500, 500, service_s=300, priority=1),
             Task("vip1", -2000, 0, service_s=300, priority=9),
             Task("vip2", -2500, -500, service_s=300, priority=9))
    problem = Problem(ports, drones, tasks)
    # a flies the low-priority work, b the high: planned drone by drone
    parts = [plan(Problem(ports, (d,), tuple(t for t in tasks if t.id.startswith(k))),
                  DETOUR, time_limit_s=0.5)
             for d, k in zip(drones, ("low", "vip"), strict=True)]
    busy = Plan([p.drones[0] for p in parts], [])
    check(problem, DETOUR, busy)
    owner = {s.task: dp.drone for dp in busy.drones for t in dp.trips for s in t.stops}
    assert owner == {"low1": "a", "low2": "a", "vip1": "b", "vip2": "b"}
    now = 200.0  # both drones in the air, on their first stop's leg
    incident = Task("incident", 0, 3000, "emergency", service_s=120, priority=5)
    answer = emergency(problem, busy, incident, now=now, travel=DETOUR)
    assert answer.drone == owner["low1"]
    assert answer.preempted and set(answer.preempted) <= {"low1", "low2"}
    assert "vip1" in answer.refused[owner["vip1"]] or "vip2" in answer.refused[owner["vip1"]]
    assert {u.task for u in answer.plan.unassigned if u.reason == "preempted"} == set(
        answer.preempted)
    check(with_task(problem, incident), DETOUR, answer.plan)
    # nothing of priority 9 was touched
    assert answer.plan.drones[[d.drone for d in answer.plan.drones].index(owner["vip1"])] \
        == busy.drones[[d.drone for d in busy.drones].index(owner["vip1"])]


def test_an_emergency_with_no_drone_available_is_answered_as_such():
    ports = (Vertiport("west", 0, 0, 60),)
    drones = (Drone("a", "west", 25, 2, 15),)
    tasks = (Task("vip1", 2000, 0, service_s=300, priority=9),
             Task("vip2", 2500, 500, service_s=300, priority=9))
    problem = Problem(ports, drones, tasks)
    busy = plan(problem, DETOUR, time_limit_s=0.5)
    assert len(busy.drones[0].trips) == 1 and not busy.unassigned  # both on one battery
    now = 400.0  # at work on its first stop: diverting gives up the other
    for incident in (Task("heavy", 100, 0, "emergency", payload_kg=30, priority=9),
                     Task("same", 100, 0, "emergency", priority=9),
                     Task("far", 90_000, 0, "emergency", priority=9)):
        answer = emergency(problem, busy, incident, now=now, travel=DETOUR)
        assert answer.drone is None and not answer.assigned
        assert answer.preempted == [] and answer.plan == busy
        assert set(answer.refused) == {"a"}
    assert "kg" in emergency(problem, busy, Task("h", 0, 0, payload_kg=30, priority=9),
                             now=now, travel=DETOUR).refused["a"]
    assert "priority" in emergency(problem, busy, Task("s", 100, 0, priority=9),
                                   now=now, travel=DETOUR).refused["a"]
    dropped = emergency(problem, busy, Task("x", 100, 0, priority=9), now=now,
                        travel=DETOUR, dropped=["a"])
    assert dropped.drone is None and dropped.refused == {"a": "out of service"}
