"""Tables, as SQLAlchemy Core. Migrations in ``migrations/`` create them; this module is
how the code refers to them (one place for SQL names)."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

DATASET_KINDS = ("lidar", "cityjson", "citygml", "ifc")
ROLES = ("viewer", "operator", "planner", "admin")

datasets = Table(
    "datasets",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("name", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="uploaded"),
    Column("crs", Text),
    Column("height_note", Text),
    Column("stats", JSONB, nullable=False, server_default="{}"),
    Column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=True)),
    Column("bounds3d", JSONB),
    Column("acquired_at", DateTime(timezone=True)),
    Column("source_path", Text),
    Column("sha256", String(64)),
    Column("size_bytes", BigInteger),
    Column("options", JSONB, nullable=False, server_default="{}"),
    Column("uploaded_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="CASCADE")),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("stage", Text, nullable=False, server_default="queued"),
    Column("progress", Float, nullable=False, server_default="0"),
    Column("items_done", BigInteger, nullable=False, server_default="0"),
    Column("items_total", BigInteger),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="3"),
    Column("error", Text),
    Column("report", JSONB, nullable=False, server_default="{}"),
    Column("params", JSONB, nullable=False, server_default="{}"),
    Column("queue_job_id", BigInteger),
    Column("worker", Text),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
)

tilesets = Table(
    "tilesets",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="SET NULL")),
    Column("job_id", BigInteger, ForeignKey("jobs.id", ondelete="SET NULL")),
    Column("status", String(16), nullable=False, server_default="building"),
    Column("is_current", Boolean, nullable=False, server_default="false"),
    Column("path", Text, nullable=False),
    Column("stats", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("key_name", Text),
    Column("role", String(16)),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("client", Text),
    Column("detail", JSONB, nullable=False, server_default="{}"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("filename", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("length", BigInteger, nullable=False),
    Column("sha256", String(64)),
    Column("options", JSONB, nullable=False, server_default="{}"),
    Column("status", String(16), nullable=False, server_default="receiving"),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="SET NULL")),
    Column("job_id", BigInteger, ForeignKey("jobs.id", ondelete="SET NULL")),
)
