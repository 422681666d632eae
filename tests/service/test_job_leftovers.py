"""What a dead worker or a failed job leaves behind is cleaned: the tiling processes end with
their worker, an abandoned preview stops being served and its files go, and the uploaded
source of a failed ingest is deleted (the samples and the operator's own files never)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import select

from service.core.db import sync_engine
from service.core.tables import datasets, jobs, tilesets
from service.datasets.store import new_dataset
from service.jobs.submit import submit_job

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data" / "lidar"
DELFT = DATA / "ahn3_delft_cropped_1.laz"  # 640,510 points, RD New (no CRS in the file)


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
    return found


def _running(pid: int) -> bool:
    """Exists and is not a zombie (an orphan's zombie waits for whoever reaps here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _job(db_url: str, job_id: int):
    with sync_engine(db_url).connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).first()


def _versions(db_url: str, job_id: int):
    with sync_engine(db_url).connect() as conn:
        return conn.execute(select(tilesets.c.status, tilesets.c.is_current, tilesets.c.path)
                            .where(tilesets.c.job_id == job_id)).all()


def _worker(db_url: str, settings, log: Path, warm: bool = False, **popen
            ) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=db_url, TWINBASE_DATA_DIR=str(settings.data_dir),
               TWINBASE_HEARTBEAT_SECONDS="0.5", TWINBASE_STALLED_AFTER_SECONDS="3",
               TWINBASE_LOG_LEVEL="info", TWINBASE_WARM_START=str(warm).lower())
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, **popen)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _uploaded_source(settings, path: Path) -> Path:
    target = settings.data_dir / "sources" / uuid.uuid4().hex / path.name
    target.parent.mkdir(parents=True)
    shutil.copy(path, target)
    return target


def test_a_worker_killed_mid_tiling_leaves_no_processes_and_its_preview_goes(
        db_url, settings, tmp_path):
    source = _uploaded_source(settings, DELFT)
    survey = f"killed {uuid.uuid4().hex[:8]}"
    with sync_engine(db_url).begin() as conn:
        dataset_id = conn.execute(new_dataset(
            "lidar", survey, source_path=str(source), sha256=None,
            size_bytes=source.stat().st_size, options={"survey": survey, "crs": "EPSG:28992"},
            uploaded_by="test")).scalar_one()
        job_id = submit_job(conn, "ingest_lidar", dataset_id=dataset_id, params={},
                            max_attempts=1)
    log = tmp_path / "worker.log"
    # warm: the worker's IFC geometry processes run too, as they do outside the tests
    first = _worker(db_url, settings, log, warm=True, start_new_session=True)
    try:
        # the coarse levels are served as soon as they exist: freeze the worker and its
        # processes right then, mid-tiling, and kill the worker outright
        deadline = time.monotonic() + 120
        while not any(v.status == "preview" for v in _versions(db_url, job_id)):
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGSTOP)
        children = _descendants(first.pid)
        assert _job(db_url, job_id).status == "running"
        # the forkserver, the tiling processes and the geometry processes
        assert len(children) >= 4
        first.kill()
        first.wait()
        os.killpg(first.pid, signal.SIGCONT)  # whatever is left of the group runs again
    finally:
        _stop(first)

    deadline = time.monotonic() + 20
    while any(_running(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in children if _running(p)]
    try:
        assert not left, "processes outlived their worker: " + ", ".join(
            Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            for p in left)
    finally:
        for p in left:
            os.kill(p, signal.SIGKILL)

    # what the dead worker left: its preview, current and served
    [(status, current, path)] = _versions(db_url, job_id)
    assert status == "preview" and current
    assert (settings.tiles_dir / path / "tileset.json").is_file()

    # the next worker finds the job dead (no attempts left) and takes the preview away
    second = _worker(db_url, settings, log)
    try:
        deadline = time.monotonic() + 60
        while _job(db_url, job_id).status == "running" or \
                _versions(db_url, job_id)[0].status != "failed":
            assert second.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        _stop(second)
    job = _job(db_url, job_id)
    assert job.status == "failed" and "stopped responding" in job.error
    [(status, current, path)] = _versions(db_url, job_id)
    assert (status, current) == ("failed", False)
    assert not (settings.tiles_dir / path).exists()
    with sync_engine(db_url).connect() as conn:
        ds = conn.execute(select(datasets.c.status, datasets.c.source_path)
                          .where(datasets.c.id == dataset_id)).one()
    # the dataset says what happened, and its upload no longer holds the disk
    assert ds.status == "failed" and ds.source_path is None and not source.exists()


def _ingest(db_url: str, settings, kind: str, source: Path) -> tuple[int, str]:
    from service.jobs.execute import run_job

    with sync_engine(db_url).begin() as conn:
        dataset_id = conn.execute(new_dataset(
            kind, source.name, source_path=str(source), sha256=None,
            size_bytes=source.stat().st_size, options={"crs": "EPSG:4547"},
            uploaded_by="test")).scalar_one()
        job_id = submit_job(conn, f"ingest_{kind}", dataset_id=dataset_id, params={},
                            max_attempts=1, enqueue=False)
    return dataset_id, run_job(job_id, db_url, settings)


def _source_of(db_url: str, dataset_id: int) -> str | None:
    with sync_engine(db_url).connect() as conn:
        return conn.execute(select(datasets.c.source_path)
                            .where(datasets.c.id == dataset_id)).scalar_one()


def test_the_uploaded_source_of_a_failed_ingest_is_deleted_and_no_other(
        db_url, settings, tmp_path):
    truncated = DATA / "pdal_autzen_trim.laz"
    cut = truncated.read_bytes()[:200_000]

    uploaded = _uploaded_source(settings, truncated)
    uploaded.write_bytes(cut)
    dataset_id, outcome = _ingest(db_url, settings, "lidar", uploaded)
    assert outcome == "failed"
    assert not uploaded.exists() and not uploaded.parent.exists()
    assert _source_of(db_url, dataset_id) is None

    # the operator's own file, ingested from where it lies (CLI, samples): never deleted
    own = tmp_path / "own" / "survey.laz"
    own.parent.mkdir()
    own.write_bytes(cut)
    dataset_id, outcome = _ingest(db_url, settings, "lidar", own)
    assert outcome == "failed" and own.read_bytes() == cut
    assert _source_of(db_url, dataset_id) == str(own)

    # an IFC model can be ingested again (POST /datasets/{id}/ingest): its upload stays
    model = _uploaded_source(settings, Path(__file__).resolve().parents[1] / "data" / "bim"
                             / "IfcOpenHouse_IFC4.ifc")
    model.write_text("ISO-10303-21;\nHEADER;\nthis is not a model\n")
    dataset_id, outcome = _ingest(db_url, settings, "ifc", model)
    assert outcome == "failed" and model.exists()
    assert _source_of(db_url, dataset_id) == str(model)
