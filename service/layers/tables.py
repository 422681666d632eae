"""Layer tables as SQLAlchemy Core (migration 0003 creates them)."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from service.layers.gb3838 import PARAMETERS

metadata = MetaData()

road_segments = Table(
    "road_segments", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, unique=True),
    Column("name", Text),
    Column("road_class", String(16), nullable=False),
    Column("lanes", SmallInteger, nullable=False),
    Column("speed_limit_kmh", Float, nullable=False),
    Column("free_flow_kmh", Float, nullable=False),
    Column("length_m", Float, nullable=False),
    Column("geom", Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=False),
    Column("updated_at", DateTime(timezone=True)),
)

traffic_observations = Table(
    "traffic_observations", metadata,
    Column("segment_id", BigInteger, ForeignKey("road_segments.id"), primary_key=True),
    Column("observed_at", DateTime(timezone=True), primary_key=True),
    Column("volume", Integer, nullable=False),
    Column("speed_kmh", Float, nullable=False),
    Column("occupancy", Float),
)

water_stations = Table(
    "water_stations", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, unique=True),
    Column("name", Text, nullable=False),
    Column("water_body", Text, nullable=False),
    Column("body_type", String(8), nullable=False),
    Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    Column("updated_at", DateTime(timezone=True)),
)

water_observations = Table(
    "water_observations", metadata,
    Column("station_id", BigInteger, ForeignKey("water_stations.id"), primary_key=True),
    Column("observed_at", DateTime(timezone=True), primary_key=True),
    Column("water_temp", Float),
    *(Column(p, Float) for p in PARAMETERS),
    Column("grade", SmallInteger, nullable=False),
    Column("deciding", ARRAY(Text), nullable=False),
    Column("exceedance", JSONB, nullable=False),
)
