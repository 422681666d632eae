"""Every SQL statement of the low-altitude service, as SQLAlchemy Core over ``tables``, and
the routes' rows read and written.

Statements the checks run on every validation, conflict search, plan and telemetry batch
are built once, here, with named bind parameters (upper-case names); the others are built
per call from their arguments. Values that select a partial index or that the text of a
query fixes (the live statuses, range bounds) are SQL constants, not parameters: the
planner can prove ``status IN ('approved', 'active')`` against the conflict index for a
prepared statement only when it reads the constants.
"""

from __future__ import annotations

import json
from typing import Any

import shapely
from sqlalchemy import (
    Boolean,
    DateTime,
    Insert,
    Interval,
    Select,
    Text,
    Update,
    any_,
    bindparam,
    cast,
    column,
    extract,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import (
    ARRAY,
    BIGINT,
    DOUBLE_PRECISION,
    JSONB,
    NUMERIC,
    aggregate_order_by,
    distinct_on,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from service.core.errors import Conflict, NotFound
from service.core.tables import datasets
from service.lowalt.geo import frame
from service.lowalt.schemas import RouteVolume, ZoneIn
from service.lowalt.settings import LowAltSettings
from service.lowalt.tables import (
    LIVE_STATUSES,
    airspace_zones,
    city_objects,
    drone_routes,
    drone_state,
    drone_state_seq,
    drone_telemetry,
    drones,
)
from service.terrain.tables import survey_terrain

SRID = 4326
TIMESTAMPTZ = DateTime(timezone=True)
# short names, as a query's aliases read
r, z, st, co = drone_routes, airspace_zones, drone_state, city_objects


def _const(value: str) -> ColumnElement[str]:
    """A string constant of this module written into the SQL."""
    if "'" in value:
        raise ValueError(f"not a SQL constant: {value!r}")
    return literal_column(f"'{value}'", Text)


def _geom(name: str) -> ColumnElement[Any]:
    """A WKB parameter (lon/lat) as a geometry."""
    return func.ST_GeomFromWKB(bindparam(name), SRID)


def _live(status: ColumnElement[str]) -> ColumnElement[bool]:
    return status.in_([_const(s) for s in LIVE_STATUSES])


# --- drones ---------------------------------------------------------------------------

_DRONE = (drones.c.id, drones.c.serial, drones.c.operator, drones.c["class"], drones.c.model,
          drones.c.max_speed_ms, drones.c.created_by, drones.c.created_at)


def new_drone(serial: str, operator: str, klass: str, model: str | None,
              max_speed_ms: float | None, by: str) -> Insert:
    return (insert(drones)
            .values({drones.c.serial: serial, drones.c.operator: operator,
                     drones.c["class"]: klass, drones.c.model: model,
                     drones.c.max_speed_ms: max_speed_ms, drones.c.created_by: by})
            .returning(*_DRONE))


def list_drones(limit: int) -> Select:
    return select(*_DRONE).order_by(drones.c.id).limit(limit)


def get_drone(drone_id: int) -> Select:
    return select(*_DRONE).where(drones.c.id == drone_id)


DRONE_CLASS = select(drones.c.id, drones.c.serial, drones.c["class"]).where(
    drones.c.id == bindparam("id"))
DRONE_CLASSES = select(drones.c.id, drones.c["class"].label("klass")).where(
    drones.c.id == any_(bindparam("ids")))

# --- airspace zones -------------------------------------------------------------------

_ZONE = (z.c.id, z.c.code, z.c.name, z.c.zone_type, z.c.floor_m, z.c.ceiling_m,
         z.c.height_reference, z.c.reason, z.c.authority, z.c.conditions,
         func.lower(z.c.valid).label("valid_from"), func.upper(z.c.valid).label("valid_to"),
         z.c.created_by, z.c.created_at, func.ST_AsGeoJSON(z.c.geom, 8).label("geometry"))


def new_zone(zone: ZoneIn, geom: shapely.MultiPolygon, by: str) -> Insert:
    return (insert(z)
            .values(code=zone.code, name=zone.name, zone_type=zone.zone_type,
                    geom=func.ST_GeomFromWKB(shapely.to_wkb(geom), SRID),
                    floor_m=zone.floor_m, ceiling_m=zone.ceiling_m,
                    height_reference=zone.height_reference,
                    valid=func.tstzrange(literal(zone.valid_from, TIMESTAMPTZ),
                                         literal(zone.valid_to, TIMESTAMPTZ), _const("[)")),
                    reason=zone.reason, authority=zone.authority, conditions=zone.conditions,
                    created_by=by)
            .returning(*_ZONE))


def list_zones(limit: int) -> Select:
    return select(*_ZONE).order_by(z.c.id).limit(limit)


def get_zone(zone_id: int) -> Select:
    return select(*_ZONE).where(z.c.id == zone_id)


# zones valid in [T0, T1) that meet AREA
ZONES_IN = select(
    z.c.id, z.c.code, z.c.name, z.c.zone_type, func.ST_AsBinary(z.c.geom).label("wkb"),
    z.c.floor_m, z.c.ceiling_m, z.c.height_reference,
).where(
    z.c.valid.overlaps(func.tstzrange(bindparam("t0"), bindparam("t1"), _const("[)"))),
    func.ST_Intersects(z.c.geom, _geom("area")),
)

# --- the city model -------------------------------------------------------------------

# A long diagonal corridor has a huge bounding box; cut into small pieces first, each piece's
# box finds only the buildings near it in the footprint index (far fewer rows to test on a
# long route: benchmarks/RESULTS.md)
PIECES = select(func.ST_Subdivide(_geom("area"), 16).label("g")).subquery("a")
_CURRENT_OF_TYPES = (co.c.valid_to.is_(None), co.c.type == any_(bindparam("types")))
_NEAR = PIECES.join(co, func.ST_Intersects(co.c.footprint, PIECES.c.g))

# current city objects of TYPES whose footprint meets AREA, each once
OBSTACLES = (
    select(co.c.id, co.c.object_id, co.c.type, func.ST_AsBinary(co.c.footprint).label("wkb"),
           func.coalesce(co.c.min_z, func.ST_ZMin(co.c.geom)).label("min_z"),
           func.coalesce(co.c.max_z, func.ST_ZMax(co.c.geom), co.c.min_z + co.c.height)
           .label("max_z"))
    .ext(distinct_on(co.c.id)).select_from(_NEAR).where(*_CURRENT_OF_TYPES).order_by(co.c.id)
)

_BASES = (
    select(func.ST_PointOnSurface(co.c.footprint).label("p"),
           func.coalesce(co.c.min_z, func.ST_ZMin(co.c.geom)).label("z"))
    .ext(distinct_on(co.c.id)).select_from(_NEAR).where(*_CURRENT_OF_TYPES).order_by(co.c.id)
    .subquery("s")
)
# where current city objects of TYPES near AREA stand: a point on the footprint and its
# lowest height
GROUND_POINTS = select(func.ST_X(_BASES.c.p).label("lon"), func.ST_Y(_BASES.c.p).label("lat"),
                       _BASES.c.z).where(_BASES.c.z.is_not(None))

# LiDAR surveys whose footprint meets AREA, with their lowest point
SURVEYS = select(
    func.ST_AsBinary(datasets.c.footprint).label("wkb"),
    cast(datasets.c.bounds3d["min"][2].astext, DOUBLE_PRECISION).label("z"),
).where(
    datasets.c.kind == _const("lidar"), datasets.c.status == _const("ready"),
    datasets.c.footprint.is_not(None), datasets.c.bounds3d.is_not(None),
    func.ST_Intersects(datasets.c.footprint, _geom("area")),
)

# changes whenever city objects are added or superseded (both indexed look-ups)
CITY_MODEL_VERSION = select(
    select(func.max(co.c.id)).scalar_subquery().label("last_id"),
    select(func.max(co.c.valid_from)).scalar_subquery().label("last_change"),
)

# --- routes ---------------------------------------------------------------------------

_WINDOW = (func.lower(r.c.time_window).label("t0"), func.upper(r.c.time_window).label("t1"))

# approved and active routes other than SELF whose window meets [T0, T1), altitude band
# meets [LO, HI] and corridor meets AREA: one scan of the partial GiST index
CONFLICT_CANDIDATES = select(
    r.c.id, r.c.drone_id, r.c.name, r.c.status, r.c.priority, r.c.half_width_m,
    r.c.vertical_half_m, func.ST_AsBinary(r.c.geom).label("wkb"), *_WINDOW,
).where(
    _live(r.c.status), r.c.id != bindparam("self"),
    r.c.time_window.overlaps(func.tstzrange(bindparam("t0"), bindparam("t1"), _const("[)"))),
    r.c.alt_band.overlaps(func.numrange(bindparam("lo"), bindparam("hi"), _const("[]"))),
    func.ST_Intersects(r.c.corridor, _geom("area")),
)

_ROUTE = (
    r.c.id, r.c.name, r.c.drone_id, r.c.status, r.c.priority, r.c.half_width_m,
    r.c.vertical_half_m,
    cast(func.lower(r.c.alt_band), DOUBLE_PRECISION).label("alt_lower_m"),
    cast(func.upper(r.c.alt_band), DOUBLE_PRECISION).label("alt_upper_m"),
    func.lower(r.c.time_window).label("start_time"),
    func.upper(r.c.time_window).label("end_time"), r.c.length_m, r.c.verdict, r.c.validation,
    r.c.city_model_version, r.c.validated_at, r.c.authorisation, r.c.approved_by,
    r.c.approved_at, r.c.created_by, r.c.created_at, r.c.updated_at,
    func.ST_AsGeoJSON(r.c.geom, 8).label("geometry"),
    func.ST_AsGeoJSON(r.c.corridor, 8).label("corridor"),
)


def _json(result: dict[str, Any]) -> ColumnElement[Any]:
    # datetimes and numpy numbers in a check's result are written as text
    return cast(literal(json.dumps(result, default=str), Text), JSONB)


def _checked(result: dict[str, Any]) -> dict[str, Any]:
    """A route's validation columns from a check's result."""
    return {"verdict": result["verdict"], "validation": _json(result),
            "city_model_version": result["checked"].get("city_model_version"),
            "validated_at": func.now()}


def _volume(route: RouteVolume) -> dict[str, Any]:
    lo, hi = route.alt_band
    return {
        "geom": func.ST_GeomFromWKB(shapely.to_wkb(shapely.LineString(route.lonlatz),
                                                   output_dimension=3), SRID),
        "corridor": func.ST_GeomFromWKB(shapely.to_wkb(route.corridor_ll), SRID),
        "half_width_m": route.half_width, "vertical_half_m": route.vertical_half,
        # through float8 as the bounds were always written: numeric of a float8 keeps its
        # 15 significant digits
        "alt_band": func.numrange(cast(literal(lo, DOUBLE_PRECISION), NUMERIC),
                                  cast(literal(hi, DOUBLE_PRECISION), NUMERIC), _const("[]")),
        "time_window": func.tstzrange(literal(route.start, TIMESTAMPTZ),
                                      literal(route.end, TIMESTAMPTZ), _const("[)")),
        "length_m": route.length_m,
    }


def new_route(route: RouteVolume, drone_id: int, name: str | None, result: dict[str, Any],
              by: str) -> Insert:
    return (insert(r)
            .values(name=name, drone_id=drone_id, priority=route.priority, created_by=by,
                    **_volume(route), **_checked(result))
            .returning(r.c.id))


def changed_route(route_id: int, route: RouteVolume, drone_id: int, name: str | None,
                  result: dict[str, Any]) -> Update:
    """The route's new volume and validation; back to planned, approval cleared."""
    return (update(r).where(r.c.id == route_id)
            .values(name=name, drone_id=drone_id, priority=route.priority, **_volume(route),
                    **_checked(result), status="planned", approved_by=None, approved_at=None,
                    authorisation=None, updated_at=func.now()))


def approved(route_id: int, by: str, authorisation: str | None, result: dict[str, Any]
             ) -> Update:
    return (update(r).where(r.c.id == route_id)
            .values(status="approved", approved_by=by, approved_at=func.now(),
                    authorisation=authorisation, updated_at=func.now(), **_checked(result)))


def new_status(route_id: int, status: str) -> Update:
    return (update(r).where(r.c.id == route_id)
            .values(status=status, updated_at=func.now()))


def status_for_update(route_id: int) -> Select:
    return select(r.c.status).where(r.c.id == route_id).with_for_update()


def volume_row(route_id: int, for_update: bool = False) -> Select:
    stmt = select(
        r.c.id, r.c.drone_id, r.c.status, r.c.verdict, r.c.priority, r.c.half_width_m,
        r.c.vertical_half_m, func.ST_AsBinary(r.c.geom).label("wkb"),
        func.ST_AsBinary(r.c.corridor).label("corridor_wkb"), *_WINDOW,
    ).where(r.c.id == route_id)
    return stmt.with_for_update() if for_update else stmt


def route_rows(status: str | None = None, drone_id: int | None = None,
               limit: int | None = None, route_id: int | None = None) -> Select:
    """Routes as GeoJSON columns, newest first."""
    stmt = select(*_ROUTE)
    if route_id is not None:
        stmt = stmt.where(r.c.id == route_id)
    if status is not None:
        stmt = stmt.where(r.c.status == status)
    if drone_id is not None:
        stmt = stmt.where(r.c.drone_id == drone_id)
    return stmt.order_by(r.c.id.desc()).limit(limit)


async def insert_route(conn: AsyncConnection, route: RouteVolume, drone_id: int,
                       name: str | None, result: dict[str, Any], by: str) -> int:
    return (await conn.execute(new_route(route, drone_id, name, result, by))).scalar_one()


async def update_route(conn: AsyncConnection, route_id: int, route: RouteVolume,
                       drone_id: int, name: str | None, result: dict[str, Any]) -> None:
    row = (await conn.execute(status_for_update(route_id))).first()
    if row is None:
        raise NotFound(f"no drone route {route_id}")
    if row.status in ("active", "retired"):
        raise Conflict(f"route {route_id} is {row.status}: suspend it before changing it",
                       route_status=row.status)
    await conn.execute(changed_route(route_id, route, drone_id, name, result))


def route_feature(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    geometry = json.loads(m.pop("geometry"))
    corridor = json.loads(m.pop("corridor"))
    rid = m.pop("id")
    return {"type": "Feature", "id": rid, "geometry": geometry,
            "properties": {**m, "corridor": corridor},
            "links": [{"rel": "self", "href": f"/drone-routes/{rid}"},
                      {"rel": "conflicts", "href": f"/drone-routes/{rid}/conflicts"}]}


async def get_route(conn: AsyncConnection, route_id: int) -> dict[str, Any]:
    row = (await conn.execute(route_rows(route_id=route_id))).first()
    if row is None:
        raise NotFound(f"no drone route {route_id}")
    return route_feature(row)


async def list_routes(conn: AsyncConnection, status: str | None, drone_id: int | None,
                      limit: int) -> list[dict[str, Any]]:
    rows = (await conn.execute(route_rows(status, drone_id, limit))).all()
    return [route_feature(row) for row in rows]


def volume_of_row(row: Any, s: LowAltSettings) -> RouteVolume:
    """The stored volume of a route (its corridor is rebuilt from the stored polygon)."""
    fr = frame(s.metric_crs)
    ll = shapely.get_coordinates(shapely.from_wkb(row.wkb), include_z=True)
    return RouteVolume(ll, fr.xyz(ll), row.half_width_m, row.vertical_half_m,
                       fr.geom_to_metric(shapely.from_wkb(row.corridor_wkb)), row.t0, row.t1,
                       row.priority, fr)


async def load_volume(conn: AsyncConnection, route_id: int, s: LowAltSettings,
                      for_update: bool = False) -> tuple[Any, RouteVolume]:
    row = (await conn.execute(volume_row(route_id, for_update))).first()
    if row is None:
        raise NotFound(f"no drone route {route_id}")
    return row, volume_of_row(row, s)


# --- approval locks -------------------------------------------------------------------

_KEY = func.unnest(bindparam("keys", type_=ARRAY(BIGINT))).column_valued("k")
# one transaction-scoped advisory lock per key of KEYS, in the order given (void is not a
# type the driver reads: the lock's result comes back as text)
LOCK_KEYS = select(_KEY, cast(func.pg_advisory_xact_lock(_KEY), Text).label("held"))

# --- telemetry and live state ---------------------------------------------------------


_REPORTED = ("speed_ms", "track_deg", "battery_pct", "route_id", "flags")

# one array per column, one element per report (FLAGS: each report's flags joined by
# commas; NEWEST: true for the report that becomes its drone's state)
_ARRAYS = {"drone_id": BIGINT, "t": TIMESTAMPTZ, "lon": DOUBLE_PRECISION,
           "lat": DOUBLE_PRECISION, "h": DOUBLE_PRECISION, "speed_ms": DOUBLE_PRECISION,
           "track_deg": DOUBLE_PRECISION, "battery_pct": DOUBLE_PRECISION,
           "route_id": BIGINT, "flags": Text(), "height_agl_m": DOUBLE_PRECISION,
           "ground_source": Text(), "newest": Boolean()}
_rep = select(func.unnest(*(bindparam(k, type_=ARRAY(t)) for k, t in _ARRAYS.items()))
              .table_valued(*(column(k, t) for k, t in _ARRAYS.items()))
              .render_derived(name="u")).cte("reports")
_point = func.ST_SetSRID(func.ST_MakePoint(_rep.c.lon, _rep.c.lat, _rep.c.h), SRID)
_values = {"drone_id": _rep.c.drone_id, "t": _rep.c.t, "geom": _point,
           **{k: _rep.c[k] for k in _REPORTED if k != "flags"},
           "flags": func.string_to_array(_rep.c.flags, _const(","))}

_telemetry = pg_insert(drone_telemetry).from_select(
    list(_values), select(*_values.values()).where(literal_column("true")))
_telemetry = _telemetry.on_conflict_do_update(
    index_elements=[drone_telemetry.c.drone_id, drone_telemetry.c.t],
    set_={"geom": _telemetry.excluded.geom, **{k: _telemetry.excluded[k] for k in _REPORTED},
          "received_at": func.now()},
)
_state_values = {**_values, "height_agl_m": _rep.c.height_agl_m,
                 "ground_source": _rep.c.ground_source}
_state = pg_insert(drone_state).from_select(
    list(_state_values), select(*_state_values.values()).where(_rep.c.newest))
# A whole batch in one statement (one round trip), from arrays: every report into the
# telemetry (a report sent again, same drone and time, replaces the earlier one: the batch
# holds each drone and time once), and the newest report of each drone (once per drone) as
# its state, with AHEAD an interval: the newest report becomes the drone's state, and so
# does any report when the stored one is stamped more than AHEAD after now (the clock bound)
RECORD_REPORTS = _state.on_conflict_do_update(
    index_elements=[drone_state.c.drone_id],
    set_={"t": _state.excluded.t, "geom": _state.excluded.geom,
          **{k: _state.excluded[k] for k in _REPORTED},
          "height_agl_m": _state.excluded.height_agl_m,
          "ground_source": _state.excluded.ground_source, "received_at": func.now(),
          "seq": drone_state_seq.next_value()},
    where=or_(drone_state.c.t <= _state.excluded.t,
              drone_state.c.t > func.now() + bindparam("ahead", type_=Interval)),
).add_cte(_telemetry.cte("telemetry"))

# what a telemetry batch needs to know first, in one round trip: each known drone of IDS
# with its class and the identity of its live routes (id:status@updated_at, in id order:
# it changes when a route is filed, approved, activated, revised or ended), and what the
# ground model is made of (city objects added or superseded, datasets added, changed or
# removed, DTMs stored)
_route_ids = (select(func.array_agg(aggregate_order_by(
    cast(r.c.id, Text) + _const(":") + r.c.status + _const("@")
    + cast(r.c.updated_at, Text), r.c.id)))
    .where(r.c.drone_id == drones.c.id, _live(r.c.status)).scalar_subquery())
TELEMETRY_CONTEXT = select(
    drones.c.id, drones.c["class"].label("klass"), _route_ids.label("routes"),
    select(func.max(co.c.id)).scalar_subquery().label("co_last_id"),
    select(func.max(co.c.valid_from)).scalar_subquery().label("co_last_change"),
    select(func.count()).select_from(datasets).scalar_subquery().label("datasets"),
    select(func.max(datasets.c.updated_at)).scalar_subquery().label("datasets_changed"),
    select(func.count()).select_from(survey_terrain).scalar_subquery().label("dtms"),
    select(func.max(survey_terrain.c.stored_at)).scalar_subquery().label("dtms_stored"),
).where(drones.c.id == any_(bindparam("ids")))

# every live route (approved or active) of drones IDS, whatever its window
LIVE_ROUTES_OF = select(
    r.c.id, r.c.drone_id, r.c.status, r.c.half_width_m, r.c.vertical_half_m,
    func.ST_AsBinary(r.c.geom).label("wkb"), func.ST_AsBinary(r.c.corridor).label("corridor_wkb"),
    r.c.authorisation, *_WINDOW,
).where(r.c.drone_id == any_(bindparam("ids")), _live(r.c.status))

_STATES = select(
    st.c.drone_id, drones.c.serial, drones.c.operator, drones.c["class"].label("drone_class"),
    st.c.t, st.c.speed_ms, st.c.track_deg, st.c.battery_pct, st.c.route_id, st.c.flags,
    st.c.height_agl_m, st.c.ground_source, st.c.received_at, st.c.seq,
    func.ST_X(st.c.geom).label("lon"), func.ST_Y(st.c.geom).label("lat"),
    func.ST_Z(st.c.geom).label("h"),
    cast(extract("epoch", func.now() - st.c.received_at), DOUBLE_PRECISION).label("age_s"),
).select_from(st.join(drones, drones.c.id == st.c.drone_id))

ALL_STATES = _STATES.order_by(st.c.drone_id)
# the next changes after SEQ, in order
STATES_SINCE = _STATES.where(st.c.seq > bindparam("seq")).order_by(st.c.seq).limit(1000)
# the seqs in (LO, HI], alone (an index-only read), and the states of seqs SEQS: the live
# feed's look back for reports committed after a later one
SEQS_BETWEEN = select(st.c.seq).where(st.c.seq > bindparam("lo"), st.c.seq <= bindparam("hi"))
STATES_OF_SEQS = _STATES.where(st.c.seq == any_(bindparam("seqs", type_=ARRAY(BIGINT)))
                               ).order_by(st.c.seq)
# drones with no report for SILENT (an interval)
SILENT_STATES = _STATES.where(st.c.received_at < func.now() - bindparam("silent",
                                                                        type_=Interval))
LAST_SEQ = select(func.coalesce(func.max(st.c.seq), 0))
