"""Layer tables as SQLAlchemy Core (migrations 0003, 0006 and 0016 create them)."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    REAL,
    BigInteger,
    Column,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from service.core.partitions import TimePartitioned
from service.core.tables import metadata  # one MetaData: foreign keys resolve across packages
from service.layers.gb3838 import PARAMETERS

road_segments = Table(
    "road_segments", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, unique=True),
    Column("name", Text),
    Column("road_class", String(16), nullable=False),
    Column("lanes", SmallInteger, nullable=False),
    Column("speed_limit_kmh", REAL, nullable=False),
    Column("free_flow_kmh", REAL, nullable=False),
    Column("length_m", Float, nullable=False),
    Column("geom", Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # kept by PostgreSQL for vector tiles; never written by the service
    Column("geom_3857", Geometry("LINESTRING", srid=3857, spatial_index=False),
           Computed("ST_Transform(geom, 3857)", persisted=True)),
)

traffic_observations = Table(
    "traffic_observations", metadata,
    Column("segment_id", BigInteger, ForeignKey("road_segments.id", ondelete="CASCADE"),
           primary_key=True),
    Column("observed_at", DateTime(timezone=True), primary_key=True),
    Column("volume", Integer, nullable=False),
    Column("speed_kmh", REAL, nullable=False),
    Column("occupancy", REAL),
    postgresql_partition_by="RANGE (observed_at)",
    comment="partitioned by month of observed_at (traffic_observations_YYYYMM)",
)

water_stations = Table(
    "water_stations", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, unique=True),
    Column("name", Text, nullable=False),
    Column("water_body", Text, nullable=False),
    Column("body_type", String(8), nullable=False),
    Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: waterway kinds: a river, a smaller stream (a tributary ditch), or a canal
WATERWAY_KINDS = ("river", "stream", "canal")

waterways = Table(
    "waterways", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, unique=True),
    Column("name", Text, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("parent", Text),
    Column("geom", Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=False),
    Column("length_m", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

water_observations = Table(
    "water_observations", metadata,
    Column("station_id", BigInteger, ForeignKey("water_stations.id", ondelete="CASCADE"),
           primary_key=True),
    Column("observed_at", DateTime(timezone=True), primary_key=True),
    Column("water_temp", Float),
    *(Column(p, Float) for p in PARAMETERS),
    Column("grade", SmallInteger, nullable=False),
    Column("deciding", ARRAY(Text), nullable=False, server_default="{}"),
    Column("exceedance", JSONB, nullable=False, server_default="{}"),
    postgresql_partition_by="RANGE (observed_at)",
    comment="partitioned by month of observed_at (water_observations_YYYYMM)",
)

# monthly partitions, kept for ``observations_retention_days`` (service.core.partitions)
TRAFFIC_PARTITIONS = TimePartitioned("traffic_observations", "observed_at", "month", 3,
                                     "observations_retention_days")
WATER_PARTITIONS = TimePartitioned("water_observations", "observed_at", "month", 3,
                                   "observations_retention_days")
