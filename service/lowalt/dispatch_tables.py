"""The fleet dispatcher's table (migration 0013 creates it), on the low-altitude metadata."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Integer, String, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from service.lowalt.tables import metadata

fleet_plans = Table(
    "fleet_plans", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("parent_id", BigInteger, ForeignKey("fleet_plans.id", ondelete="SET NULL")),
    Column("kind", String(12), nullable=False),
    Column("epoch", DateTime(timezone=True), nullable=False),
    Column("problem", JSONB, nullable=False),
    Column("plan", JSONB, nullable=False),
    Column("planned", Integer, nullable=False),
    Column("unassigned", Integer, nullable=False),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="Drone task assignments and schedules (trips per drone with times in seconds "
            "from epoch, tasks left out with their reason); a re-plan or an emergency is a "
            "new row with parent_id",
)

__all__ = ["fleet_plans"]
