"""The ``city_objects`` table as SQLAlchemy Core (migration 0002 creates it)."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

# The shared MetaData, so the foreign key to datasets resolves; models.py stays untouched.
from service.core.tables import metadata

# The tileset of every current city object (CIM). Not "city": /tiles/city is the aggregate
# entry point whose children are the current version of every tileset, this one included.
CITY_TILESET = "cim"

city_objects = Table(
    "city_objects",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("object_id", Text, nullable=False),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"),
           nullable=False),
    Column("type", String(64), nullable=False),
    Column("parent_object_id", Text),
    Column("lod", String(8)),
    Column("name", Text),
    # MultiPolygon Z (one polygon per surface), lon / lat / WGS 84 ellipsoidal height (m)
    Column("geom", Geometry("GEOMETRYZ", srid=4326, spatial_index=False)),
    Column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    Column("height", Float),
    Column("min_z", Float),
    Column("max_z", Float),
    Column("attributes", JSONB, nullable=False, server_default="{}"),
    Column("semantics", JSONB, nullable=False, server_default="{}"),
    Column("other_lods", JSONB, nullable=False, server_default="{}"),
    Column("valid_from", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("valid_to", DateTime(timezone=True)),
)
