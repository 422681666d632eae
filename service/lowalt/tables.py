"""The low-altitude tables as SQLAlchemy Core (migrations 0005, 0009 and 0012 create them), and
the columns of the city model the checks read.

CHECK constraints, indexes and the exclusion constraint on live routes live in the
migrations only: nothing creates tables from this module, and tests/lowalt/test_tables.py
holds the columns here to the migrated database.
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Sequence,
    SmallInteger,
    String,
    Table,
    Text,
    column,
    func,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import (
    ARRAY,
    DOUBLE_PRECISION,
    JSONB,
    NUMRANGE,
    REAL,
    TSTZRANGE,
)

from service.core.partitions import TimePartitioned

metadata = MetaData()

DRONE_CLASSES = ("micro", "light", "small", "medium", "large")
ZONE_TYPES = ("prohibited", "needs_authorisation", "conditional")
ROUTE_STATUSES = ("planned", "approved", "active", "suspended", "retired")
LIVE_STATUSES = ("approved", "active")  # routes that hold airspace

drones = Table(
    "drones", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("serial", Text, nullable=False, unique=True),
    Column("operator", Text, nullable=False),
    Column("class", String(8), nullable=False),
    Column("model", Text),
    Column("max_speed_ms", REAL),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

airspace_zones = Table(
    "airspace_zones", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, unique=True),
    Column("name", Text, nullable=False),
    Column("zone_type", String(24), nullable=False),
    Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
    Column("floor_m", DOUBLE_PRECISION, nullable=False),
    Column("ceiling_m", DOUBLE_PRECISION, nullable=False),
    Column("height_reference", String(8), nullable=False, server_default="agl"),
    Column("valid", TSTZRANGE, nullable=False, server_default=text("tstzrange(NULL, NULL)")),
    Column("reason", Text),
    Column("authority", Text),
    Column("conditions", Text),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

drone_routes = Table(
    "drone_routes", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", Text),
    Column("drone_id", BigInteger, ForeignKey("drones.id"), nullable=False),
    Column("status", String(12), nullable=False, server_default="planned"),
    Column("priority", SmallInteger, nullable=False, server_default="0"),
    Column("geom", Geometry("LINESTRINGZ", srid=4326, spatial_index=False), nullable=False),
    Column("corridor", Geometry("POLYGON", srid=4326, spatial_index=False), nullable=False),
    Column("half_width_m", DOUBLE_PRECISION, nullable=False),
    Column("vertical_half_m", DOUBLE_PRECISION, nullable=False),
    Column("alt_band", NUMRANGE, nullable=False),
    Column("time_window", TSTZRANGE, nullable=False),
    Column("length_m", DOUBLE_PRECISION, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("validation", JSONB, nullable=False, server_default="{}"),
    Column("city_model_version", Text),
    Column("validated_at", DateTime(timezone=True)),
    Column("authorisation", Text),
    Column("approved_by", Text),
    Column("approved_at", DateTime(timezone=True)),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("on_network", Boolean, nullable=False, server_default=text("false")),
)

drone_telemetry = Table(
    "drone_telemetry", metadata,
    Column("drone_id", BigInteger, ForeignKey("drones.id", ondelete="CASCADE"),
           primary_key=True),
    Column("t", DateTime(timezone=True), primary_key=True),
    Column("geom", Geometry("POINTZ", srid=4326, spatial_index=False), nullable=False),
    Column("speed_ms", REAL),
    Column("track_deg", REAL),
    Column("battery_pct", REAL),
    Column("route_id", BigInteger, ForeignKey("drone_routes.id", ondelete="SET NULL")),
    Column("flags", ARRAY(Text), nullable=False, server_default="{}"),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    postgresql_partition_by="RANGE (t)",
    comment="partitioned by day of t (drone_telemetry_YYYYMMDD)",
)
# daily partitions, kept for ``telemetry_retention_days`` (service.core.partitions)
TELEMETRY_PARTITIONS = TimePartitioned("drone_telemetry", "t", "day", 3,
                                       "telemetry_retention_days")

# orders changes of drone_state for the live stream
drone_state_seq = Sequence("drone_state_seq", metadata=metadata)

drone_state = Table(
    "drone_state", metadata,
    Column("drone_id", BigInteger, ForeignKey("drones.id", ondelete="CASCADE"),
           primary_key=True),
    Column("t", DateTime(timezone=True), nullable=False),
    Column("geom", Geometry("POINTZ", srid=4326, spatial_index=False), nullable=False),
    Column("speed_ms", REAL),
    Column("track_deg", REAL),
    Column("battery_pct", REAL),
    Column("route_id", BigInteger, ForeignKey("drone_routes.id", ondelete="SET NULL")),
    Column("flags", ARRAY(Text), nullable=False, server_default="{}"),
    Column("height_agl_m", DOUBLE_PRECISION),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("seq", BigInteger, nullable=False, server_default=drone_state_seq.next_value()),
    Column("ground_source", Text),
)

vertiports = Table(
    "vertiports", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, unique=True),
    Column("name", Text, nullable=False),
    Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    Column("pad_m", DOUBLE_PRECISION, nullable=False),
    Column("capacity_per_hour", Integer, nullable=False),
    Column("validation", JSONB, nullable=False, server_default="{}"),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

network_versions = Table(
    "network_versions", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("parent_id", BigInteger, ForeignKey("network_versions.id")),
    Column("change", String(12), nullable=False),
    Column("note", Text),
    Column("params", JSONB, nullable=False, server_default="{}"),
    Column("stats", JSONB, nullable=False, server_default="{}"),
    Column("flags", JSONB, nullable=False, server_default="[]"),
    Column("city_model_version", Text),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

network_nodes = Table(
    "network_nodes", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("version_id", BigInteger, ForeignKey("network_versions.id"), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("vertiport_id", BigInteger, ForeignKey("vertiports.id")),
    Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    Column("ground_m", DOUBLE_PRECISION, nullable=False),
)

network_edges = Table(
    "network_edges", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("from_node", BigInteger, ForeignKey("network_nodes.id"), nullable=False),
    Column("to_node", BigInteger, ForeignKey("network_nodes.id"), nullable=False),
    Column("geom", Geometry("LINESTRINGZ", srid=4326, spatial_index=False), nullable=False),
    Column("heading_deg", REAL, nullable=False),
    Column("layer", SmallInteger, nullable=False),
    Column("layer_agl_m", DOUBLE_PRECISION, nullable=False),
    Column("half_width_m", DOUBLE_PRECISION, nullable=False),
    Column("vertical_half_m", DOUBLE_PRECISION, nullable=False),
    Column("length_m", DOUBLE_PRECISION, nullable=False),
    Column("speed_ms", REAL, nullable=False),
    Column("capacity_per_hour", Integer, nullable=False),
    Column("source", String(12), nullable=False),
    Column("guide", Text),
    Column("verdict", String(16), nullable=False),
    Column("validation", JSONB, nullable=False, server_default="{}"),
    Column("version_from", BigInteger, ForeignKey("network_versions.id"), nullable=False),
    Column("version_to", BigInteger, ForeignKey("network_versions.id")),
    Column("valid_from", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("valid_to", DateTime(timezone=True)),
    Column("closed_reason", Text),
)

network_reservations = Table(
    "network_reservations", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("route_id", BigInteger, ForeignKey("drone_routes.id", ondelete="SET NULL")),
    Column("drone_id", BigInteger, ForeignKey("drones.id"), nullable=False),
    Column("version_id", BigInteger, ForeignKey("network_versions.id"), nullable=False),
    Column("status", String(12), nullable=False, server_default="held"),
    Column("time_window", TSTZRANGE, nullable=False),
    Column("path", JSONB, nullable=False, server_default="{}"),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("cancelled_at", DateTime(timezone=True)),
)

network_slots = Table(
    "network_slots", metadata,
    Column("reservation_id", BigInteger,
           ForeignKey("network_reservations.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(1), nullable=False),
    Column("ref_id", BigInteger, nullable=False),
    Column("during", TSTZRANGE, nullable=False),
)

# The checks read city objects (service/cim owns the table) and LiDAR survey footprints
# (service/core's datasets). Domains do not import each other, so the columns read here are
# named here, as a lightweight table clause; tests/lowalt/test_tables.py holds them to
# cim's Table.
city_objects = table(
    "city_objects",
    column("id", BigInteger),
    column("object_id", Text),
    column("type", String(64)),
    column("geom", Geometry("GEOMETRYZ", srid=4326, spatial_index=False)),
    column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    column("height", DOUBLE_PRECISION),
    column("min_z", DOUBLE_PRECISION),
    column("max_z", DOUBLE_PRECISION),
    column("valid_from", DateTime(timezone=True)),
    column("valid_to", DateTime(timezone=True)),
)

# Network generation reads the road centre lines of the layers package (which owns the
# table) as guides: the columns read, named here as for city_objects.
road_segments = table(
    "road_segments",
    column("id", BigInteger),
    column("code", Text),
    column("road_class", String(16)),
    column("geom", Geometry("LINESTRING", srid=4326, spatial_index=False)),
)

__all__ = ["DRONE_CLASSES", "LIVE_STATUSES", "ROUTE_STATUSES", "ZONE_TYPES",
           "airspace_zones", "city_objects", "drone_routes", "drone_state", "drone_state_seq",
           "drone_telemetry", "drones", "metadata", "network_edges", "network_nodes",
           "network_reservations", "network_slots", "network_versions", "road_segments",
           "vertiports"]
