"""The ``survey_terrain`` table (migration 0011) as SQLAlchemy Core."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    Table,
    Text,
    func,
)

from service.core.tables import metadata

# One DTM per modelled survey (a later run of the same survey replaces it): a grid in the
# survey's metric CRS whose heights are WGS 84 ellipsoidal metres, packed as
# tiler.terrain.grid.pack_heights packs them; NODATA where the survey did not reach.
survey_terrain = Table(
    "survey_terrain",
    metadata,
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"),
           primary_key=True),
    Column("acquired_at", DateTime(timezone=True)),
    Column("crs", Text, nullable=False),
    Column("x0", Float, nullable=False),
    Column("y0", Float, nullable=False),
    Column("cell", Float, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("cols", Integer, nullable=False),
    Column("nodata", Float, nullable=False),
    Column("encoding", Text, nullable=False),
    Column("heights", LargeBinary, nullable=False),
    Column("min_h", Float),
    Column("max_h", Float),
    Column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False),
           nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
