"""Approval serialisation: transaction-scoped advisory locks on a spatial grid.

An approval locks every cell (``lock_cell_m`` square, in the metric CRS) that its tube (the
area within its half-width of the centre line, which holds its corridor), grown by the
horizontal separation, touches, then checks conflicts and commits. Two routes
that could conflict have corridors within the separation of each other, so a point of one
lies in the other's grown corridor and in its own: they share a cell and their approvals
run one after the other; the second one's conflict query starts after the first committed
(READ COMMITTED takes a new snapshot per statement) and sees it. Routes far apart lock
different cells and approve in parallel. Keys are taken in ascending order, so two
approvals never wait on each other in a cycle.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from sqlalchemy.ext.asyncio import AsyncConnection

from service.lowalt import store
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings

NAMESPACE = 0x4C41  # "LA": keeps these keys apart from other advisory locks
_MASK = (1 << 24) - 1


def cell_keys(route: RouteVolume, s: LowAltSettings) -> list[int]:
    # the conflict check's reach: routes it can find conflicting share a cell with this one
    area = route.tube_m(s.separation_h_m + s.conflict_step_m / 2)
    c = s.lock_cell_m
    x0, y0, x1, y1 = area.bounds
    ix = np.arange(math.floor(x0 / c), math.floor(x1 / c) + 1)
    iy = np.arange(math.floor(y0 / c), math.floor(y1 / c) + 1)
    gx, gy = (a.ravel() for a in np.meshgrid(ix, iy))
    boxes = shapely.box(gx * c, gy * c, (gx + 1) * c, (gy + 1) * c)
    shapely.prepare(area)
    hit = shapely.intersects(area, boxes)
    return sorted({(NAMESPACE << 48) | ((int(x) & _MASK) << 24) | (int(y) & _MASK)
                   for x, y in zip(gx[hit], gy[hit], strict=True)})


async def lock_airspace(conn: AsyncConnection, route: RouteVolume, s: LowAltSettings) -> int:
    """Block until this transaction holds every cell of the route; returns the cell count."""
    keys = cell_keys(route, s)
    # unnest yields the sorted keys in order, one lock each
    (await conn.execute(store.LOCK_KEYS, {"keys": keys})).all()
    return len(keys)
