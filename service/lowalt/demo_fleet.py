"""The demo district's fleet: five vertiports, a route network generated over the district's
roads, rolling fleet plans of inspection tasks, and the demo drones flying the plans'
reserved routes (so the dashboard shows them conforming).

Everything goes through the service's own paths: vertiports are validated like any
(``create_vertiport``: a pad whose climb breaks a building's clearance is refused, and the
next candidate spot is tried), the network is generated and validated like any, and each
plan is made, reserved and approved by ``make_plan`` (``POST /fleet/plans``). The network
waits for the demo city model to be ingested, so its corridors are validated against the
buildings. Tasks lie at the network's junctions, so every flight runs node to node on
reserved corridors and a drone at work stands where its route ends.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.errors import TwinbaseError
from service.lowalt.dispatch_api import make_plan
from service.lowalt.dispatch_schemas import FleetPlanIn
from service.lowalt.geo import frame
from service.lowalt.network import service, store
from service.lowalt.network.schemas import GenerateIn, VertiportIn
from service.lowalt.settings import LowAltSettings
from service.lowalt.simulator import Flight, PlanSimulator

log = logging.getLogger(__name__)

VERTIPORT_PREFIX = "DEMO-VP-"
#: a plan covers this long; the next one is made before it ends
HORIZON_S = 15 * 60
RENEW_BEFORE_S = 4 * 60

_CITY_READY = text(
    "SELECT status FROM datasets WHERE kind = 'cityjson'"
    " AND (options->>'demo')::boolean ORDER BY id LIMIT 1")
_DEMO_ROADS = text(
    "SELECT code, ST_AsGeoJSON(geom) AS g FROM road_segments WHERE code LIKE 'DEMO-%'"
    " ORDER BY code")
_BUILDINGS_NEAR = text(
    "SELECT count(*) FROM city_objects WHERE footprint IS NOT NULL AND ST_DWithin("
    "footprint::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :r)")
_FLIGHTS = text(
    "SELECT r.id, r.drone_id, lower(r.time_window) AS t0, r.path->'times_s' AS times,"
    " ST_AsBinary(d.geom) AS wkb FROM network_reservations r"
    " JOIN drone_routes d ON d.id = r.route_id"
    " WHERE r.id = ANY(CAST(:ids AS bigint[])) AND r.status = 'held'")


async def city_state(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return (await conn.execute(_CITY_READY)).scalar()


async def _vertiports(engine: AsyncEngine, s: LowAltSettings, spots: list[tuple[float, float]]
                      ) -> list[Any]:
    """The demo vertiports, made where missing: at each wanted spot, or the nearest one
    around it with no building within 30 m whose climb the validation accepts."""
    fr = frame(s.metric_crs)
    async with engine.connect() as conn:
        have = {r.code: r for r in (await conn.execute(store.VERTIPORTS)).all()
                if (r.code or "").startswith(VERTIPORT_PREFIX)}
    for k, (x, y) in enumerate(spots, start=1):
        code = f"{VERTIPORT_PREFIX}{k}"
        if code in have:
            continue
        rings = [(0.0, 0.0)] + [(r * np.cos(a), r * np.sin(a)) for r in (25, 50, 75, 100)
                                for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
        for dx, dy in rings:
            lon, lat = fr.to_lonlat(np.array([x + dx]), np.array([y + dy]))
            lon, lat = float(lon[0]), float(lat[0])
            async with engine.begin() as conn:
                near = (await conn.execute(_BUILDINGS_NEAR,
                                           {"lon": lon, "lat": lat, "r": 30.0})).scalar()
                if near:
                    continue
                try:
                    await service.create_vertiport(conn, VertiportIn(
                        name=f"演示起降场 {k}（合成） synthetic demo vertiport {k}", code=code,
                        position=[lon, lat], capacity_per_hour=120), s, "demo")
                except TwinbaseError as e:
                    log.info("demo vertiport %s not at %.5f %.5f: %s", code, lon, lat, e.detail)
                    continue
            break
        else:
            log.warning("no spot for demo vertiport %s near %.0f %.0f", code, x, y)
    async with engine.connect() as conn:
        return [r for r in (await conn.execute(store.VERTIPORTS)).all()
                if (r.code or "").startswith(VERTIPORT_PREFIX)]


async def ensure_network(engine: AsyncEngine, s: LowAltSettings,
                         spots: list[tuple[float, float]],
                         extra: list[dict[str, Any]] = ()) -> list[Any]:
    """The demo vertiports on a current route network (generated over the demo roads and
    the ``extra`` GeoJSON line features when there is no network yet); the vertiports
    joined to it."""
    ports = await _vertiports(engine, s, spots)
    async with engine.connect() as conn:
        version = await service.current_version(conn)
    if version is None:
        async with engine.connect() as conn:
            roads = (await conn.execute(_DEMO_ROADS)).all()
        guides = {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"code": r.code}, "geometry": json.loads(r.g)}
            for r in roads] + list(extra)}
        async with engine.begin() as conn:
            out = await service.generate(conn, GenerateIn(
                guides=guides, note="demo district: corridors over its roads"), s, "demo")
        log.info("demo route network version %s: %s edges (%s dropped) in %.1f s",
                 out["version"], out["edges"], out["dropped"], out["total_s"])
    async with engine.connect() as conn:
        net = await service.load_network(conn, s)
    on = set(int(v) for v in net.node_vertiport if v >= 0)
    return [p for p in ports if p.id in on]


async def make_demo_plan(engine: AsyncEngine, s: LowAltSettings, ports: list[Any],
                         serials: list[str], start: datetime, seed: int) -> dict[str, Any]:
    """A plan of inspection tasks at the network's junctions, due through the horizon."""
    async with engine.connect() as conn:
        net = await service.load_network(conn, s)
    fr = frame(s.metric_crs)
    groups = net.vertiport_groups()
    main = max(set(groups.values()), key=list(groups.values()).count) if groups else None
    ports = [p for p in ports if groups.get(p.id) == main]
    # junctions that reach the vertiports (same strongly connected part, at ground level)
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(net.graph(), directed=True, connection="strong")
    lv = net.levels
    junctions = [i for i in range(len(net.node_ids)) if net.node_vertiport[i] < 0
                 and main is not None and labels[i * lv + lv - 1] == main]
    rng = np.random.default_rng(seed)
    n_tasks = min(len(junctions), 2 * len(serials)) if junctions else 0
    pick = rng.choice(junctions, size=n_tasks, replace=False) if n_tasks else []
    lon, lat = fr.to_lonlat(net.node_xy[pick, 0], net.node_xy[pick, 1]) if n_tasks \
        else (np.empty(0), np.empty(0))
    tasks = []
    for k in range(n_tasks):
        early = float(rng.uniform(0, HORIZON_S - 420))
        tasks.append({
            "id": f"demo-{seed}-{k + 1}", "kind": "inspection",
            "position": [float(lon[k]), float(lat[k])],
            "service_s": float(rng.choice([30, 45, 60])), "priority": int(rng.integers(1, 5)),
            "window": {"start": (start + timedelta(seconds=early)).isoformat(),
                       "end": (start + timedelta(seconds=early + 360)).isoformat()}})
    body = FleetPlanIn.model_validate({
        "start": start.isoformat(),
        "vertiports": [{"id": p.code, "position": [p.lon, p.lat], "swap_s": 60}
                       for p in ports],
        "drones": [{"id": sn, "home": ports[i % len(ports)].code, "endurance_min": 20,
                    "payload_kg": 2, "speed_ms": s.network_speed_ms,
                    "available_until": (start + timedelta(seconds=HORIZON_S)).isoformat()}
                   for i, sn in enumerate(serials)],
        "tasks": tasks, "time_limit_s": 2, "max_delay_s": 600})
    return await make_plan(engine, body, s, "demo")


async def plan_simulator(engine: AsyncEngine, plan: dict[str, Any]) -> PlanSimulator:
    """The reserved flights of a plan, ready to fly."""
    ids = [f["reservation_id"] for d in plan["drones"] for t in d["trips"]
           for f in t["flights"] if f.get("reservation_id") is not None
           and f["status"] in ("approved", "carried")]
    async with engine.connect() as conn:
        rows = (await conn.execute(_FLIGHTS, {"ids": ids})).all()
    flights = []
    for r in rows:
        ll = shapely.get_coordinates(shapely.from_wkb(r.wkb), include_z=True)
        flights.append(Flight(r.drone_id, r.t0, np.asarray(r.times, float), ll))
    return PlanSimulator(flights)


def plan_end(plan: dict[str, Any]) -> datetime:
    ends = [datetime.fromisoformat(t["arrival"]) for d in plan["drones"] for t in d["trips"]]
    start = datetime.fromisoformat(plan["start"])
    return max([start + timedelta(seconds=HORIZON_S), *ends])


def now() -> datetime:
    return datetime.now(UTC)
