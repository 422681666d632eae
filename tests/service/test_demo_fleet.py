"""The demo district's drones fly a fleet plan on a route network generated over its roads:
every flight reserved and approved, and the drones, flown as reserved, conforming."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from service import demo
from service.core.db import make_async_engine, sync_engine
from service.jobs.execute import run_job


@pytest.fixture(scope="module")
def db_url(migrated_database) -> str:
    return migrated_database()


def test_the_demo_drones_fly_a_reserved_fleet_plan_and_conform(db_url, settings):
    settings.demo = True
    demo.queue_demo(settings, db_url)
    engine = sync_engine(db_url)
    with engine.connect() as conn:
        city_job = conn.execute(text("SELECT id FROM jobs WHERE kind = 'ingest_cityjson'")
                                ).scalar_one()
    assert run_job(city_job, db_url, settings) == "succeeded"
    timings: dict[str, float] = {}

    async def run() -> None:
        aengine = make_async_engine(db_url)
        stop = asyncio.Event()
        t0 = time.monotonic()
        task = asyncio.create_task(demo.fly(aengine, settings, stop))
        flying = 0
        for _ in range(400):  # a plan leaves 30 s after it is made; then a few minutes
            await asyncio.sleep(0.5)
            async with aengine.connect() as conn:
                if "plan" not in timings and (await conn.execute(text(
                        "SELECT count(*) FROM fleet_plans"))).scalar():
                    timings["plan"] = time.monotonic() - t0
                flying = (await conn.execute(text(
                    "SELECT count(*) FROM drone_telemetry tl JOIN drones d ON d.id ="
                    " tl.drone_id WHERE d.serial LIKE 'DEMO-LG-%' AND tl.speed_ms > 1"))
                ).scalar()
            if flying >= 300 or task.done():
                break
        stop.set()
        await asyncio.wait_for(task, 60)
        await aengine.dispose()

    asyncio.run(run())
    assert "plan" in timings, "no fleet plan was made"
    print(f"demo fleet: first plan {timings.get('plan', -1):.1f} s after the drones started")
    with engine.connect() as conn:
        ports = conn.execute(text("SELECT count(*) FROM vertiports WHERE code LIKE "
                                  "'DEMO-VP-%'")).scalar()
        net = conn.execute(text("SELECT count(*) FROM network_edges WHERE version_to IS NULL"
                                " AND source = 'guide'")).scalar()
        plan = conn.execute(text("SELECT reservation, planned FROM fleet_plans ORDER BY id"
                                 " LIMIT 1")).one()
        held = conn.execute(text(
            "SELECT count(*) FROM network_reservations r JOIN drone_routes d ON d.id ="
            " r.route_id WHERE r.status = 'held' AND d.status = 'approved'")).scalar()
        reports = conn.execute(text(
            "SELECT tl.flags, tl.route_id, tl.speed_ms FROM drone_telemetry tl JOIN drones d"
            " ON d.id = tl.drone_id WHERE d.serial LIKE 'DEMO-LG-%'")).all()
    engine.dispose()
    assert ports >= 3 and net > 20
    assert plan.reservation["status"] == "reserved" and plan.planned > 0
    approved = [f for f in plan.reservation["flights"] if f["status"] == "approved"]
    assert held >= len(approved) > 0
    moving = [r for r in reports if r.speed_ms > 1]
    assert len(moving) >= 100, len(reports)
    # every report is on a reserved route (none flies loops), and conforms to it
    assert all(r.route_id is not None for r in reports)
    bad = [r.flags for r in reports if r.flags]
    assert not bad, (len(bad), len(reports), bad[:5])
