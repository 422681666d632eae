"""The bookkeeping of LiDAR surveys tiled in chunks (migration 0017) as SQLAlchemy Core.

``lidar_splits``: one row per split ingest job: its tileset version, the shared folder the
chunks read, and the counter of chunks done, which each chunk job increments under the
row's lock; the job that makes it reach ``chunks`` is the ``finisher`` (it builds the top of
the octree and publishes). ``lidar_chunks``: one row per chunk, marked done once, by the
attempt that tiled it, so a retried chunk is counted once.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    Table,
    Text,
    func,
)

from service.core.tables import metadata

lidar_splits = Table(
    "lidar_splits",
    metadata,
    Column("job_id", BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("tileset_id", BigInteger, ForeignKey("tilesets.id", ondelete="CASCADE"),
           nullable=False),
    Column("spill", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("chunks_done", Integer, nullable=False, server_default="0"),
    # tiling -> finishing (the last chunk is done) -> published; or failed
    Column("status", Text, nullable=False, server_default="tiling"),
    Column("finisher", BigInteger),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

lidar_chunks = Table(
    "lidar_chunks",
    metadata,
    Column("split_job_id", BigInteger, ForeignKey("lidar_splits.job_id", ondelete="CASCADE"),
           primary_key=True),
    Column("chunk", Integer, primary_key=True),
    Column("job_id", BigInteger, ForeignKey("jobs.id", ondelete="SET NULL")),
    Column("points", BigInteger, nullable=False),
    Column("status", Text, nullable=False, server_default="todo"),  # todo, done
    Column("tiles", Integer),
    Column("bytes", BigInteger),
    Column("elapsed_s", Float),
    Column("worker", Text),
    Column("done_at", DateTime(timezone=True)),
)
