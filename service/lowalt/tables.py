"""The low-altitude tables as SQLAlchemy Core (migration 0005 creates them)."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    REAL,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, NUMRANGE, TSTZRANGE

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
    Column("created_at", DateTime(timezone=True)),
)

airspace_zones = Table(
    "airspace_zones", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text),
    Column("name", Text, nullable=False),
    Column("zone_type", String(24), nullable=False),
    Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    Column("floor_m", Float, nullable=False),
    Column("ceiling_m", Float, nullable=False),
    Column("height_reference", String(8), nullable=False),
    Column("valid", TSTZRANGE, nullable=False),
    Column("reason", Text),
    Column("authority", Text),
    Column("conditions", Text),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True)),
)

drone_routes = Table(
    "drone_routes", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", Text),
    Column("drone_id", BigInteger, ForeignKey("drones.id"), nullable=False),
    Column("status", String(12), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("geom", Geometry("LINESTRINGZ", srid=4326, spatial_index=False)),
    Column("corridor", Geometry("POLYGON", srid=4326, spatial_index=False)),
    Column("half_width_m", Float, nullable=False),
    Column("vertical_half_m", Float, nullable=False),
    Column("alt_band", NUMRANGE, nullable=False),
    Column("time_window", TSTZRANGE, nullable=False),
    Column("length_m", Float, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("validation", JSONB, nullable=False),
    Column("city_model_version", Text),
    Column("validated_at", DateTime(timezone=True)),
    Column("authorisation", Text),
    Column("approved_by", Text),
    Column("approved_at", DateTime(timezone=True)),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

drone_telemetry = Table(
    "drone_telemetry", metadata,
    Column("drone_id", BigInteger, ForeignKey("drones.id"), primary_key=True),
    Column("t", DateTime(timezone=True), primary_key=True),
    Column("geom", Geometry("POINTZ", srid=4326, spatial_index=False)),
    Column("speed_ms", REAL),
    Column("track_deg", REAL),
    Column("battery_pct", REAL),
    Column("route_id", BigInteger),
    Column("flags", ARRAY(Text), nullable=False),
    Column("received_at", DateTime(timezone=True)),
)

drone_state = Table(
    "drone_state", metadata,
    Column("drone_id", BigInteger, ForeignKey("drones.id"), primary_key=True),
    Column("t", DateTime(timezone=True), nullable=False),
    Column("geom", Geometry("POINTZ", srid=4326, spatial_index=False)),
    Column("speed_ms", REAL),
    Column("track_deg", REAL),
    Column("battery_pct", REAL),
    Column("route_id", BigInteger),
    Column("flags", ARRAY(Text), nullable=False),
    Column("height_agl_m", Float),
    Column("received_at", DateTime(timezone=True)),
    Column("seq", BigInteger, nullable=False),
    Column("ground_source", Text),
)

__all__ = ["DRONE_CLASSES", "LIVE_STATUSES", "ROUTE_STATUSES", "ZONE_TYPES",
           "airspace_zones", "drone_routes", "drone_state", "drone_telemetry", "drones",
           "metadata"]
