"""Validation and conflict checks of one route against what the database holds now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.errors import Unprocessable
from service.lowalt import store
from service.lowalt.citymodel import city_model_version, load_obstacles, load_zones
from service.lowalt.conflicts import load_candidates, refine
from service.lowalt.ground import GroundModel, load_ground
from service.lowalt.schemas import RouteVolume
from service.lowalt.settings import LowAltSettings
from service.lowalt.validation import validate


async def drone_class(conn: AsyncConnection, drone_id: int) -> str:
    row = (await conn.execute(store.DRONE_CLASS, {"id": drone_id})).first()
    if row is None:
        raise Unprocessable(f"unknown drone {drone_id}: register it at POST /drones first",
                            drone_id=drone_id)
    return row._mapping["class"]


async def validate_route(conn: AsyncConnection, route: RouteVolume, klass: str,
                         s: LowAltSettings, ground: GroundModel | None = None,
                         approving: bool = False) -> dict[str, Any]:
    fr = route.frame
    obstacles = await load_obstacles(conn, route.tube_m(s.clearance_h_m + 1.0),
                                     fr, s.obstacle_types)
    zones = await load_zones(conn, route.tube_m(s.sample_step_m), fr, route.start, route.end)
    if ground is None:
        ground = await load_ground(conn, route.tube_m(), fr, s)
    version = await city_model_version(conn)
    result = await anyio.to_thread.run_sync(validate, route, obstacles, zones, ground, klass,
                                            s, datetime.now(UTC), approving)
    result["checked"]["city_model_version"] = version
    return result


async def find_conflicts(conn: AsyncConnection, route: RouteVolume, s: LowAltSettings,
                         self_id: int | None = None) -> list[dict[str, Any]]:
    cands = await load_candidates(conn, route, s, self_id)
    return refine(route, cands, s)
