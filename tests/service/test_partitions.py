"""Time series partitioned by time: the migration moves the rows, queries by time read only
their partitions, writes make the partitions they need (and refuse what the retention no
longer keeps), and the chore keeps partitions ahead and drops old ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from service.core import db
from service.core.db import sync_engine
from service.core.partitions import existing, forget, maintain
from service.core.settings import Settings
from service.domains import partitioned
from service.layers.tables import TRAFFIC_PARTITIONS
from service.lowalt.tables import TELEMETRY_PARTITIONS

TABLES = ("drone_telemetry", "traffic_observations", "water_observations")


@pytest.fixture(autouse=True)
def _forget_known():
    # the partitions a process knows are per table name; each test has its own database
    forget(partitioned())
    yield
    forget(partitioned())


def _kind(conn, table: str) -> str:
    return conn.execute(text("SELECT relkind FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                        {"t": table}).scalar()


def test_the_migration_moves_the_rows_into_partitions_and_back(fresh_database):
    url = fresh_database()
    db.upgrade(url, "0010")
    engine = sync_engine(url)
    with engine.begin() as conn:
        seg = conn.execute(text(
            "INSERT INTO road_segments (code, name, road_class, lanes, speed_limit_kmh,"
            " free_flow_kmh, length_m, geom) VALUES ('S', 's', 'primary', 2, 60, 55, 100,"
            " ST_GeomFromText('LINESTRING(114.3 22.7, 114.301 22.7)', 4326)) RETURNING id"
        )).scalar_one()
        for at in ("2024-03-05T08:00:00Z", "2024-03-05T08:05:00Z", "2025-11-30T23:55:00Z"):
            conn.execute(text("INSERT INTO traffic_observations (segment_id, observed_at,"
                              " volume, speed_kmh) VALUES (:s, :t, 10, 40)"),
                         {"s": seg, "t": at})
        assert _kind(conn, "traffic_observations") == "r"
    db.upgrade(url)
    with engine.connect() as conn:
        for table in TABLES:
            assert _kind(conn, table) == "p", table
        names = set(existing(conn, TRAFFIC_PARTITIONS))
        # the data's months, every month since, and three ahead of now
        assert {"traffic_observations_202403", "traffic_observations_202511"} <= names
        ahead = TRAFFIC_PARTITIONS.start(datetime.now(UTC))
        for _ in range(3):
            ahead = TRAFFIC_PARTITIONS.after(ahead)
        assert TRAFFIC_PARTITIONS.name(ahead) in names
        rows = conn.execute(text("SELECT tableoid::regclass::text, observed_at FROM"
                                 " traffic_observations ORDER BY observed_at")).all()
        assert [r[0] for r in rows] == ["traffic_observations_202403"] * 2 + [
            "traffic_observations_202511"]
        assert len(set(existing(conn, TELEMETRY_PARTITIONS))) >= 4  # today + 3 days ahead
    db.downgrade(url, "0010")
    with engine.connect() as conn:
        assert _kind(conn, "traffic_observations") == "r"
        assert conn.execute(text("SELECT count(*) FROM traffic_observations")).scalar() == 3
    engine.dispose()


def test_a_query_by_time_reads_only_its_partitions(migrated_database):
    url = migrated_database()
    engine = sync_engine(url)
    with engine.begin() as conn:
        from service.core.partitions import ensure

        ensure(conn, TRAFFIC_PARTITIONS, [datetime(2025, 1, 1, tzinfo=UTC),
                                          datetime(2025, 6, 1, tzinfo=UTC)], None)
        plan = "\n".join(conn.execute(text(
            "EXPLAIN SELECT * FROM traffic_observations WHERE observed_at >= "
            "'2025-03-01T00:00:00Z' AND observed_at < '2025-04-01T00:00:00Z'")).scalars())
        every = "\n".join(conn.execute(text(
            "EXPLAIN SELECT * FROM traffic_observations")).scalars())
    engine.dispose()
    assert "traffic_observations_202503" in plan
    touched = [n for n in ("202501", "202502", "202504", "202505", "202506")
               if f"traffic_observations_{n}" in plan]
    assert touched == [], plan
    assert "traffic_observations_202501" in every and "traffic_observations_202506" in every


def test_the_chore_keeps_partitions_ahead_and_drops_past_the_retention(migrated_database):
    url = migrated_database()
    engine = sync_engine(url)
    now = datetime.now(UTC)
    settings = Settings(database_url=url, telemetry_retention_days=2,
                        observations_retention_days=None)
    with engine.begin() as conn:
        from service.core.partitions import ensure

        ensure(conn, TELEMETRY_PARTITIONS, [now - timedelta(days=6)], None)
        conn.execute(text("INSERT INTO drones (serial, operator, class) VALUES"
                          " ('P-1', 'ops', 'light')"))
        conn.execute(text(
            "INSERT INTO drone_telemetry (drone_id, t, geom) SELECT id, :t,"
            " ST_SetSRID(ST_MakePoint(114.3, 22.7, 50), 4326) FROM drones"),
            {"t": now - timedelta(days=6)})
        report = maintain(conn, partitioned(), settings, now=now + timedelta(days=5))
        names = set(existing(conn, TELEMETRY_PARTITIONS))
        left = conn.execute(text("SELECT count(*) FROM drone_telemetry")).scalar()
    engine.dispose()
    old = TELEMETRY_PARTITIONS.name(TELEMETRY_PARTITIONS.start(now - timedelta(days=6)))
    assert old in report["drone_telemetry"]["dropped"] and old not in names
    assert left == 0  # gone with its partition
    later = TELEMETRY_PARTITIONS.start(now + timedelta(days=8))
    assert TELEMETRY_PARTITIONS.name(later) in names  # three days past that "now"
    # traffic and water keep everything without a retention
    assert report["traffic_observations"]["dropped"] == []


def test_writes_make_their_partitions_and_the_retention_refuses_older(live_server, auth,
                                                                      settings, db_url):
    op = auth("operator")
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [
            [114.31, 22.66], [114.3105, 22.6605]]},
         "properties": {"code": "PART-1", "road_class": "primary", "lanes": 2,
                        "speed_limit_kmh": 60, "free_flow_kmh": 55}}]}
    r = httpx.post(f"{live_server.url}/layers/traffic/segments", json=fc, headers=op)
    assert r.status_code == 201, r.text
    with sync_engine(db_url).connect() as conn:
        seg = conn.execute(text("SELECT id FROM road_segments WHERE code = 'PART-1'")).scalar()
    # a backfill from a year with no partition yet: made on the way in
    old = [{"segment_id": seg, "observed_at": "2019-07-14T08:00:00Z", "volume": 5,
            "speed_kmh": 30}]
    r = httpx.post(f"{live_server.url}/layers/traffic/observations", json=old, headers=op)
    assert r.status_code == 201, r.text
    with sync_engine(db_url).connect() as conn:
        where = conn.execute(text("SELECT tableoid::regclass::text FROM traffic_observations"
                                  " WHERE segment_id = :s"), {"s": seg}).scalar()
    assert where == "traffic_observations_201907"
    # with a retention of 30 days, the same backfill is refused with the reason
    settings.observations_retention_days = 30
    forget(partitioned())
    old[0]["observed_at"] = "2019-08-14T08:00:00Z"
    r = httpx.post(f"{live_server.url}/layers/traffic/observations", json=old, headers=op)
    assert r.status_code == 422 and "keeps 30 days" in r.json()["detail"], r.text
    with sync_engine(db_url).connect() as conn:
        assert conn.execute(text("SELECT to_regclass('traffic_observations_201908')")
                            ).scalar() is None
    # telemetry older than its retention: refused, nothing stored
    drone = httpx.post(f"{live_server.url}/drones", headers=op, json={
        "serial": "PART-D1", "operator": "ops", "class": "light"})
    assert drone.status_code == 201, drone.text
    settings.telemetry_retention_days = 1
    stale = datetime.now(UTC) - timedelta(days=3)
    r = httpx.post(f"{live_server.url}/telemetry/one", headers=op, json={
        "drone_id": drone.json()["id"], "t": stale.isoformat(), "lon": 114.31, "lat": 22.66,
        "h": 60.0})
    assert r.status_code == 422 and "drone_telemetry keeps 1 days" in r.json()["detail"], r.text
