"""Time series that grow: tables partitioned by range of a timestamp column (PostgreSQL
declarative partitioning), one partition per day or month.

A query bounded in time reads only the partitions of its range (the planner prunes the
others), and old data goes by dropping whole partitions instead of deleting rows. Partitions
are made ahead by the migration and by a worker chore; a write whose time has no partition
yet (a backfill of old observations, a report just after midnight before the chore ran)
makes the missing ones first, in its own transaction, unless its time is older than what the
table keeps (its retention setting): that write is refused with the reason.

Partition names are ``<table>_<YYYYMMDD>`` (daily) or ``<table>_<YYYYMM>`` (monthly), made here
from dates only; the DDL therefore never holds a caller's string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, func, select, text

from service.core.errors import Unprocessable

Step = Literal["day", "month"]
#: a write spanning more partitions than this is refused rather than making them all
MAX_NEW_PARTITIONS = 400


@dataclass(frozen=True)
class TimePartitioned:
    """A table partitioned by ``column``; ``ahead`` partitions are kept ready past now;
    ``retention_setting`` names the :class:`~service.core.settings.Settings` field that gives
    the days kept (None there: kept for ever)."""

    table: str
    column: str
    step: Step
    ahead: int
    retention_setting: str
    # partitions known to exist, by database (a test session uses many)
    _known: set[tuple[str, datetime]] = field(default_factory=set, compare=False, hash=False,
                                              repr=False)

    def start(self, t: datetime) -> datetime:
        t = t.astimezone(UTC)
        if self.step == "day":
            return datetime(t.year, t.month, t.day, tzinfo=UTC)
        return datetime(t.year, t.month, 1, tzinfo=UTC)

    def after(self, lo: datetime) -> datetime:
        if self.step == "day":
            return lo + timedelta(days=1)
        return datetime(lo.year + lo.month // 12, lo.month % 12 + 1, 1, tzinfo=UTC)

    def name(self, lo: datetime) -> str:
        return f"{self.table}_{lo:%Y%m%d}" if self.step == "day" else f"{self.table}_{lo:%Y%m}"

    def starts(self, lo: datetime, hi: datetime) -> list[datetime]:
        """The partition starts that cover [lo, hi]."""
        out, cur, end = [], self.start(lo), self.start(hi)
        while cur <= end:
            out.append(cur)
            cur = self.after(cur)
            if len(out) > MAX_NEW_PARTITIONS:
                raise Unprocessable(
                    f"the times span more than {MAX_NEW_PARTITIONS} {self.step}s of "
                    f"{self.table} ({lo.isoformat()} to {hi.isoformat()}): send them in "
                    "smaller ranges")
        return out

    def parse(self, name: str) -> datetime | None:
        m = re.fullmatch(re.escape(self.table) + r"_(\d{8}|\d{6})", name)
        if m is None:
            return None
        fmt = "%Y%m%d" if self.step == "day" else "%Y%m"
        try:
            return datetime.strptime(m.group(1), fmt).replace(tzinfo=UTC)
        except ValueError:
            return None


def existing(conn: Connection, spec: TimePartitioned) -> dict[str, datetime]:
    """The table's partitions made here, by name, with their starts."""
    rows = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = CAST(:t AS regclass)"), {"t": spec.table}).scalars()
    out = {}
    for name in rows:
        lo = spec.parse(name)
        if lo is not None:
            out[name] = lo
    return out


def _create(conn: Connection, spec: TimePartitioned, lo: datetime) -> bool:
    name = spec.name(lo)
    # two writers making the same partition: the second waits, then finds it
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))
    if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
        return False
    hi = spec.after(lo)
    conn.execute(text(
        f'CREATE TABLE "{name}" PARTITION OF "{spec.table}" '
        f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"))
    return True


def ensure(conn: Connection, spec: TimePartitioned, times: Iterable[datetime],
           retention_days: int | None, now: datetime | None = None) -> int:
    """Make the partitions ``times`` fall in; refuse times older than the retention. The
    partitions known to exist are remembered per process, so a hot write path asks the
    catalogue only when a new day or month appears. Returns how many were made."""
    ts = [t for t in times if t is not None]
    if not ts:
        return 0
    lo, hi = min(ts), max(ts)
    if retention_days is not None:
        cutoff = spec.start((now or datetime.now(UTC)) - timedelta(days=retention_days))
        if lo < cutoff:
            raise Unprocessable(
                f"{spec.table} keeps {retention_days} days: a time of {lo.isoformat()} is "
                f"older than what is kept (from {cutoff.isoformat()})")
    where = str(conn.engine.url)
    wanted = [s for s in spec.starts(lo, hi) if (where, s) not in spec._known]
    if not wanted:
        return 0
    have = set(existing(conn, spec).values())
    made = 0
    for s in wanted:
        if s not in have:
            made += _create(conn, spec, s)
    spec._known.update((where, s) for s in wanted)
    return made


def forget(specs: Sequence[TimePartitioned]) -> None:
    """Forget the partitions remembered (after they were dropped elsewhere)."""
    for spec in specs:
        spec._known.clear()


def maintain(conn: Connection, specs: Sequence[TimePartitioned], settings: Any,
             now: datetime | None = None) -> dict[str, Any]:
    """Keep ``ahead`` partitions ready past now and drop the ones wholly older than each
    table's retention. Returns what was made and dropped, by table."""
    now = now or datetime.now(UTC)
    report: dict[str, Any] = {}
    for spec in specs:
        cur = spec.start(now)
        upcoming = [cur]
        for _ in range(spec.ahead):
            upcoming.append(spec.after(upcoming[-1]))
        made = sum(_create(conn, spec, s) for s in upcoming)
        dropped = []
        days = getattr(settings, spec.retention_setting)
        if days is not None:
            cutoff = now - timedelta(days=days)
            for name, lo in sorted(existing(conn, spec).items(), key=lambda kv: kv[1]):
                if spec.after(lo) <= cutoff:
                    conn.execute(text(f'DROP TABLE "{name}"'))
                    dropped.append(name)
                    spec._known.discard((str(conn.engine.url), lo))
        report[spec.table] = {"made": made, "dropped": dropped}
    return report
