"""Time series partitioned by time: drone_telemetry by day, traffic_observations and
water_observations by month. The rows move into the new partitioned tables; partitions
cover the data there is and a few steps ahead (a worker chore keeps them ahead afterwards
and drops those past the retention).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from datetime import UTC, datetime, timedelta

from alembic import op
from sqlalchemy import text

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# table, time column, step, partitions ahead, brin index, primary key, foreign keys
TABLES = (
    ("drone_telemetry", "t", "day", 3, "drone_telemetry_t_brin", ("drone_id", "t"),
     ("FOREIGN KEY (drone_id) REFERENCES drones (id) ON DELETE CASCADE",
      "FOREIGN KEY (route_id) REFERENCES drone_routes (id) ON DELETE SET NULL")),
    ("traffic_observations", "observed_at", "month", 3, "traffic_observations_time_brin",
     ("segment_id", "observed_at"),
     ("FOREIGN KEY (segment_id) REFERENCES road_segments (id) ON DELETE CASCADE",)),
    ("water_observations", "observed_at", "month", 3, "water_observations_time_brin",
     ("station_id", "observed_at"),
     ("FOREIGN KEY (station_id) REFERENCES water_stations (id) ON DELETE CASCADE",)),
)


def _start(step: str, t: datetime) -> datetime:
    t = t.astimezone(UTC)
    if step == "day":
        return datetime(t.year, t.month, t.day, tzinfo=UTC)
    return datetime(t.year, t.month, 1, tzinfo=UTC)


def _after(step: str, lo: datetime) -> datetime:
    if step == "day":
        return lo + timedelta(days=1)
    return datetime(lo.year + lo.month // 12, lo.month % 12 + 1, 1, tzinfo=UTC)


def _name(table: str, step: str, lo: datetime) -> str:
    return f"{table}_{lo:%Y%m%d}" if step == "day" else f"{table}_{lo:%Y%m}"


def upgrade() -> None:
    conn = op.get_bind()
    now = datetime.now(UTC)
    for table, col, step, ahead, brin, pk, fks in TABLES:
        old = f"{table}_unpartitioned"
        op.execute(f"ALTER TABLE {table} RENAME TO {old}")
        op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
        op.execute(f"ALTER INDEX {brin} RENAME TO {brin}_unpartitioned")
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING "
                   f"CONSTRAINTS INCLUDING COMMENTS) PARTITION BY RANGE ({col})")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(pk)})")
        for fk in fks:
            op.execute(f"ALTER TABLE {table} ADD {fk}")
        op.execute(f"CREATE INDEX {brin} ON {table} USING brin ({col})")
        op.execute(f"COMMENT ON TABLE {table} IS 'partitioned by {step} of {col} "
                   f"({table}_YYYY{'MMDD' if step == 'day' else 'MM'})'")
        first = conn.execute(text(f"SELECT min({col}) FROM {old}")).scalar()
        lo = _start(step, min(first, now) if first is not None else now)
        end = _start(step, now)
        for _ in range(ahead):
            end = _after(step, end)
        while lo <= end:
            hi = _after(step, lo)
            op.execute(f"CREATE TABLE {_name(table, step, lo)} PARTITION OF {table} "
                       f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")
            lo = hi
        # rows later than the partitions made (stamped far ahead) would have no partition
        last = conn.execute(text(f"SELECT max({col}) FROM {old}")).scalar()
        while last is not None and lo <= last:
            hi = _after(step, lo)
            op.execute(f"CREATE TABLE {_name(table, step, lo)} PARTITION OF {table} "
                       f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")
            lo = hi
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
        op.execute(f"DROP TABLE {old}")


def downgrade() -> None:
    for table, col, _step, _ahead, brin, pk, fks in TABLES:
        old = f"{table}_partitioned"
        op.execute(f"ALTER TABLE {table} RENAME TO {old}")
        op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
        op.execute(f"ALTER INDEX {brin} RENAME TO {brin}_partitioned")
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING "
                   "CONSTRAINTS INCLUDING COMMENTS)")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(pk)})")
        for fk in fks:
            op.execute(f"ALTER TABLE {table} ADD {fk}")
        op.execute(f"CREATE INDEX {brin} ON {table} USING brin ({col})")
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
        op.execute(f"DROP TABLE {old} CASCADE")
        op.execute(f"COMMENT ON TABLE {table} IS NULL")
