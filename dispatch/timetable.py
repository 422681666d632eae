"""Exact timing of a drone's trips with the caller's travel times, and what it breaks.

The solver works on whole seconds (travel rounded up); the plan it returns is timed again
here with the travel times themselves, and every returned schedule passes ``violations``.
Waiting at a task hovers, and hovering spends battery: each trip leaves its vertiport as
late as its windows allow, so that the drone waits on the pad rather than in the air.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dispatch.model import INF, Drone, Problem, Stop, Trip

EPS = 1e-6


@dataclass
class Leg:
    """A trip before timing: where it leaves from, the tasks in order, where it lands."""

    origin: str
    tasks: list[str]
    destination: str


class Clock:
    """Site indices and one drone's travel matrix over them."""

    def __init__(self, problem: Problem, ids: Sequence[str], times: np.ndarray) -> None:
        self.problem = problem
        self.index = {k: i for i, k in enumerate(ids)}
        self.times = times
        self.tasks = {t.id: t for t in problem.tasks}
        self.ports = {v.id: v for v in problem.vertiports}

    def t(self, a: str, b: str) -> float:
        return float(self.times[self.index[a], self.index[b]])


def _forward(clock: Clock, leg: Leg, depart: float) -> tuple[list[Stop], float]:
    stops, here, now = [], leg.origin, depart
    for tid in leg.tasks:
        task = clock.tasks[tid]
        arrival = now + clock.t(here, tid)
        start = max(arrival, task.tw_early)
        now = start + task.service_s
        stops.append(Stop(tid, arrival, start, now))
        here = tid
    return stops, now + clock.t(here, leg.destination)


def time_trip(clock: Clock, leg: Leg, earliest: float) -> Trip:
    """The trip leaving ``leg.origin`` no earlier than ``earliest``, delayed on the pad by as
    much of its airborne waiting as its windows allow."""
    stops, back = _forward(clock, leg, earliest)
    # leaving d later moves stop k by (d - the waiting before and at k) when positive
    waited, room = 0.0, INF
    for s in stops:
        waited += s.start - s.arrival
        room = min(room, clock.tasks[s.task].tw_late - s.start + waited)
    delay = max(0.0, min(waited, room))
    if delay > 0:
        stops, back = _forward(clock, leg, earliest + delay)
    payload = sum(clock.tasks[t].payload_kg for t in leg.tasks)
    return Trip(leg.origin, leg.destination, earliest + delay, back, stops, payload)


def time_legs(clock: Clock, drone: Drone, legs: Sequence[Leg], start: float) -> list[Trip]:
    trips, now = [], start
    for leg in legs:
        trip = time_trip(clock, leg, now)
        trips.append(trip)
        now = trip.arrival + clock.ports[leg.destination].swap_s
    return trips


def split_trips(clock: Clock, drone: Drone, legs: Sequence[Leg], start: float) -> list[Leg]:
    """Cut a trip over its battery in two at a vertiport (land, swap, fly on), wherever that
    keeps every window and the shift: the longest first part that flies on one battery.

    The solver charges each task a share of the flight, not the flight itself, and sees no
    difference between waiting in the air and on the pad: so it may chain tasks whose
    windows are far apart into one trip. Landing in between moves the waiting to the ground.
    """
    legs = [Leg(g.origin, list(g.tasks), g.destination) for g in legs]
    ports = list(clock.ports)
    i, free = 0, start
    while i < len(legs):
        trip = time_trip(clock, legs[i], free)
        if trip.flight_s > drone.endurance_s + EPS and len(legs[i].tasks) >= 2:
            leg = legs[i]
            for k in range(len(leg.tasks) - 1, 0, -1):
                # the three vertiports nearest the cut are enough to find a landing
                near = sorted(ports, key=lambda v: clock.t(leg.tasks[k - 1], v))[:3]
                tails = ([Leg(leg.origin, leg.tasks[:k], port),
                          Leg(port, leg.tasks[k:], leg.destination), *legs[i + 1:]]
                         for port in near)
                tail = next((t for t in tails if _holds(clock, drone, t, free)), None)
                if tail is not None:
                    legs[i:] = tail
                    trip = time_trip(clock, legs[i], free)
                    break
        free = trip.arrival + clock.ports[legs[i].destination].swap_s
        i += 1
    return legs


def _holds(clock: Clock, drone: Drone, tail: Sequence[Leg], free: float) -> bool:
    """The first leg of ``tail`` flies on one battery and no later rule but a battery
    breaks (those are cut in turn)."""
    timed = time_legs(clock, drone, tail, free)
    if timed[0].flight_s > drone.endurance_s + EPS:
        return False
    return all(why.startswith("flight") for _, why in violations(clock, drone, timed))


def violations(clock: Clock, drone: Drone, trips: Sequence[Trip]) -> list[tuple[int, str]]:
    """(trip index, what is wrong) for every broken rule: a window, the payload, the
    battery, the end of the drone's shift; an empty list for a schedule that holds."""
    out: list[tuple[int, str]] = []
    for i, trip in enumerate(trips):
        for s in trip.stops:
            task = clock.tasks[s.task]
            if s.start > task.tw_late + EPS:
                out.append((i, f"task {s.task} starts after its window closes"))
        if trip.payload_kg > drone.payload_kg + EPS:
            out.append((i, "payload over the drone's limit"))
        if trip.flight_s > drone.endurance_s + EPS:
            out.append((i, f"flight of {trip.flight_s:.0f} s over the battery's "
                           f"{drone.endurance_s:.0f} s"))
        if trip.arrival > drone.available_until + EPS:
            out.append((i, "lands after the drone's shift ends"))
    return out
