"""Vertiports, the route network (generate, edit, history), reservations on it, and
travel times over it."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from service.core.auth import READ_ROLES, Principal, Reader, Writer, require
from service.core.errors import NotFound
from service.core.ids import Id
from service.lowalt.network import reserve, service, store
from service.lowalt.network.schemas import (
    AddEdgeIn,
    CloseEdgeIn,
    FlightIn,
    GenerateIn,
    TravelTimesIn,
    VertiportIn,
)
from service.lowalt.settings import LowAltSettings, lowalt_settings

router = APIRouter(prefix="/airspace", tags=["low altitude"])
Planner = Annotated[Principal, Depends(require(frozenset({"planner", "admin"}),
                                               "planning the route network"))]
Settings = Annotated[LowAltSettings, Depends(lowalt_settings)]
# a POST answers reads here, but every POST takes a key
AnyKey = Annotated[Principal, Depends(require(READ_ROLES, "asking for travel times"))]

_LAYERS = ("Layers by heading (clockwise from grid north): sector floor(((heading + 45) mod "
           "360) / 90), 0 north, 1 east, 2 south, 3 west bound, flown at network_base_agl_m "
           "+ sector x network_layer_step_m above the ground (30, 55, 80, 105 m by default). "
           "Capacity per hour of an edge: floor(3600 / ((separation_h_m + 2 x half_width_m) "
           "/ speed_ms + buffer_s)).")


@router.post("/vertiports", status_code=201,
             summary="Add a vertiport or landing point (its climb to the flight layers is "
                     "validated; one in a prohibited zone is refused with the reason)",
             responses={422: {"description": "refused: a prohibited zone or a building's "
                                             "clearance on its climb (violations), or a "
                                             "bad position; nothing was stored"}})
async def create_vertiport(body: VertiportIn, request: Request, who: Planner, s: Settings
                           ) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        out = await service.create_vertiport(conn, body, s, who.name)
    request.state.audit_detail = {"vertiport": out["id"]}
    return out


@router.get("/vertiports", summary="Vertiports as GeoJSON")
async def list_vertiports(request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(store.VERTIPORTS)).all()
    feats = [service.vertiport_feature(r) for r in rows]
    return {"type": "FeatureCollection", "features": feats, "numberReturned": len(feats)}


@router.post("/network/generate", status_code=201,
             summary="Generate the route network from a guide layer, the city model, zones "
                     "and the ground: a new version",
             description="Corridors along the guides (road centre lines of the traffic "
                         "layer, or a GeoJSON line layer such as roads and rivers) between "
                         "junctions and vertiports, both ways. Every edge is validated like "
                         "a filed route (buildings with clearance, zones, 120 m above "
                         "ground); the ones that fail are dropped, listed with the reason in "
                         "`dropped_edges`. " + _LAYERS)
async def generate(body: GenerateIn, request: Request, who: Planner, s: Settings
                   ) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        out = await service.generate(conn, body, s, who.name)
    request.state.audit_detail = {"network_version": out["version"], "edges": out["edges"]}
    return out


@router.get("/network", summary="The current network version and its figures")
async def current(request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        rows = await service.versions(conn, 1)
        counts = (await conn.execute(store.EDGE_COUNTS)).one()
    if not rows:
        raise NotFound("no route network yet: POST /airspace/network/generate")
    return {"version": rows[0], "current_edges": counts.current, "all_edges": counts.all,
            "links": [{"rel": "items", "href": "/collections/route_network/items"}]}


@router.get("/network/versions", summary="The network's history, newest first")
async def versions(request: Request, _: Reader, limit: int = Query(100, ge=1, le=1000)
                   ) -> list[dict[str, Any]]:
    async with request.app.state.engine.connect() as conn:
        return await service.versions(conn, limit)


@router.post("/network/edges", status_code=201,
             summary="Add a corridor between two nodes (validated; a new version)",
             responses={422: {"description": "the corridor fails validation or crosses a "
                                             "corridor of its layer away from a node"}})
async def add_edge(body: AddEdgeIn, request: Request, who: Planner, s: Settings
                   ) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        out = await service.add_edge(conn, body, s, who.name)
    request.state.audit_detail = {"network_version": out["version"], "added": out["added"]}
    return out


@router.post("/network/edges/{edge_id}/close",
             summary="Close a corridor (a new version); refused if it disconnects a "
                     "vertiport unless allow_disconnect",
             responses={409: {"description": "the edit disconnects vertiports (listed in "
                                             "`disconnected`), or the edge is closed"}})
async def close_edge(edge_id: Id, body: CloseEdgeIn, request: Request, who: Planner,
                     s: Settings) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        out = await service.close_edge(conn, edge_id, body, s, who.name)
    request.state.audit_detail = {"network_version": out["version"], "closed": out["closed"]}
    return out


@router.post("/network/flights", status_code=201,
             summary="Approve a flight between two vertiports on the network: its "
                     "(edge, time) slots are reserved, atomically",
             responses={409: {"description": "no free slot on the path (within "
                                             "max_delay_s), a zone or an off-network flight "
                                             "in the way, or the drone is busy then"}})
async def reserve_flight(body: FlightIn, request: Request, who: Writer, s: Settings
                         ) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        out = await reserve.reserve_flight(conn, body, s, who.name)
    request.state.audit_detail = {"reservation": out["reservation_id"]}
    return out


@router.get("/network/flights/{reservation_id}", summary="One reservation with its slots")
async def get_flight(reservation_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        return await reserve.get_reservation(conn, reservation_id)


@router.post("/network/flights/{reservation_id}/cancel",
             summary="Cancel a reservation: its slots are freed, its route retired")
async def cancel_flight(reservation_id: Id, request: Request, _: Writer) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        out = await reserve.cancel(conn, reservation_id)
    request.state.audit_detail = {"reservation": reservation_id, "cancelled": True}
    return out


@router.post("/network/travel-times",
             summary="Seconds between every pair of positions over the current network")
async def travel_times(body: TravelTimesIn, request: Request, _: AnyKey, s: Settings
                       ) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        out = await service.travel_time_matrix(conn, body.positions, s)
    sec = np.round(out["seconds"], 1)
    return {"version": out["version"],
            "seconds": [[None if not np.isfinite(x) else float(x) for x in row]
                        for row in sec],
            "nodes": out["nodes"].tolist(), "access_m": np.round(out["access_m"], 1).tolist()}
