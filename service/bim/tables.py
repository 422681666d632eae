"""The ``bim_elements`` and ``bim_spaces`` tables as SQLAlchemy Core (migrations 0004, 0007
and 0008 create them)."""

from __future__ import annotations

from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import UserDefinedType

# The shared MetaData, so the foreign key to datasets resolves.
from service.core.tables import metadata


class Box3D(UserDefinedType):
    """PostGIS ``box3d``: lon / lat (WGS 84) and ellipsoidal height (m) extent."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "box3d"


bim_elements = Table(
    "bim_elements",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"),
           nullable=False),
    Column("global_id", String(22), nullable=False),
    Column("ifc_class", String(64), nullable=False),
    Column("class_path", ARRAY(Text), nullable=False, server_default="{}"),
    Column("name", Text),
    Column("type_name", Text),
    Column("assembly_global_id", String(22)),
    Column("assembly_class", String(64)),
    Column("storey", Text),
    Column("storey_global_id", String(22)),
    Column("storey_elevation", Float),
    Column("psets", JSONB, nullable=False, server_default="{}"),
    Column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    Column("bbox3d", Box3D, nullable=False),
    Column("min_height", Float, nullable=False),
    Column("max_height", Float, nullable=False),
    Column("building_object_id", Text),
    Column("triangles", Integer, nullable=False, server_default="0"),
    Column("space_global_id", String(22)),
    Column("bounded_space_global_ids", ARRAY(Text), nullable=False, server_default="{}"),
    UniqueConstraint("dataset_id", "global_id"),
)

bim_spaces = Table(
    "bim_spaces",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"),
           nullable=False),
    Column("global_id", String(22), nullable=False),
    Column("name", Text),
    Column("long_name", Text),
    Column("storey", Text),
    Column("storey_global_id", String(22)),
    Column("psets", JSONB, nullable=False, server_default="{}"),
    Column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    Column("bbox3d", Box3D),
    Column("min_height", Float),
    Column("max_height", Float),
    Column("floor_area", Float),
    UniqueConstraint("dataset_id", "global_id"),
)
