"""The ``city_objects`` (migration 0002) and ``city_changes`` (0010) tables as SQLAlchemy Core."""

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

# The change list of each modelled survey (migration 0010): one row per building the survey
# found new, changed, unchanged or demolished (or could not tell: "skipped"), with the LoD
# reached and its quality figures. A later run of the same survey replaces its rows.
city_changes = Table(
    "city_changes",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"),
           nullable=False),
    Column("object_id", Text, nullable=False),
    Column("change", String(16), nullable=False),
    Column("lod", String(8)),
    Column("rmse_m", Float),
    Column("points", BigInteger),
    Column("density", Float),
    Column("reason", Text),
    Column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    Column("detected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
