"""The fleet dispatcher's tables (migrations 0012 and 0015 create them), on the low-altitude
metadata."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Integer, String, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from service.lowalt.tables import drone_state_seq, metadata

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
    Column("reservation", JSONB),
    comment="Drone task assignments and schedules (trips per drone with times in seconds "
            "from epoch, tasks left out with their reason); a re-plan or an emergency is a "
            "new row with parent_id",
)

fleet_notices = Table(
    "fleet_notices", metadata,
    Column("seq", BigInteger, primary_key=True, server_default=drone_state_seq.next_value()),
    Column("kind", String(24), nullable=False),
    Column("plan_id", BigInteger, ForeignKey("fleet_plans.id", ondelete="SET NULL")),
    Column("body", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="Notices for the live stream (emergency dispatched, flights pre-empted); seq "
            "shares drone_state_seq with the drone states",
)

__all__ = ["fleet_notices", "fleet_plans"]
