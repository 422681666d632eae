"""The demo district's rivers: 龙岗河 runs through its five water stations (each on the line,
to the centimetre), two tributaries join it, all through the layers' own ingest; a demo
loaded before the layers had rivers gets them on its next start, once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from service import demo
from service.core.db import sync_engine
from service.datasets.store import new_dataset


@pytest.fixture
def db_url(migrated_database) -> str:
    return migrated_database()


def test_demo_rivers_run_through_the_stations(db_url):
    asyncio.run(demo._layers(db_url))
    engine = sync_engine(db_url)
    try:
        with engine.connect() as conn:
            rivers = conn.execute(text(
                "SELECT code, name, kind, parent, length_m FROM waterways ORDER BY code")).all()
            # metres from each station to the river line, on the ellipsoid
            gaps = conn.execute(text(
                "SELECT s.code, ST_Distance(s.geom::geography, w.geom::geography) AS m"
                " FROM water_stations s, waterways w"
                " WHERE s.code LIKE 'DEMO-LGH-%' AND w.code = 'DEMO-WW-LGH'")).all()
            joins = conn.execute(text(
                "SELECT t.code, ST_Distance(ST_EndPoint(t.geom)::geography, w.geom::geography)"
                " AS m FROM waterways t, waterways w"
                " WHERE t.parent = w.name AND w.code = 'DEMO-WW-LGH'")).all()
    finally:
        engine.dispose()
    by_code = {r.code: r for r in rivers}
    assert set(by_code) == {"DEMO-WW-LGH", "DEMO-WW-DSH", "DEMO-WW-NYH"}
    assert all("合成" in r.name for r in rivers)  # named as synthetic, like the rest of it
    assert by_code["DEMO-WW-LGH"].kind == "river"
    # 1700 m across the district and 40 % beyond it, with its bends: a little over 2.4 km
    assert 2380 < by_code["DEMO-WW-LGH"].length_m < 2700
    assert len(gaps) == 5 and max(m for _, m in gaps) < 0.01, gaps
    assert {c for c, _ in joins} == {"DEMO-WW-DSH", "DEMO-WW-NYH"}
    assert max(m for _, m in joins) < 0.01, joins


def test_an_older_demo_gets_its_rivers_once(db_url, settings):
    engine = sync_engine(db_url)
    try:
        with engine.begin() as conn:  # a demo loaded before rivers existed: a dataset row only
            conn.execute(new_dataset("cityjson", "demo", source_path="/nowhere", sha256=None,
                                     size_bytes=1, options={"demo": True}, uploaded_by="demo"))
        assert demo.queue_demo(settings, db_url) == []
        assert demo.queue_demo(settings, db_url) == []
        with engine.connect() as conn:
            codes = conn.execute(text("SELECT code FROM waterways ORDER BY code")).scalars().all()
            datasets = conn.execute(text("SELECT count(*) FROM datasets")).scalar()
    finally:
        engine.dispose()
    assert codes == ["DEMO-WW-DSH", "DEMO-WW-LGH", "DEMO-WW-NYH"]
    assert datasets == 1  # nothing else of the demo was loaded again
