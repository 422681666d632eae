"""An ingest publishes in one transaction: a worker killed after its rows and its dataset's
state were written, and before the switch of its tileset, leaves the old version current,
the dataset not 'ready' and none of its rows visible. For each kind (LiDAR, CityJSON, IFC):
a good version is published first, then the real job runs in a process of its own that
SIGKILLs itself at the switch."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import column, select, table

from service.core.db import sync_engine
from service.core.tables import datasets, jobs, tilesets
from service.datasets.store import new_dataset
from service.jobs.execute import run_job
from service.jobs.submit import submit_job

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"
AUTZEN = DATA / "lidar" / "pdal_autzen_trim.laz"  # 110,000 points, CRS in the file
ROTTERDAM = DATA / "cim" / "rotterdam_subset.json"  # 16 buildings, no CRS in the file
DEN_HAAG = DATA / "cim" / "DH_01_subs.city.json"  # LoD2 solids, no CRS in the file
HOUSE = DATA / "bim" / "IfcOpenHouse_IFC4.ifc"  # no georeferencing: needs an anchor
ANCHOR = {"lon": 114.25, "lat": 22.72, "height": 40.0}

# The real job, in a process of its own, with the switch replaced (here only) by a look at
# what the publishing transaction has written so far, and the process's death.
KILLED_AT_SWITCH = """
import json, os, signal, sys
from sqlalchemy import column, select, table
import service.jobs.publish as publishing
from service.core.settings import Settings
from service.core.tables import datasets
from service.jobs.execute import run_job

job_id, dataset_id, rows, seen = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

def die_at_switch(conn, version, stats):
    found = {"version": version.version, "status": conn.execute(
        select(datasets.c.status).where(datasets.c.id == dataset_id)).scalar_one()}
    if rows:
        t = table(rows, column("id"), column("dataset_id"))
        found["rows"] = list(conn.execute(select(t.c.id).where(t.c.dataset_id == dataset_id))
                             .scalars())
    with open(seen, "w") as out:
        json.dump(found, out)
    os.kill(os.getpid(), signal.SIGKILL)

publishing.publish_in = die_at_switch
run_job(job_id, os.environ["DATABASE_URL"], Settings())
"""


@pytest.fixture(scope="module")
def db_url(fresh_database) -> str:
    """A database of this module's own: the CIM tileset holds every city object of its
    database, and its version numbers count every ingest there."""
    from service.core import db

    url = fresh_database()
    db.upgrade(url)
    return url


def _dataset(db_url: str, settings, kind: str, path: Path, options: dict[str, Any]) -> int:
    source = settings.data_dir / "sources" / uuid.uuid4().hex / path.name
    source.parent.mkdir(parents=True)
    shutil.copy(path, source)
    with sync_engine(db_url).begin() as conn:
        return conn.execute(new_dataset(
            kind, path.name, source_path=str(source), sha256=None,
            size_bytes=source.stat().st_size, options=options, uploaded_by="test")
        ).scalar_one()


def _submit(db_url: str, kind: str, dataset_id: int, params: dict[str, Any] | None = None
            ) -> int:
    with sync_engine(db_url).begin() as conn:
        return submit_job(conn, f"ingest_{kind}", dataset_id=dataset_id, params=params or {},
                          enqueue=False, max_attempts=1)


def _publish_v1(db_url: str, settings, kind: str, dataset_id: int, name: str) -> int:
    """Run a good ingest to its end; the version of ``name`` it made current."""
    job_id = _submit(db_url, kind, dataset_id)
    assert run_job(job_id, db_url, settings) == "succeeded", _row(db_url, jobs, job_id).error
    [current] = [v for v, (_, is_current) in _versions(db_url, name).items() if is_current]
    return current


def _kill_at_switch(db_url: str, settings, kind: str, dataset_id: int, rows: str,
                    tmp_path: Path, params: dict[str, Any] | None = None
                    ) -> tuple[int, dict[str, Any]]:
    """Run an ingest job that dies at the switch; its id and what its last transaction had
    written when it died."""
    job_id = _submit(db_url, kind, dataset_id, params)
    seen, log = tmp_path / f"seen-{job_id}.json", tmp_path / f"job-{job_id}.log"
    env = dict(os.environ, DATABASE_URL=db_url, TWINBASE_DATA_DIR=str(settings.data_dir))
    with log.open("w") as out:
        # a session of its own: whatever the job started goes with it below
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_AT_SWITCH, str(job_id), str(dataset_id), rows,
             str(seen)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        proc.wait(300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    return job_id, json.loads(seen.read_text())


def _row(db_url: str, t, row_id: int):
    with sync_engine(db_url).connect() as conn:
        return conn.execute(select(t).where(t.c.id == row_id)).one()


def _versions(db_url: str, name: str) -> dict[int, tuple[str, bool]]:
    with sync_engine(db_url).connect() as conn:
        return {r.version: (r.status, r.is_current) for r in conn.execute(
            select(tilesets.c.version, tilesets.c.status, tilesets.c.is_current)
            .where(tilesets.c.name == name))}


def _row_ids(db_url: str, rows: str, dataset_id: int) -> set[int]:
    t = table(rows, column("id"), column("dataset_id"))
    with sync_engine(db_url).connect() as conn:
        return set(conn.execute(select(t.c.id).where(t.c.dataset_id == dataset_id)).scalars())


def _served(server, name: str) -> tuple[str, dict[str, Any]]:
    r = httpx.get(f"{server.url}/tiles/{name}/tileset.json")
    assert r.status_code == 200, r.text
    return r.headers["Twinbase-Tileset-Version"], r.json()


def _assert_old_version_stands(db_url: str, server, name: str, v1: int,
                               served_before: tuple[str, dict[str, Any]], job_id: int,
                               dataset_id: int, seen: dict[str, Any]) -> None:
    # the killed transaction had made the dataset ready and numbered a newer version ...
    assert seen["status"] == "ready" and seen["version"] > v1
    # ... none of which was committed: the old version is the current one, and served
    versions = _versions(db_url, name)
    assert versions[v1] == ("published", True)
    assert [v for v, (_, current) in versions.items() if current] == [v1]
    status, current = versions[seen["version"]]
    assert status != "published" and not current
    assert _served(server, name) == served_before == (str(v1), served_before[1])
    assert _row(db_url, datasets, dataset_id).status != "ready"
    assert _row(db_url, jobs, job_id).status != "succeeded"


def test_lidar_killed_at_the_switch_publishes_nothing(db_url, settings, live_server, tmp_path):
    survey = f"atomic {uuid.uuid4().hex[:8]}"
    name = "survey-" + survey.replace(" ", "-")
    first = _dataset(db_url, settings, "lidar", AUTZEN, {"survey": survey})
    v1 = _publish_v1(db_url, settings, "lidar", first, name)
    before = _served(live_server, name)

    second = _dataset(db_url, settings, "lidar", AUTZEN, {"survey": survey})
    job_id, seen = _kill_at_switch(db_url, settings, "lidar", second, "", tmp_path)

    _assert_old_version_stands(db_url, live_server, name, v1, before, job_id, second, seen)
    # the survey's row is the data of a LiDAR ingest: none of it was stored
    killed = _row(db_url, datasets, second)
    assert killed.footprint is None and killed.bounds3d is None
    assert _row(db_url, datasets, first).status == "ready"


def test_cityjson_killed_at_the_switch_publishes_nothing(db_url, settings, live_server, tmp_path):
    first = _dataset(db_url, settings, "cityjson", ROTTERDAM, {"crs": "EPSG:7415"})
    v1 = _publish_v1(db_url, settings, "cityjson", first, "cim")
    before = _served(live_server, "cim")
    first_rows = _row_ids(db_url, "city_objects", first)
    assert len(first_rows) == 16

    second = _dataset(db_url, settings, "cityjson", DEN_HAAG, {"crs": "EPSG:7415"})
    job_id, seen = _kill_at_switch(db_url, settings, "cityjson", second, "city_objects",
                                   tmp_path)

    assert seen["rows"]  # the killed load had written its objects in its transaction
    _assert_old_version_stands(db_url, live_server, "cim", v1, before, job_id, second, seen)
    assert _row_ids(db_url, "city_objects", second) == set()
    assert _row_ids(db_url, "city_objects", first) == first_rows


def test_ifc_killed_at_the_switch_publishes_nothing(db_url, settings, live_server, tmp_path):
    dataset_id = _dataset(db_url, settings, "ifc", HOUSE, {"anchor": ANCHOR})
    name = f"bim-{dataset_id}"
    v1 = _publish_v1(db_url, settings, "ifc", dataset_id, name)
    before = _served(live_server, name)
    published_rows = _row_ids(db_url, "bim_elements", dataset_id)
    assert published_rows

    # the same model again: the new rows replace the old ones in the killed transaction
    job_id, seen = _kill_at_switch(db_url, settings, "ifc", dataset_id, "bim_elements",
                                   tmp_path)

    assert seen["rows"] and not set(seen["rows"]) & published_rows
    _assert_old_version_stands(db_url, live_server, name, v1, before, job_id, dataset_id, seen)
    assert _row_ids(db_url, "bim_elements", dataset_id) == published_rows


def test_a_handler_that_locks_its_job_first_publishes_with_its_last_progress(db_url, settings):
    """BIM locks the job before it writes its rows; publishing in that transaction does not
    lock it again, which would drop the progress the first lock held back (and it is
    stored with the success: a finished job has done all of its items). A dataset with no
    tileset to switch (a city without geometry) publishes too, and a polygon footprint is
    stored as the multipolygon the column holds."""
    from shapely.geometry import Polygon
    from sqlalchemy import func

    from service.jobs import store
    from service.jobs.context import JobContext
    from service.jobs.publish import DatasetOutcome, publish

    engine = sync_engine(db_url)
    with engine.begin() as conn:
        dataset_id = conn.execute(new_dataset(
            "ifc", "model.ifc", source_path="", sha256=None, size_bytes=0, options={},
            uploaded_by="test")).scalar_one()
    job_id = _submit(db_url, "ifc", dataset_id)
    with engine.begin() as conn:
        claimed = conn.execute(store.claim(job_id, "test:1")).one()
    ctx = JobContext(job_id=job_id, kind="ingest_ifc", dataset_id=dataset_id, params={},
                     engine=engine, settings=settings, attempt=claimed.attempts)
    square = Polygon([(8.0, 49.0), (8.001, 49.0), (8.001, 49.001), (8.0, 49.001)])
    with engine.begin() as conn:
        ctx.progress("database", 7, 9)
        ctx.hold(conn)
        publish(ctx, conn, dataset=DatasetOutcome(
            stats={"elements": 7}, crs="EPSG:25832", height_note=None, footprint=square,
            bounds3d=None), version=None, tileset_stats=None, report={"elements": 7})

    job = _row(db_url, jobs, job_id)
    assert (job.status, job.items_total, job.items_done) == ("succeeded", 9, 9)
    assert job.report == {"elements": 7}
    with engine.connect() as conn:
        ds = conn.execute(select(datasets.c.status, datasets.c.stats, datasets.c.crs,
                                 func.ST_GeometryType(datasets.c.footprint))
                          .where(datasets.c.id == dataset_id)).one()
    assert tuple(ds) == ("ready", {"elements": 7}, "EPSG:25832", "ST_MultiPolygon")
