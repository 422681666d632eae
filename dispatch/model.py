"""What a fleet problem is made of, and what a plan says.

Times are seconds from the plan's epoch (the caller chooses it: the service uses the
request's start); positions are metres in a local metric frame. Nothing here knows about
dates, longitudes or databases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TaskKind = Literal["inspection", "delivery", "emergency"]
INF = float("inf")


@dataclass(frozen=True)
class Vertiport:
    id: str
    x: float
    y: float
    swap_s: float = 120.0  # battery swap (and reload) time on the pad


@dataclass(frozen=True)
class Drone:
    id: str
    home: str  # vertiport id: every shift starts and ends there
    endurance_min: float  # flight time of one battery, hovering included
    payload_kg: float
    speed_ms: float
    available_from: float = 0.0
    available_until: float = INF

    @property
    def endurance_s(self) -> float:
        return self.endurance_min * 60.0


@dataclass(frozen=True)
class Task:
    id: str
    x: float
    y: float
    kind: TaskKind = "inspection"
    service_s: float = 0.0
    tw_early: float = 0.0
    tw_late: float = INF  # latest start of service
    payload_kg: float = 0.0  # a delivery's load, taken on at the vertiport the trip leaves
    priority: int = 1  # 0 (lowest) .. 9 (highest)


@dataclass(frozen=True)
class Problem:
    vertiports: tuple[Vertiport, ...]
    drones: tuple[Drone, ...]
    tasks: tuple[Task, ...]

    def vertiport(self, vid: str) -> Vertiport:
        return next(v for v in self.vertiports if v.id == vid)

    def drone(self, did: str) -> Drone:
        return next(d for d in self.drones if d.id == did)

    def task(self, tid: str) -> Task:
        return next(t for t in self.tasks if t.id == tid)


@dataclass
class Stop:
    """A task served on a trip: when the drone arrives, starts the work, and leaves."""

    task: str
    arrival: float
    start: float
    departure: float


@dataclass
class Trip:
    """One battery: from a vertiport, through its stops, to a vertiport (maybe another)."""

    origin: str
    destination: str
    departure: float
    arrival: float
    stops: list[Stop]
    payload_kg: float = 0.0

    @property
    def flight_s(self) -> float:
        return self.arrival - self.departure


@dataclass
class DronePlan:
    drone: str
    trips: list[Trip] = field(default_factory=list)


@dataclass
class Unassigned:
    task: str
    reason: str  # a code: too_heavy, out_of_battery_range, infeasible_window, unreachable, ...
    detail: str


@dataclass
class Plan:
    drones: list[DronePlan]
    unassigned: list[Unassigned]
    # stops done (or under way) when the plan was made again: kept as they were
    completed: list[str] = field(default_factory=list)
    objective: dict[str, Any] = field(default_factory=dict)

    def planned_tasks(self) -> list[str]:
        return [s.task for d in self.drones for t in d.trips for s in t.stops]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        drones = [DronePlan(p["drone"], [
            Trip(t["origin"], t["destination"], t["departure"], t["arrival"],
                 [Stop(**s) for s in t["stops"]], t.get("payload_kg", 0.0))
            for t in p["trips"]]) for p in d["drones"]]
        return cls(drones, [Unassigned(**u) for u in d["unassigned"]],
                   list(d.get("completed", [])), dict(d.get("objective", {})))
