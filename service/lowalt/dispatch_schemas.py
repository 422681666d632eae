"""Request bodies of the fleet dispatcher, and their translation into a ``dispatch.Problem``.

Pydantic refuses wrong types and out-of-range numbers; ``problem_from`` refuses what is
well typed but still no fleet (duplicate ids, a home that is no vertiport, a window that
ends before it starts, a naive time, a position off the globe), with every reason at once.
A task the fleet cannot serve is not refused here: the dispatcher reports it per task.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dispatch import Drone, Problem, Task, Vertiport
from service.core.errors import Unprocessable
from service.core.instants import WorkingDatetime
from service.lowalt.geo import Frame
from service.lowalt.schemas import PolygonGeometry, Position, Strict, polygon_from

Ident = str  # ids are the caller's: a vertiport code, a drone serial, a work order number
MAX_TASKS, MAX_DRONES, MAX_PORTS = 2000, 500, 100


class VertiportIn(Strict):
    id: Ident = Field(min_length=1, max_length=64)
    position: Position = Field(description="[lon, lat] (WGS 84)", min_length=2, max_length=3)
    swap_s: float = Field(120, ge=0, le=3600, description="battery swap time on the pad (s)")


class FleetDroneIn(Strict):
    id: Ident = Field(min_length=1, max_length=64)
    home: Ident = Field(min_length=1, max_length=64, description="id of its vertiport")
    endurance_min: float = Field(gt=0, le=600, description="flight time of one battery")
    payload_kg: float = Field(ge=0, le=1000)
    speed_ms: float = Field(gt=0, le=150, description="cruise speed (m/s)")
    available_from: WorkingDatetime | None = None
    available_until: WorkingDatetime | None = None


class WindowIn(Strict):
    start: WorkingDatetime = Field(description="earliest start of the work")
    end: WorkingDatetime = Field(description="latest start of the work")


class TaskIn(Strict):
    id: Ident = Field(min_length=1, max_length=64)
    kind: Literal["inspection", "delivery"] = "inspection"
    position: Position | None = Field(None, min_length=2, max_length=3,
                                      description="[lon, lat]; or give `area`")
    area: PolygonGeometry | None = Field(
        None, description="an area to inspect: the drone goes to its centroid and works "
                          "`service_s` there (the sweep's duration is the caller's)")
    service_s: float = Field(0, ge=0, le=86_400)
    window: WindowIn | None = None
    payload_kg: float = Field(0, ge=0, le=1000)
    priority: int = Field(1, ge=0, le=9, description="0 lowest .. 9 highest")

    @model_validator(mode="after")
    def _one_place(self) -> TaskIn:
        if (self.position is None) == (self.area is None):
            raise ValueError("give exactly one of position and area")
        return self


class EmergencyTaskIn(TaskIn):
    kind: Literal["emergency"] = "emergency"  # type: ignore[assignment]
    type: str = Field("incident", max_length=64, description="fire, accident, search, ...")
    priority: int = Field(9, ge=0, le=9)


class FleetPlanIn(Strict):
    start: WorkingDatetime = Field(description="the plan's start: drones are free from then")
    vertiports: list[VertiportIn] = Field(min_length=1, max_length=MAX_PORTS)
    drones: list[FleetDroneIn] = Field(min_length=1, max_length=MAX_DRONES)
    tasks: list[TaskIn] = Field(max_length=MAX_TASKS)
    time_limit_s: float = Field(5, gt=0, le=30, description="solver time (s)")
    detour_factor: float = Field(
        1.3, ge=1, le=5, description="travel time = straight line x this / speed, until "
                                     "times come from the corridor network")
    max_delay_s: float = Field(
        900, ge=0, le=7200, description="on a route network: how much later than planned a "
                                        "flight may leave, waiting for free slots (the "
                                        "schedule after it moves too, and must still keep "
                                        "windows and batteries)")


class ReplanIn(Strict):
    at: WorkingDatetime | None = Field(None, description="now, by default")
    dropped: list[Ident] = Field([], max_length=MAX_DRONES, description="drones out of service")
    add_tasks: list[TaskIn] = Field([], max_length=MAX_TASKS)
    remove_tasks: list[Ident] = Field([], max_length=MAX_TASKS)
    time_limit_s: float = Field(5, gt=0, le=30, description="solver time (s)")


class EmergencyIn(Strict):
    task: EmergencyTaskIn
    at: WorkingDatetime | None = Field(None, description="now, by default")


def _aware(t: datetime | None, what: str, errors: list[str]) -> None:
    if t is not None and (t.tzinfo is None or t.utcoffset() is None):
        errors.append(f"{what} needs a time zone (e.g. 2026-05-01T10:00:00+08:00)")


def _lonlat(p: list[float], what: str, errors: list[str]) -> bool:
    if not (-180 <= p[0] <= 180 and -90 <= p[1] <= 90):
        errors.append(f"{what}: [{p[0]}, {p[1]}] is not a longitude and latitude")
        return False
    return True


def seconds(t: datetime | None, epoch: datetime, default: float) -> float:
    return default if t is None else (t - epoch).total_seconds()


def task_from(body: TaskIn, epoch: datetime, fr: Frame, errors: list[str],
              kind: str | None = None) -> Task | None:
    what = f"task {body.id}"
    if body.window is not None:
        _aware(body.window.start, f"{what}: window.start", errors)
        _aware(body.window.end, f"{what}: window.end", errors)
        if not errors and body.window.end < body.window.start:
            errors.append(f"{what}: its window ends before it starts")
    if body.position is not None:
        if not _lonlat(body.position, what, errors):
            return None
        x, y = fr.to_metric(np.array([body.position[0]]), np.array([body.position[1]]))
        xy = (float(x[0]), float(y[0]))
    else:
        try:
            geom = polygon_from(body.area, f"{what}: area")
        except Unprocessable as e:
            errors.append(e.detail)
            return None
        c = geom.centroid
        if not _lonlat([c.x, c.y], what, errors):
            return None
        x, y = fr.to_metric(np.array([c.x]), np.array([c.y]))
        xy = (float(x[0]), float(y[0]))
    if not all(math.isfinite(v) for v in xy):
        errors.append(f"{what}: outside the area the metric CRS {fr.crs} covers")
        return None
    if errors:
        return None
    w = body.window
    return Task(body.id, xy[0], xy[1], kind or body.kind, body.service_s,
                seconds(w.start if w else None, epoch, 0.0),
                seconds(w.end if w else None, epoch, math.inf),
                body.payload_kg, body.priority)


def problem_from(body: FleetPlanIn, fr: Frame) -> Problem:
    """The dispatcher's problem, or a 422 listing every reason it is not one."""
    errors: list[str] = []
    _aware(body.start, "start", errors)
    if errors:
        raise Unprocessable(errors[0] + "; nothing was stored", errors=errors)
    epoch = body.start
    for name, items in (("vertiport", body.vertiports), ("drone", body.drones),
                        ("task", body.tasks)):
        seen: set[str] = set()
        for it in items:
            if it.id in seen:
                errors.append(f"{name} id {it.id!r} is given twice")
            seen.add(it.id)
    ports = []
    for v in body.vertiports:
        if _lonlat(v.position, f"vertiport {v.id}", errors):
            x, y = fr.to_metric(np.array([v.position[0]]), np.array([v.position[1]]))
            ports.append(Vertiport(v.id, float(x[0]), float(y[0]), v.swap_s))
    port_ids = {v.id for v in body.vertiports}
    drones = []
    for d in body.drones:
        if d.home not in port_ids:
            errors.append(f"drone {d.id}: home {d.home!r} is not one of the vertiports")
        _aware(d.available_from, f"drone {d.id}: available_from", errors)
        _aware(d.available_until, f"drone {d.id}: available_until", errors)
        if errors:
            continue
        if (d.available_from and d.available_until
                and d.available_until <= d.available_from):
            errors.append(f"drone {d.id}: available_until is not after available_from")
        drones.append(Drone(d.id, d.home, d.endurance_min, d.payload_kg, d.speed_ms,
                            max(0.0, seconds(d.available_from, epoch, 0.0)),
                            seconds(d.available_until, epoch, math.inf)))
    tasks = []
    for t in body.tasks:
        mine: list[str] = []
        task = task_from(t, epoch, fr, mine)
        errors += mine
        if task is not None:
            tasks.append(task)
    if errors:
        raise Unprocessable("; ".join(errors[:10]) + "; nothing was stored", errors=errors)
    return Problem(tuple(ports), tuple(drones), tuple(tasks))
