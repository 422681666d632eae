"""Planning again while the plan is flown: a drone drops out, a task is added, an emergency.

The simplest honest version: at ``now`` every trip already flown or under way stays as it
is (its stops are done or committed: a drone in the air finishes its trip), and the work
not yet started is planned again from where each drone will be free. A drone that drops
out keeps only what it finished; the rest of its trip under way goes back to the pool, and
that trip is cut at its last finished stop (its ``arrival`` is when the drone left that
stop, its ``destination`` the vertiport it took off from: where it went is not known).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from dispatch.model import DronePlan, Plan, Problem, Stop, Task, Trip, Unassigned
from dispatch.solve import Start, _Sites, plan, prize
from dispatch.travel import StraightLineWithDetour, TravelTimes


def _split(trips: list[Trip], now: float) -> tuple[list[Trip], list[Trip]]:
    """(trips flown or under way at ``now``, trips not yet started)."""
    kept = [t for t in trips if t.departure <= now]
    return kept, trips[len(kept):]


def replan(problem: Problem, previous: Plan, now: float, travel: TravelTimes | None = None, *,
           dropped: Iterable[str] = (), time_limit_s: float = 5.0, seed: int = 0) -> Plan:
    """``problem`` is the whole current problem (new tasks added, withdrawn ones removed);
    ``dropped`` the drones out of service from ``now``."""
    travel = travel or StraightLineWithDetour()
    out = set(dropped)
    known = {d.id for d in problem.drones}
    unknown = out - known
    if unknown:
        raise ValueError(f"no such drone: {', '.join(sorted(unknown))}")
    previous_plans = {p.drone: p for p in previous.drones}
    fixed: dict[str, list[Trip]] = {}
    done: list[str] = list(previous.completed)
    starts: dict[str, Start] = {}
    for d in problem.drones:
        trips = previous_plans.get(d.id, DronePlan(d.id)).trips
        kept, _ = _split(trips, now)
        if d.id in out:
            flown = [t for t in kept if t.arrival <= now]
            under_way = [t for t in kept if t.arrival > now]
            for t in under_way:
                # stops finished before the drone dropped out count as done
                part = [s for s in t.stops if s.departure <= now]
                if part:
                    flown.append(Trip(t.origin, t.origin, t.departure, part[-1].departure,
                                      part, t.payload_kg))
            fixed[d.id] = flown
        else:
            fixed[d.id] = kept
            if kept:
                last = kept[-1]
                port = problem.vertiport(last.destination)
                starts[d.id] = Start(last.destination, max(now, last.arrival + port.swap_s))
            else:
                starts[d.id] = Start(previous_start(previous, d.id, d.home),
                                     max(now, d.available_from))
    for trips in fixed.values():
        done += [s.task for t in trips for s in t.stops]
    taken = set(done)
    live = [d for d in problem.drones if d.id not in out]
    rest = Problem(problem.vertiports, tuple(live),
                   tuple(t for t in problem.tasks if t.id not in taken))
    new = plan(rest, travel, time_limit_s=time_limit_s, seed=seed, starts=starts)
    merged = {p.drone: p.trips for p in new.drones}
    drones = [DronePlan(d.id, fixed[d.id] + merged.get(d.id, [])) for d in problem.drones]
    return Plan(drones, new.unassigned, completed=sorted(taken),
                objective={**new.objective, "replanned_at": now, "dropped": sorted(out)})


def previous_start(previous: Plan, drone: str, home: str) -> str:
    """Where a drone with no trip flown yet is: its first trip's origin, else its home."""
    for p in previous.drones:
        if p.drone == drone and p.trips:
            return p.trips[0].origin
    return home


@dataclass
class Candidate:
    drone: str
    eta: float
    preempted: list[str]
    cost: int
    plan: DronePlan


@dataclass
class EmergencyAnswer:
    """The drone sent (``None`` when none can go), when it is there, what it gives up."""

    drone: str | None
    eta: float | None
    preempted: list[str]
    plan: Plan
    refused: dict[str, str] = field(default_factory=dict)  # drone -> why it cannot go

    @property
    def assigned(self) -> bool:
        return self.drone is not None


def emergency(problem: Problem, current: Plan, task: Task, now: float,
              travel: TravelTimes | None = None, dropped: Iterable[str] = ()) -> EmergencyAnswer:
    """Send the nearest suitable free drone to ``task`` (an incident) at ``now``; if none is
    free, the drone whose diversion gives up the least work, all of lower priority.

    A drone idle on a pad takes off at once; a drone in the air finishes the stop it is at
    or flying to, then diverts, and the rest of that trip is pre-empted. Later trips that
    would leave before it is back (or from another vertiport) are pre-empted too. A drone is
    not sent when that would pre-empt a task of equal or higher priority, when it cannot
    carry the payload, or when one battery does not take it there and to a vertiport.
    """
    travel = travel or StraightLineWithDetour()
    if any(t.id == task.id for t in problem.tasks):
        raise ValueError(f"task id {task.id!r} is in the plan already")
    whole = Problem(problem.vertiports, problem.drones, (*problem.tasks, task))
    sites = _Sites(whole, travel)
    out = set(dropped)
    plans = {p.drone: p for p in current.drones}
    scale = max(float(m[m < float("inf")].max()) for m in sites.times.values()) or 1.0
    refused: dict[str, str] = {}
    candidates: list[Candidate] = []
    for d in problem.drones:
        if d.id in out:
            refused[d.id] = "out of service"
            continue
        if task.payload_kg > d.payload_kg:
            refused[d.id] = f"carries at most {d.payload_kg:g} kg"
            continue
        if now >= d.available_until:
            refused[d.id] = "its shift is over"
            continue
        clock = sites.clock(d.id)
        trips = plans.get(d.id, DronePlan(d.id)).trips
        kept, later = _split(trips, now)
        preempted: list[str] = []
        head: list[Trip] = [t for t in kept if t.arrival <= now]
        under_way = [t for t in kept if t.arrival > now]
        if under_way:
            t = under_way[0]
            # finish the stop it is at or flying to, then divert
            k = next((i for i, s in enumerate(t.stops) if s.departure > now), None)
            if k is None:
                # flying back: land, swap, go from there
                port = problem.vertiport(t.destination)
                head.append(t)
                here, leave, origin = t.destination, t.arrival + port.swap_s, None
            else:
                done = t.stops[:k + 1]
                preempted += [s.task for s in t.stops[k + 1:]]
                here, leave = done[-1].task, done[-1].departure
                origin = t
        else:
            here = head[-1].destination if head else previous_start(current, d.id, d.home)
            last = head[-1].arrival + problem.vertiport(here).swap_s if head else d.available_from
            leave, origin = max(now, last), None
        into = clock.t(here, task.id)
        if into == float("inf"):
            refused[d.id] = "no way there"
            continue
        arrival = leave + into
        begin = max(arrival, task.tw_early)
        if origin is None:
            # on the pad: wait there, not in the air
            leave, arrival = begin - into, begin
        if begin > task.tw_late:
            refused[d.id] = f"cannot be there before its window closes (at {arrival:.0f} s)"
            continue
        finish = begin + task.service_s
        ports = sorted(problem.vertiports, key=lambda v: clock.t(task.id, v.id))
        back = ports[0]
        start_flight = origin.departure if origin is not None else leave
        land = finish + clock.t(task.id, back.id)
        if land - start_flight > d.endurance_s:
            refused[d.id] = ("one battery does not take it there and back to a vertiport"
                             if origin is None else
                             "its battery, part spent on the trip under way, does not last")
            continue
        if land > d.available_until:
            refused[d.id] = "it would land after its shift ends"
            continue
        ready = land + back.swap_s
        # the later trips are kept from the first one that leaves the landing vertiport
        # after the swap; those before it are pre-empted
        cut = next((i for i, t in enumerate(later)
                    if t.departure >= ready and t.origin == back.id), len(later))
        preempted += [s.task for t in later[:cut] for s in t.stops]
        tail = later[cut:]
        higher = [p for p in preempted if whole.task(p).priority >= task.priority]
        if higher:
            refused[d.id] = (f"it would give up task {higher[0]} of priority "
                             f"{whole.task(higher[0]).priority}, not lower than the "
                             f"emergency's {task.priority}")
            continue
        stop = Stop(task.id, arrival, begin, finish)
        if origin is not None:
            done = [s for s in origin.stops if s.task not in preempted]
            flight = Trip(origin.origin, back.id, origin.departure, land, [*done, stop],
                          task.payload_kg + sum(whole.task(s.task).payload_kg for s in done))
        else:
            flight = Trip(here, back.id, leave, land, [stop], task.payload_kg)
        cost = sum(prize(whole.task(p).priority, scale) for p in preempted)
        candidates.append(Candidate(d.id, arrival, preempted, cost,
                                    DronePlan(d.id, [*head, flight, *tail])))
    if not candidates:
        return EmergencyAnswer(None, None, [], current, refused)
    free = [c for c in candidates if not c.preempted]
    best = (min(free, key=lambda c: (c.eta, c.drone)) if free
            else min(candidates, key=lambda c: (c.cost, c.eta, c.drone)))
    drones = [best.plan if p.drone == best.drone else p for p in current.drones]
    unassigned = [*current.unassigned, *(
        Unassigned(t, "preempted", f"drone {best.drone} was sent to emergency {task.id}")
        for t in best.preempted)]
    new = Plan(drones, unassigned, list(current.completed),
               {**current.objective, "emergency": task.id})
    return EmergencyAnswer(best.drone, best.eta, best.preempted, new, refused)


def with_task(problem: Problem, task: Task) -> Problem:
    return replace(problem, tasks=(*problem.tasks, task))


__all__ = ["EmergencyAnswer", "emergency", "replan", "with_task"]
