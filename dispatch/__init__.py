"""Fleet dispatch: assign drone tasks and schedule them (PyVRP), re-plan, answer emergencies.

A pure library: no web, database or service imports. The service gives it tasks, drones,
vertiports and travel times, and stores what it returns.
"""

from dispatch.model import (
    Drone,
    DronePlan,
    Plan,
    Problem,
    Stop,
    Task,
    Trip,
    Unassigned,
    Vertiport,
)
from dispatch.replan import EmergencyAnswer, emergency, replan, with_task
from dispatch.solve import Start, plan
from dispatch.travel import FixedMatrix, StraightLineWithDetour, TravelTimes

__all__ = ["Drone", "DronePlan", "EmergencyAnswer", "FixedMatrix", "Plan", "Problem", "Start",
           "Stop", "StraightLineWithDetour", "Task", "TravelTimes", "Trip", "Unassigned",
           "Vertiport", "emergency", "plan", "replan", "with_task"]
