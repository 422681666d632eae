"""Tileset version numbers: taken in one statement on the bookkeeping connections, so two
builds of one tileset that start together must still get distinct numbers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select


def test_builds_started_together_get_distinct_versions(db_url, tmp_path):
    from service.core.db import bookkeeping_engine
    from service.core.tables import tilesets
    from service.tilesets.store import begin_version

    engine = bookkeeping_engine(db_url)

    def build(_: int):
        return begin_version(engine, tmp_path, "race-test", "mesh", dataset_id=None,
                             job_id=None)

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(build, range(12)))
    assert sorted(v.version for v in made) == list(range(1, 13))
    assert all(v.path == tmp_path / "race-test" / f"v{v.version}" and v.path.is_dir()
               for v in made)
    with engine.connect() as conn:
        rows = conn.execute(select(tilesets.c.version, tilesets.c.status, tilesets.c.path)
                            .where(tilesets.c.name == "race-test")).all()
    assert sorted(r.version for r in rows) == list(range(1, 13))
    assert {r.status for r in rows} == {"building"}
    assert all(r.path == f"race-test/v{r.version}" for r in rows)


def test_bookkeeping_commits_do_not_wait_for_the_disk_and_need_no_transaction(db_url):
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DataError

    from service.core.db import bookkeeping_engine

    with bookkeeping_engine(db_url).connect() as conn:
        assert conn.execute(text("SHOW synchronous_commit")).scalar() == "off"
        # autocommit: each statement stands alone; inside a transaction the failed one
        # would abort the next
        with pytest.raises(DataError):
            conn.execute(text("SELECT 1 / 0"))
        assert conn.execute(text("SELECT 2")).scalar() == 2
