"""A LiDAR survey tiled in chunks by several `twinbase worker` processes: one worker killed
mid-chunk costs only its chunk, and the published tiles are the single job's, point for
point; a chunk that cannot be tiled fails the ingest with its reason and the previous
version stays current."""

from __future__ import annotations

import pickle
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from service.core.db import sync_engine
from service.core.tables import datasets, jobs, tilesets
from service.datasets.store import new_dataset
from service.jobs.cleanup import fail_job_in
from service.jobs.execute import run_job
from service.jobs.submit import submit_job
from service.lidar.chunks import settle_failed_chunks
from service.lidar.tables import lidar_chunks, lidar_splits
from service.tilesets.store import slug_name
from tiler.pointcloud.split import STATE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tiler"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_lidar import read_tileset_points, write_survey
from test_jobs import worker_process

POINTS = 1_000_000
CHUNK_POINTS = 120_000  # several chunks of a second or so each


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    return write_survey(tmp_path_factory.mktemp("split-survey") / "flight.laz", POINTS,
                        size=600.0, chunk=250_000)


@pytest.fixture
def split_settings(settings):
    settings.lidar_chunk_points = CHUNK_POINTS
    return settings


def _submit(db_url: str, path: Path, options: dict[str, str], *, enqueue: bool) -> int:
    with sync_engine(db_url).begin() as conn:
        dataset_id = conn.execute(new_dataset(
            "lidar", path.name, source_path=str(path), sha256=None,
            size_bytes=path.stat().st_size, options=options, uploaded_by="test")).scalar_one()
        return submit_job(conn, "ingest_lidar", dataset_id=dataset_id, params={},
                          created_by="test", max_attempts=3, enqueue=enqueue)


def _job(db_url: str, job_id: int):
    with sync_engine(db_url).connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).first()


def _wait(db_url: str, what, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def _chunks(db_url: str, split_job: int) -> list:
    with sync_engine(db_url).connect() as conn:
        return conn.execute(select(lidar_chunks, jobs.c.status.label("job_status"),
                                   jobs.c.attempts, jobs.c.error, jobs.c.report,
                                   jobs.c.worker.label("job_worker"))
                            .join(jobs, jobs.c.id == lidar_chunks.c.job_id)
                            .where(lidar_chunks.c.split_job_id == split_job)
                            .order_by(lidar_chunks.c.chunk)).all()


def _versions(db_url: str, name: str) -> dict[int, tuple[str, bool]]:
    with sync_engine(db_url).connect() as conn:
        rows = conn.execute(select(tilesets.c.version, tilesets.c.status, tilesets.c.is_current)
                            .where(tilesets.c.name == name)).all()
    return {r.version: (r.status, r.is_current) for r in rows}


def _glbs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted((folder / "content").rglob("*.glb"))}


def test_two_workers_one_killed_mid_chunk_publish_the_single_jobs_tiles(
        db_url, split_settings, survey, tmp_path):
    settings = split_settings
    label = f"split {tmp_path.name}"
    name = slug_name("survey", label)
    single = _submit(db_url, survey, {"survey": label, "split": "false", "model": "false"},
                     enqueue=False)
    assert run_job(single, db_url, settings) == "succeeded"

    split = _submit(db_url, survey, {"survey": label, "split": "true", "model": "false"},
                    enqueue=True)
    env = {"TWINBASE_DATA_DIR": str(settings.data_dir), "TWINBASE_WARM_START": "false",
           "TWINBASE_LIDAR_CHUNK_POINTS": str(CHUNK_POINTS)}
    log = tmp_path / "workers.log"
    with worker_process(db_url, log, **env) as first, worker_process(db_url, log, **env) as second:
        procs = {first.pid: first, second.pid: second}

        seen: set[str] = set()  # the workers seen running a chunk

        def running_chunk():
            found = None
            for c in _chunks(db_url, split):
                if c.job_status == "running" and c.job_worker:
                    seen.add(c.job_worker)
                    found = found or c
            return found

        victim = _wait(db_url, running_chunk)
        pid = int(victim.job_worker.rpartition(":")[2])
        procs[pid].send_signal(signal.SIGKILL)  # mid-chunk: no clean-up, no goodbye
        procs[pid].wait()
        with worker_process(db_url, log, **env):  # a replacement, as an orchestrator starts
            final = _wait(db_url, lambda: running_chunk() is None and (
                r := _job(db_url, split)).status in ("succeeded", "failed") and r)
    assert final.status == "succeeded", final.error + "\n" + log.read_text()[-3000:]

    # the killed chunk was retried, and only it: every other chunk ran once
    chunks = _chunks(db_url, split)
    assert len(chunks) >= 4
    assert all(c.status == "done" and c.job_status == "succeeded" for c in chunks)
    killed = next(c for c in chunks if c.chunk == victim.chunk)
    assert killed.attempts == 2 and "stopped responding" in killed.report["last_loss"]
    assert [c.attempts for c in chunks if c.chunk != victim.chunk] == [1] * (len(chunks) - 1)
    assert len(seen) >= 2  # the chunks were shared by the workers
    with sync_engine(db_url).connect() as conn:
        row = conn.execute(select(lidar_splits).where(lidar_splits.c.job_id == split)).one()
        ds = conn.execute(select(datasets).where(datasets.c.id == final.dataset_id)).one()
    assert row.status == "published" and row.chunks_done == row.chunks == len(chunks)
    assert not Path(row.spill).exists()
    assert final.report["split"]["chunks"] == len(chunks)
    assert final.items_done == final.items_total == POINTS
    assert ds.status == "ready" and ds.stats["points"] == POINTS
    assert _versions(db_url, name) == {1: ("published", False), 2: ("published", True)}

    # point for point: the same tiles, the same bytes, the same decoded points
    v1, v2 = settings.tiles_dir / name / "v1", settings.tiles_dir / name / "v2"
    a, b = _glbs(v1), _glbs(v2)
    assert len(a) > len(chunks) and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert (v1 / "tileset.json").read_text() == (v2 / "tileset.json").read_text()
    pa, pb = read_tileset_points(v1 / "tileset.json"), read_tileset_points(v2 / "tileset.json")
    assert len(pb["ecef"]) == POINTS
    for key in ("ecef", "color", "intensity", "classification", "tile"):
        np.testing.assert_array_equal(pa[key], pb[key])


def test_a_chunk_that_cannot_be_tiled_fails_the_ingest_and_the_last_version_stays(
        db_url, split_settings, survey, tmp_path):
    settings = split_settings
    label = f"split bad {tmp_path.name}"
    name = slug_name("survey", label)
    good = _submit(db_url, survey, {"survey": label, "split": "false", "model": "false"},
                   enqueue=False)
    assert run_job(good, db_url, settings) == "succeeded"
    before = sorted(p.name for p in (settings.tiles_dir / name / "v1" / "content").rglob("*"))

    split = _submit(db_url, survey, {"survey": label, "split": "true", "model": "false"},
                    enqueue=False)
    assert run_job(split, db_url, settings) == "waiting"
    waiting = _job(db_url, split)
    assert waiting.status == "running" and waiting.worker is None
    assert waiting.stage == "tiling chunks" and waiting.report["split"]["chunks"] >= 3
    chunks = _chunks(db_url, split)
    with sync_engine(db_url).connect() as conn:
        spill = Path(conn.execute(select(lidar_splits.c.spill).where(
            lidar_splits.c.job_id == split)).scalar_one())
    # the shared files of the second chunk's first cell lose their end (a disk fault, a
    # clean-up script): no retry brings those points back
    _, plan_chunks = pickle.loads((spill / STATE).read_bytes())
    key = plan_chunks[1].cells[0][0]
    victim = sorted((spill / "cells").glob("-".join(map(str, key)) + ".*"))[-1]
    victim.write_bytes(victim.read_bytes()[:-100])

    assert run_job(chunks[0].job_id, db_url, settings) == "succeeded"
    assert run_job(chunks[1].job_id, db_url, settings) == "failed"
    bad = _job(db_url, chunks[1].job_id)
    assert "damaged or removed" in bad.error
    final = _job(db_url, split)
    assert final.status == "failed"
    assert final.error.startswith(f"chunk 2 of {len(chunks)} failed:")
    assert "damaged or removed" in final.error and "Ingest the survey again" in final.error
    # the chunks not started are failed with the reason, and never run
    for c in chunks[2:]:
        row = _job(db_url, c.job_id)
        assert row.status == "failed" and row.error.startswith("not run: the survey's ingest")
        assert run_job(c.job_id, db_url, settings) == "failed"
    # nothing of the new version is left, the previous one is untouched and current
    assert _versions(db_url, name) == {1: ("published", True), 2: ("failed", False)}
    assert not (settings.tiles_dir / name / "v2").exists()
    assert sorted(p.name for p in (settings.tiles_dir / name / "v1" / "content").rglob("*")) \
        == before
    assert not spill.exists()
    with sync_engine(db_url).connect() as conn:
        ds = conn.execute(select(datasets.c.status).where(datasets.c.id == final.dataset_id)
                          ).scalar_one()
    assert ds == "failed"


def test_a_chunk_out_of_attempts_fails_the_ingest(db_url, split_settings, survey, tmp_path):
    settings = split_settings
    label = f"split lost {tmp_path.name}"
    split = _submit(db_url, survey, {"survey": label, "split": "true", "model": "false"},
                    enqueue=False)
    assert run_job(split, db_url, settings) == "waiting"
    chunks = _chunks(db_url, split)
    # what the reaper does once the last attempt's worker of a chunk died
    with sync_engine(db_url).begin() as conn:
        fail_job_in(conn, chunks[0].job_id, "the worker running this job stopped responding "
                    "(killed or crashed) during stage 'tiling'; no attempts left",
                    from_status=("queued", "running"))
    assert settle_failed_chunks(db_url, settings) == 1
    final = _job(db_url, split)
    assert final.status == "failed"
    assert final.error.startswith(f"chunk 1 of {len(chunks)} failed: the worker running")
    assert settle_failed_chunks(db_url, settings) == 0  # settled once
