"""SQL of the route network, vertiports and reservations (SQLAlchemy Core over ``tables``)."""

from __future__ import annotations

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
    union,
)
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT

from service.lowalt.store import CONFLICT_CANDIDATES
from service.lowalt.tables import (
    drone_routes,
    network_edges,
    network_nodes,
    network_reservations,
    network_slots,
    network_versions,
    road_segments,
    vertiports,
)

SRID = 4326
e, n, v, vp = network_edges, network_nodes, network_versions, vertiports
sl, rs = network_slots, network_reservations

# one transaction at a time changes the network (a generation or an edit)
NETWORK_LOCK = select(cast(func.pg_advisory_xact_lock(0x4C414E4554), Text))

CURRENT_VERSION = select(func.max(v.c.id))

_VERTIPORT = (vp.c.id, vp.c.code, vp.c.name, vp.c.pad_m, vp.c.capacity_per_hour,
              vp.c.validation, vp.c.created_by, vp.c.created_at,
              func.ST_X(vp.c.geom).label("lon"), func.ST_Y(vp.c.geom).label("lat"))
VERTIPORTS = select(*_VERTIPORT).order_by(vp.c.id)

CURRENT_EDGES = select(
    e.c.id, e.c.from_node, e.c.to_node, e.c.layer, e.c.layer_agl_m, e.c.length_m,
    e.c.speed_ms, e.c.capacity_per_hour, e.c.heading_deg,
    func.ST_AsBinary(e.c.geom).label("wkb"),
).where(e.c.version_to.is_(None)).order_by(e.c.id)

_USED = union(select(e.c.from_node.label("id")).where(e.c.version_to.is_(None)),
              select(e.c.to_node.label("id")).where(e.c.version_to.is_(None))).subquery("u")
CURRENT_NODES = select(
    n.c.id, n.c.kind, n.c.vertiport_id, n.c.ground_m,
    func.ST_X(n.c.geom).label("lon"), func.ST_Y(n.c.geom).label("lat"),
).where(n.c.id.in_(select(_USED.c.id))).order_by(n.c.id)

NODE = select(n.c.id, n.c.kind, n.c.vertiport_id, n.c.ground_m,
              func.ST_X(n.c.geom).label("lon"), func.ST_Y(n.c.geom).label("lat")
              ).where(n.c.id == bindparam("id"))

EDGE_FOR_UPDATE = select(e.c.id, e.c.from_node, e.c.to_node, e.c.version_to).where(
    e.c.id == bindparam("id")).with_for_update()

TWINS = select(e.c.id).where(e.c.from_node == bindparam("u"), e.c.to_node == bindparam("v"),
                             e.c.version_to.is_(None))

ROADS = select(road_segments.c.code, road_segments.c.id, road_segments.c.road_class,
               func.ST_AsBinary(road_segments.c.geom).label("wkb"))

NEW_VERSION = v.insert().returning(v.c.id, v.c.created_at)

NEW_NODE = n.insert().values(
    version_id=bindparam("version_id"), kind=bindparam("kind"),
    vertiport_id=bindparam("vertiport_id"),
    geom=func.ST_SetSRID(func.ST_MakePoint(bindparam("lon"), bindparam("lat")), SRID),
    ground_m=bindparam("ground_m"),
).returning(n.c.id, sort_by_parameter_order=True)

NEW_EDGE = e.insert().values(
    from_node=bindparam("from_node"), to_node=bindparam("to_node"),
    geom=func.ST_GeomFromWKB(bindparam("wkb"), SRID), heading_deg=bindparam("heading_deg"),
    layer=bindparam("layer"), layer_agl_m=bindparam("layer_agl_m"),
    half_width_m=bindparam("half_width_m"), vertical_half_m=bindparam("vertical_half_m"),
    length_m=bindparam("length_m"), speed_ms=bindparam("speed_ms"),
    capacity_per_hour=bindparam("capacity_per_hour"), source=bindparam("source"),
    guide=bindparam("guide"), verdict=bindparam("verdict"),
    validation=bindparam("validation"), version_from=bindparam("version_from"),
)

CLOSE_ALL = e.update().where(e.c.version_to.is_(None)).values(
    version_to=bindparam("version"), valid_to=func.now(),
    closed_reason=bindparam("reason"))

CLOSE_EDGES = e.update().where(e.c.id == func.any(bindparam("ids", type_=ARRAY(BIGINT))),
                               e.c.version_to.is_(None)).values(
    version_to=bindparam("version"), valid_to=func.now(), closed_reason=bindparam("reason"))

VERSIONS = select(v.c.id, v.c.parent_id, v.c.change, v.c.note, v.c.params, v.c.stats,
                  v.c.flags, v.c.city_model_version, v.c.created_by, v.c.created_at)

EDGE_COUNTS = select(
    select(func.count()).select_from(e).where(e.c.version_to.is_(None))
    .scalar_subquery().label("current"),
    select(func.count()).select_from(e).scalar_subquery().label("all"))

# current edges whose 2D centre line meets LINE (lon/lat WKB) other than at their ends
CROSSED = select(e.c.id, e.c.layer, e.c.from_node, e.c.to_node).where(
    e.c.version_to.is_(None),
    func.ST_Intersects(func.ST_Force2D(e.c.geom), func.ST_GeomFromWKB(bindparam("line"), SRID)))

# --- reservations ---------------------------------------------------------------------

_KEYS = select(
    func.unnest(bindparam("kinds", type_=ARRAY(Text))).label("k"),
    func.unnest(bindparam("refs", type_=ARRAY(BIGINT))).label("r"),
).subquery("keys")
# slots held on any of the resources (KINDS[i], REFS[i]) that meet [T0, T1)
SLOTS_ON = select(sl.c.kind, sl.c.ref_id, func.lower(sl.c.during).label("a"),
                  func.upper(sl.c.during).label("b")).select_from(
    sl.join(_KEYS, and_(cast(sl.c.kind, Text) == _KEYS.c.k, sl.c.ref_id == _KEYS.c.r))
).where(sl.c.during.overlaps(func.tstzrange(bindparam("t0"), bindparam("t1"),
                                            literal_column("'[)'"))))

NEW_SLOTS = sl.insert().values(
    reservation_id=bindparam("reservation_id"), kind=bindparam("kind"),
    ref_id=bindparam("ref_id"),
    during=func.tstzrange(bindparam("a"), bindparam("b"), literal_column("'[)'")))

RESERVATION = select(rs.c.id, rs.c.route_id, rs.c.drone_id, rs.c.version_id, rs.c.status,
                     func.lower(rs.c.time_window).label("start_time"),
                     func.upper(rs.c.time_window).label("end_time"), rs.c.path,
                     rs.c.created_by, rs.c.created_at, rs.c.cancelled_at
                     ).where(rs.c.id == bindparam("id"))

SLOT_ROWS = select(sl.c.kind, sl.c.ref_id, func.lower(sl.c.during).label("a"),
                   func.upper(sl.c.during).label("b")).where(
    sl.c.reservation_id == bindparam("id")).order_by(func.lower(sl.c.during))

# approved and active flights off the network that could conflict (the partial index over
# off-network flights: on-network ones are the reservations' business)
OFFNET_CANDIDATES = CONFLICT_CANDIDATES.where(drone_routes.c.on_network.is_(False))

# Approval in two statements (each a round trip; the rest of the work is in the process).
# BEFORE: the current version, the drone's class, shared locks on the airspace cells
# (off-network approvals take them exclusively; taken before RESERVE's snapshot, which reads
# the off-network flights), whether a zone is active near the path then, and the slots held
# on the path's resources (their bounds in epoch seconds).
BEFORE = text("""
SELECT (SELECT max(id) FROM network_versions) AS version,
       (SELECT class FROM drones WHERE id = :drone) AS klass,
       (SELECT count(pg_advisory_xact_lock_shared(k))
          FROM unnest(CAST(:cells AS bigint[])) AS k) AS cells,
       EXISTS (SELECT 1 FROM airspace_zones z
                WHERE z.valid && tstzrange(:z0, :z1, '[)')
                  AND ST_Intersects(z.geom, ST_GeomFromWKB(:area, 4326))) AS zones,
       (SELECT json_agg(json_build_array(s.kind, s.ref_id, extract(epoch FROM lower(s.during)),
                                         extract(epoch FROM upper(s.during))))
          FROM unnest(CAST(:kinds AS varchar[]), CAST(:refs AS bigint[])) AS q(k, r)
          JOIN network_slots s ON s.kind = q.k AND s.ref_id = q.r
         WHERE s.during && tstzrange(:t0, :t1, '[)')) AS held
""")

# RESERVE: the approved route, the reservation and its slots in one statement. A slot taken
# meanwhile (the exclusion constraint; a racer's uncommitted one is waited for) or a live
# route of the drone in the window is skipped, not an error, so the caller's transaction
# lives on: fewer slots than asked (or no route) is a refusal, and UNDO takes the rows back.
# Also the ids of approved off-network flights near the path then (the partial index over
# those only), read after BEFORE's locks.
RESERVE = text("""
WITH route AS (
  INSERT INTO drone_routes (name, drone_id, priority, created_by, geom, corridor, half_width_m,
                            vertical_half_m, alt_band, time_window, length_m, verdict,
                            validation, validated_at, status, approved_by, approved_at,
                            on_network)
  VALUES (:name, :drone, :priority, :by, ST_GeomFromWKB(:geom, 4326),
          ST_GeomFromWKB(:corridor, 4326), :hw, :vh,
          numrange(CAST(CAST(:lo AS float8) AS numeric), CAST(CAST(:hi AS float8) AS numeric),
                   '[]'),
          tstzrange(:dep, :arr, '[)'), :length, 'accepted', CAST(:validation AS jsonb), now(),
          'approved', :by, now(), true)
  ON CONFLICT DO NOTHING
  RETURNING id),
res AS (
  INSERT INTO network_reservations (route_id, drone_id, version_id, status, created_by, path,
                                    time_window)
  SELECT id, :drone, :version, 'held', :by, CAST(:path AS jsonb), tstzrange(:dep, :arr, '[)')
    FROM route
  RETURNING id),
slot AS (
  INSERT INTO network_slots (reservation_id, kind, ref_id, during)
  SELECT res.id, q.k, q.r, tstzrange(q.a, q.b, '[)')
    FROM res, unnest(CAST(:kinds AS text[]), CAST(:refs AS bigint[]),
                     CAST(:los AS timestamptz[]), CAST(:his AS timestamptz[]))
              WITH ORDINALITY AS q(k, r, a, b, i)
   ORDER BY q.i
  ON CONFLICT DO NOTHING
  RETURNING 1)
SELECT (SELECT id FROM route) AS route_id, (SELECT id FROM res) AS reservation_id,
       (SELECT count(*) FROM slot) AS slots,
       (SELECT array_agg(d.id) FROM drone_routes d
         WHERE d.status IN ('approved', 'active') AND NOT d.on_network
           AND d.time_window && tstzrange(:c0, :c1, '[)')
           AND d.alt_band && numrange(CAST(CAST(:clo AS float8) AS numeric),
                                      CAST(CAST(:chi AS float8) AS numeric), '[]')
           AND ST_Intersects(d.corridor, ST_GeomFromWKB(:area, 4326))) AS offnet
""")

UNDO = text("""
WITH r AS (DELETE FROM network_reservations WHERE id = :reservation)
DELETE FROM drone_routes WHERE id = :route
""")
