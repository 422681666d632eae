"""Travel times between sites, as the caller's model of the airspace gives them.

A site is ``(id, x, y)``: a vertiport or a task. The dispatcher asks for one matrix per
drone speed; ``inf`` means no way there (a prohibited zone in the way, no corridor).
The service will give shortest-path times over its corridor network; until then (and in
tests) the default is the straight line lengthened by a detour factor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from dispatch.model import Drone

Site = tuple[str, float, float]


class TravelTimes(Protocol):
    def matrix(self, sites: Sequence[Site], drone: Drone) -> np.ndarray:
        """Seconds from each site (row) to each site (column) for this drone."""
        ...


class StraightLineWithDetour:
    """Straight-line distance times ``detour`` at the drone's cruise speed.

    Corridors are longer than the straight line (the network's median stretch is bounded
    at 1.25); 1.3 is a stand-in until the network's own shortest paths are passed in.
    """

    def __init__(self, detour: float = 1.3) -> None:
        if detour < 1:
            raise ValueError("a detour factor below 1 is shorter than the straight line")
        self.detour = detour

    def matrix(self, sites: Sequence[Site], drone: Drone) -> np.ndarray:
        xy = np.array([(s[1], s[2]) for s in sites], dtype=float).reshape(-1, 2)
        d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
        return d * self.detour / drone.speed_ms


class FixedMatrix:
    """Times given by id pairs, the same for every drone (e.g. a network's path times)."""

    def __init__(self, ids: Sequence[str], seconds: np.ndarray) -> None:
        self.index = {k: i for i, k in enumerate(ids)}
        self.seconds = np.asarray(seconds, dtype=float)

    def matrix(self, sites: Sequence[Site], drone: Drone) -> np.ndarray:
        idx = np.array([self.index[s[0]] for s in sites], dtype=int)
        return self.seconds[np.ix_(idx, idx)]
