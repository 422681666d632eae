"""Drones and airspace zones."""

from __future__ import annotations

import json
from typing import Annotated, Any

import shapely
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import exc

from service.core.auth import ADMIN_ROLES, Principal, Reader, Writer, require
from service.core.errors import Conflict, NotFound, Unprocessable
from service.core.ids import Id
from service.lowalt import store
from service.lowalt.schemas import DroneIn, ZoneIn, aware, polygon_from

router = APIRouter(tags=["low altitude"])
Authority = Annotated[Principal, Depends(require(ADMIN_ROLES, "defining airspace zones"))]


def _drone(row: Any) -> dict[str, Any]:
    return {**dict(row._mapping), "links": [{"rel": "self", "href": f"/drones/{row.id}"}]}


def zone_feature(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    geometry = json.loads(m.pop("geometry"))
    return {"type": "Feature", "id": m["id"], "geometry": geometry, "properties": m}


@router.post("/drones", status_code=201, summary="Register a drone")
async def create_drone(body: DroneIn, request: Request, who: Writer) -> dict[str, Any]:
    try:
        async with request.app.state.engine.begin() as conn:
            row = (await conn.execute(store.new_drone(
                body.serial, body.operator, body.drone_class, body.model, body.max_speed_ms,
                who.name))).one()
    except exc.IntegrityError as e:
        raise Conflict(f"a drone with serial {body.serial!r} is registered already") from e
    request.state.audit_detail = {"drone": row.id, "serial": body.serial}
    return _drone(row)


@router.get("/drones", summary="Registered drones")
async def list_drones(request: Request, _: Reader,
                      limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(store.list_drones(limit))).all()
    return [_drone(r) for r in rows]


@router.get("/drones/{drone_id}", summary="One drone")
async def get_drone(drone_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(store.get_drone(drone_id))).first()
    if row is None:
        raise NotFound(f"no drone {drone_id}")
    return _drone(row)


@router.post("/airspace-zones", status_code=201,
             summary="Define an airspace zone (prohibited, needs authorisation, conditional)")
async def create_zone(body: ZoneIn, request: Request, who: Authority) -> dict[str, Any]:
    geom = polygon_from(body.geometry, "zone geometry")
    if isinstance(geom, shapely.Polygon):
        geom = shapely.MultiPolygon([geom])
    if body.floor_m >= body.ceiling_m:
        raise Unprocessable(f"floor {body.floor_m:g} m is not below ceiling {body.ceiling_m:g} m")
    for t, what in ((body.valid_from, "valid_from"), (body.valid_to, "valid_to")):
        if t is not None:
            aware(t, what)
    if body.valid_from and body.valid_to and body.valid_to <= body.valid_from:
        raise Unprocessable("valid_to is not after valid_from")
    try:
        async with request.app.state.engine.begin() as conn:
            row = (await conn.execute(store.new_zone(body, geom, who.name))).one()
    except exc.IntegrityError as e:
        raise Conflict(f"a zone with code {body.code!r} exists already") from e
    request.state.audit_detail = {"zone": row.id, "type": body.zone_type}
    return zone_feature(row)


@router.get("/airspace-zones", summary="Airspace zones as GeoJSON")
async def list_zones(request: Request, _: Reader,
                     limit: int = Query(1000, ge=1, le=10_000)) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(store.list_zones(limit))).all()
    feats = [zone_feature(r) for r in rows]
    return {"type": "FeatureCollection", "features": feats, "numberReturned": len(feats)}


@router.get("/airspace-zones/{zone_id}", summary="One airspace zone")
async def get_zone(zone_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(store.get_zone(zone_id))).first()
    if row is None:
        raise NotFound(f"no airspace zone {zone_id}")
    return zone_feature(row)
