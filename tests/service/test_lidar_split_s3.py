"""A split LiDAR survey with the S3 tile store (a real SeaweedFS server): each chunk job
puts its tiles under the version's prefix, the last one publishes, and the objects are the
single job's, byte for byte, with no local tiles folder."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from service.core.db import sync_engine
from service.core.tables import tilesets
from service.jobs.execute import run_job
from service.lidar.tables import lidar_chunks
from service.tilesets.store import slug_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tiler"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_lidar import write_survey
from helpers_seaweedfs import SeaweedS3
from test_lidar_split import _submit
from test_tile_store_s3 import _objects, _use_s3


@pytest.fixture(scope="module")
def seaweed_server(tmp_path_factory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs-split")).start()
    yield server
    server.stop()


def test_split_survey_in_the_object_store_is_the_single_jobs(db_url, settings, seaweed_server,
                                                              tmp_path):
    _use_s3(settings, seaweed_server, f"tiles-{uuid.uuid4().hex[:12]}")
    settings.lidar_chunk_points = 100_000
    survey = write_survey(tmp_path / "flight.laz", 600_000, size=500.0, chunk=200_000)
    label = f"split s3 {tmp_path.name}"
    name = slug_name("survey", label)
    single = _submit(db_url, survey, {"survey": label, "split": "false", "model": "false"},
                     enqueue=False)
    assert run_job(single, db_url, settings) == "succeeded"
    split = _submit(db_url, survey, {"survey": label, "split": "true", "model": "false"},
                    enqueue=False)
    assert run_job(split, db_url, settings) == "waiting"
    with sync_engine(db_url).connect() as conn:
        chunk_jobs = conn.execute(select(lidar_chunks.c.job_id).where(
            lidar_chunks.c.split_job_id == split).order_by(lidar_chunks.c.chunk)).scalars().all()
    assert len(chunk_jobs) >= 3
    for i, job_id in enumerate(chunk_jobs):
        assert run_job(job_id, db_url, settings) == "succeeded"
        if i < len(chunk_jobs) - 1:  # not switched before the last chunk
            with sync_engine(db_url).connect() as conn:
                current = conn.execute(select(tilesets.c.version).where(
                    tilesets.c.name == name, tilesets.c.is_current)).scalar_one()
            assert current == 1
    with sync_engine(db_url).connect() as conn:
        rows = dict(conn.execute(select(tilesets.c.version, tilesets.c.status).where(
            tilesets.c.name == name)).all())
        current = conn.execute(select(tilesets.c.version).where(
            tilesets.c.name == name, tilesets.c.is_current)).scalar_one()
    assert rows == {1: "published", 2: "published"} and current == 2
    v1, v2 = _objects(settings, f"{name}/v1"), _objects(settings, f"{name}/v2")
    assert len(v1) > len(chunk_jobs) and v1.keys() == v2.keys()
    assert [k for k in v1 if v1[k] != v2[k]] == []
    assert not settings.tiles_dir.exists()
    left = [p for p in settings.tiles_scratch_dir.rglob("*") if p.is_file()]
    assert left == []
