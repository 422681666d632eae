"""The demo district: made once, labelled as synthetic, in Longgang, through the ordinary
ingest paths; a second start loads nothing again; its drones fly while the app serves."""

from __future__ import annotations

import asyncio
import json

import laspy
import numpy as np
import pytest
from pyproj import Transformer
from sqlalchemy import text

from service import demo
from service.core.db import make_async_engine, sync_engine
from service.jobs.execute import run_job

TO_LL = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)


@pytest.fixture(scope="module")
def db_url(migrated_database) -> str:
    return migrated_database()


def test_demo_district_loads_once_and_ingests(db_url, settings, tmp_path):
    settings.demo = True
    queued = demo.queue_demo(settings, db_url)
    assert len(queued) == 2
    city_path = settings.data_dir / "demo" / "longgang_demo_city.city.json"
    doc = json.loads(city_path.read_text())
    n_objects = len(doc["CityObjects"])
    assert 1500 <= n_objects <= demo.N_CITY + demo.N_SURVEY
    # in Longgang: the model's centre near 114.25 E, 22.72 N
    v = np.asarray(doc["vertices"]) * doc["transform"]["scale"] + doc["transform"]["translate"]
    lon, lat = TO_LL.transform(v[:, 0].mean(), v[:, 1].mean())
    assert 114.2 < lon < 114.35 and 22.68 < lat < 22.8
    las = laspy.read(settings.data_dir / "demo" / "longgang_demo_survey.laz")
    assert las.header.point_count > 500_000
    assert set(np.unique(las.classification)) <= {0, 1}  # unclassified: fly and model does it

    engine = sync_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, kind, name, options FROM datasets ORDER BY id")
                            ).all()
        assert all("合成" in r.name and "synthetic" in r.name for r in rows)
        assert all(r.options["demo"] for r in rows)
        drones = conn.execute(text("SELECT count(*) FROM drones WHERE serial LIKE 'DEMO-LG-%'")
                              ).scalar()
        segs = conn.execute(text("SELECT count(*) FROM road_segments WHERE code LIKE 'DEMO-%'")
                            ).scalar()
        per_seg = conn.execute(text(
            "SELECT min(n), max(n) FROM (SELECT count(*) n FROM traffic_observations o JOIN"
            " road_segments s ON s.id = o.segment_id WHERE s.code LIKE 'DEMO-%'"
            " GROUP BY s.id) x")).one()
        water = conn.execute(text(
            "SELECT count(*), count(DISTINCT w.station_id), min(grade), max(grade)"
            " FROM water_observations w JOIN water_stations s ON s.id = w.station_id"
            " WHERE s.water_body = '龙岗河'")).one()
        jobs = conn.execute(text("SELECT id, kind FROM jobs ORDER BY id")).all()
    assert drones == demo.N_DRONES and segs > 50
    assert per_seg == (288, 288)  # a day at 5 minutes
    assert water[0] == 30 * water[1] and water[1] == 5 and 1 <= water[2] <= water[3] <= 6

    # a second start finds the demo and loads nothing again
    assert demo.queue_demo(settings, db_url) == []

    # the city model goes through the ordinary CityJSON ingest
    city_job = next(j.id for j in jobs if j.kind == "ingest_cityjson")
    assert run_job(city_job, db_url, settings) == "succeeded"
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM city_objects")).scalar()
        report = conn.execute(text("SELECT report FROM jobs WHERE id = :j"),
                              {"j": city_job}).scalar()
    engine.dispose()
    assert stored == n_objects
    # every wall of every building is a proper surface (no corner repeated on the mm grid)
    assert report["problem_count"] == 0, report["problems"][:3]


def test_demo_drones_fly_while_serving(db_url, settings):
    with sync_engine(db_url).begin() as conn:  # as the demo registers them
        conn.execute(text("INSERT INTO drones (serial, operator, class) SELECT 'DEMO-LG-' ||"
                          " g, 'demo', 'light' FROM generate_series(1, 3) g"
                          " ON CONFLICT (serial) DO NOTHING"))

    async def run() -> int:
        engine = make_async_engine(db_url)
        stop = asyncio.Event()
        task = asyncio.create_task(demo.fly(engine, settings, stop))
        n = 0
        for _ in range(240):  # the first report waits for imports; then one a second
            await asyncio.sleep(0.5)
            async with engine.connect() as conn:
                n = (await conn.execute(text(
                    "SELECT count(DISTINCT t) FROM drone_telemetry tl JOIN drones d"
                    " ON d.id = tl.drone_id WHERE d.serial LIKE 'DEMO-LG-%'"))).scalar()
            if n >= 2 or task.done():
                break
        stop.set()
        await asyncio.wait_for(task, 60)
        await engine.dispose()
        return n

    # one report a second for every demo drone (at least two seconds' worth)
    assert asyncio.run(run()) >= 2
