"""The classified survey through the real service: AHN3 points of Delft with their classes
stripped to 1 are uploaded, ingested and modelled; the survey's tiles then carry the model
job's classes (a new version of its tileset), and the survey downloads as LAZ with the same
points and those classes. A file whose classes are meaningful keeps its tiles and downloads
as itself. Bad requests get a reason, and a model run that fails or dies at its switch
leaves the tiles and the classified file that were published."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import laspy
import numpy as np
import pytest
from helpers_lidar import match_to_source, read_tileset_points, source_points, to_source
from helpers_tus import upload

from service.jobs.execute import run_job

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
AHN = DATA / "recon" / "ahn3_delft_crop_100m.laz"  # 107,532 points, AHN's classes 1/2/6/9
CRS = "EPSG:7415"  # RD New + NAP: the crop has no CRS of its own

# the real job in a process of its own that dies where publishing switches a tileset
# (the one switch of the transaction that commits the model, its tiles and the survey's)
KILLED_AT_SWITCH = """
import os, signal, sys
import service.jobs.publish as publishing
from service.core.settings import Settings
from service.jobs.execute import run_job

def die_at_switch(conn, version, stats):
    os.kill(os.getpid(), signal.SIGKILL)

publishing.publish_in = die_at_switch
run_job(int(sys.argv[1]), os.environ["DATABASE_URL"], Settings())
"""


@pytest.fixture
def op(auth):
    return auth("operator")


@pytest.fixture
def big(settings):
    settings.max_upload_bytes = 20 * 1024 * 1024
    return settings


def _crop(path: Path, *, half: float | None = None, strip: bool) -> tuple[Path, np.ndarray]:
    """The AHN crop (or a square of ``half`` metres around its middle) written to ``path``
    as LAZ, its classes all 1 when ``strip``; AHN's own classes in file order."""
    las = laspy.read(AHN)
    ahn = np.asarray(las.classification).copy()
    if half is not None:
        cx, cy = (las.header.mins[:2] + las.header.maxs[:2]) / 2
        keep = (np.abs(np.asarray(las.x) - cx) < half) & (np.abs(np.asarray(las.y) - cy) < half)
        las.points = las.points[keep]
        ahn = ahn[keep]
    if strip:
        las.classification = np.ones(len(las.points), np.uint8)
    las.write(path)
    return path, ahn


def _ingest(server, op, db_url, settings, path: Path, **meta: str) -> tuple[int, dict]:
    dataset_id, job_id = upload(server, op, path.read_bytes(), filename=path.name, crs=CRS,
                                **meta)
    assert run_job(job_id, db_url, settings) == "succeeded"
    return dataset_id, httpx.get(f"{server.url}/jobs/{job_id}").json()["report"]


def _run(server, db_url, settings, job_id: int) -> dict:
    assert run_job(job_id, db_url, settings) == "succeeded", \
        httpx.get(f"{server.url}/jobs/{job_id}").json()["error"]
    return httpx.get(f"{server.url}/jobs/{job_id}").json()["report"]


def _model_again(server, op, dataset_id: int, body: dict | None = None) -> int:
    r = httpx.post(f"{server.url}/datasets/{dataset_id}/model", headers=op, json=body)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def _fetch_tiles(server, name: str, folder: Path) -> tuple[int, Path]:
    """The current version of tileset ``name`` fetched like a client (tileset.json, then
    every content file), saved in ``folder``; (version, path of tileset.json)."""
    r = httpx.get(f"{server.url}/tiles/{name}/tileset.json")
    assert r.status_code == 200, r.text
    tileset = r.json()
    stack = [tileset["root"]]
    while stack:
        tile = stack.pop()
        stack.extend(tile.get("children", []))
        if "content" in tile:
            uri = tile["content"]["uri"]
            got = httpx.get(f"{server.url}/tiles/{name}/{uri}")
            assert got.status_code == 200, uri
            (folder / uri).parent.mkdir(parents=True, exist_ok=True)
            (folder / uri).write_bytes(got.content)
    (folder / "tileset.json").write_text(json.dumps(tileset))
    return int(r.headers["Twinbase-Tileset-Version"]), folder / "tileset.json"


def _download(server, dataset_id: int, headers: dict | None = None) -> httpx.Response:
    return httpx.get(f"{server.url}/datasets/{dataset_id}/classified.laz", headers=headers,
                     timeout=60)


def _counts(classes: np.ndarray) -> dict[str, int]:
    v, c = np.unique(classes, return_counts=True)
    return {str(int(a)): int(b) for a, b in zip(v, c, strict=True)}


def test_the_tiles_and_the_download_carry_the_classes_of_the_model(
        live_server, op, db_url, big, tmp_path):
    path, ahn = _crop(tmp_path / "delft-stripped.laz", strip=True)
    ds, ingest = _ingest(live_server, op, db_url, big, path)
    name, v1 = ingest["tileset"], ingest["version"]
    report = _run(live_server, db_url, big, ingest["model_job_id"])
    cls_report = report["classification"]
    assert cls_report["kept_file_classes"] is False  # every point was class 1
    counts = cls_report["counts"]
    assert {"2", "6"} <= set(counts) and sum(counts.values()) == len(ahn)
    done = report["classified"]
    assert done["tiles_carry"] == "model" and done["tiles_version"] > v1
    assert done["tiles_classified_by_job"] == ingest["model_job_id"]
    assert done["class_counts"] == counts

    # the dataset says which classes its tiles carry, and the tileset has a new version
    survey = httpx.get(f"{live_server.url}/datasets/{ds}").json()
    stats = survey["stats"]
    assert stats["classification"]["kept_file_classes"] is False
    assert stats["classification"]["tiles_carry"] == "model"
    assert stats["classification"]["file_class_counts"] == {"1": len(ahn)}
    assert stats["class_counts"] == counts and stats["points"] == len(ahn)
    versions = {t["version"]: t["is_current"] for t in survey["tilesets"] if t["name"] == name}
    assert versions == {v1: False, done["tiles_version"]: True}

    # the tiles as a client reads them: every point's classification is the job's
    version, tileset = _fetch_tiles(live_server, name, tmp_path / "tiles")
    assert version == done["tiles_version"]
    pts = read_tileset_points(tileset)
    assert _counts(pts["classification"]) == counts

    # the download: the same points, in the same order, with the job's classes
    r = _download(live_server, ds)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.laszip"
    assert 'filename="delft-stripped-classified.laz"' in r.headers["content-disposition"]
    got = laspy.read(io.BytesIO(r.content))
    src = laspy.read(path)
    assert len(got.points) == len(src.points) == len(ahn)
    assert np.array_equal(got.header.scales, src.header.scales)
    assert np.array_equal(got.header.offsets, src.header.offsets)
    for dim in ("X", "Y", "Z", "intensity", "return_number", "number_of_returns", "gps_time"):
        assert np.array_equal(np.asarray(got[dim]), np.asarray(src[dim])), dim
    classes = np.asarray(got.classification)
    assert _counts(classes) == counts

    # point for point: each tile point, matched to its source point by position (heights
    # back through NAP), has the class the download gives that point. Tile positions come
    # back within 0.6 mm, and no two points of the crop are nearer than 7 mm: the nearest
    # point within 3 mm is the one
    saved = tmp_path / "classified.laz"
    saved.write_bytes(r.content)
    s = source_points(saved)
    back = to_source(pts["ecef"], CRS)
    m = match_to_source(s, back, 0.003, snap=False)
    assert np.array_equal(pts["classification"], classes[m])

    # mostly AHN's own classes: buildings (6) and ground (2) as AHN has them
    b_true, b_got = ahn == 6, classes == 6
    tp = int((b_true & b_got).sum())
    f1 = 2 * tp / (b_true.sum() + b_got.sum())
    ground_error = float(((ahn == 2) != (classes == 2)).mean())
    assert f1 >= 0.93, f1  # 0.954 measured
    assert ground_error <= 0.05, ground_error  # 0.016 measured

    # the version the ingest made (the file's classes) stays at its versioned URL
    old = httpx.get(f"{live_server.url}/tiles/{name}/v{v1}/tileset.json")
    assert old.status_code == 200


def test_a_file_with_meaningful_classes_keeps_its_tiles_and_downloads_as_itself(
        live_server, op, db_url, big, tmp_path):
    path, ahn = _crop(tmp_path / "delft-ahn.laz", half=30.0, strip=False)
    ds, ingest = _ingest(live_server, op, db_url, big, path)
    name, v1 = ingest["tileset"], ingest["version"]
    report = _run(live_server, db_url, big, ingest["model_job_id"])
    assert report["classification"]["kept_file_classes"] is True
    done = report["classified"]
    assert done["tiles_carry"] == "file" and done["tiles_version"] == v1
    assert done["laz_file"] is None and "tiles" not in done["seconds"]

    survey = httpx.get(f"{live_server.url}/datasets/{ds}").json()
    assert [t["version"] for t in survey["tilesets"] if t["name"] == name] == [v1]
    assert survey["stats"]["classification"]["tiles_carry"] == "file"
    version, tileset = _fetch_tiles(live_server, name, tmp_path / "tiles")
    assert version == v1
    assert _counts(read_tileset_points(tileset)["classification"]) == _counts(ahn)

    r = _download(live_server, ds)
    assert r.status_code == 200, r.text
    assert r.content == path.read_bytes()
    assert 'filename="delft-ahn.laz"' in r.headers["content-disposition"]
    assert not list((big.data_dir / "sources" / str(ds)).glob("*classified*"))


def test_requests_the_download_cannot_answer(live_server_factory, op, db_url, big,
                                            make_key, tmp_path):
    from service.app import create_app

    big.read_requires_key = True
    viewer = {"Authorization": f"Bearer {make_key('viewer')}"}
    with live_server_factory(create_app(big, db_url, in_process_worker=False)) as server:
        r = _download(server, 999999, viewer)
        assert r.status_code == 404 and "no dataset 999999" in r.json()["detail"]
        city = DATA / "cim" / "rotterdam_subset.json"
        cid, _ = upload(server, op, city.read_bytes(), filename=city.name, crs=CRS)
        r = _download(server, cid, viewer)
        assert r.status_code == 422 and "not a LiDAR survey" in r.json()["detail"]
        path, _ = _crop(tmp_path / "never.laz", half=15.0, strip=True)
        sid, job = upload(server, op, path.read_bytes(), filename=path.name, crs=CRS,
                          model="false")
        r = _download(server, sid, viewer)  # still being ingested
        assert r.status_code == 409 and f"POST /datasets/{sid}/model" in r.json()["detail"]
        assert run_job(job, db_url, big) == "succeeded"
        r = _download(server, sid, viewer)
        assert r.status_code == 409, r.text
        assert "has not been modelled" in r.json()["detail"]
        assert f"POST /datasets/{sid}/model" in r.json()["detail"]
        assert _download(server, sid).status_code == 401  # reads need a key here
        # queued: the answer names the job
        queued = _model_again(server, op, sid)
        r = _download(server, sid, viewer)
        assert r.status_code == 409
        assert f"being modelled (job {queued} is queued)" in r.json()["detail"]


def test_a_failed_or_killed_model_run_keeps_the_published_tiles_and_file(
        live_server, op, db_url, big, tmp_path):
    path, _ = _crop(tmp_path / "delft-small.laz", half=25.0, strip=True)
    ds, ingest = _ingest(live_server, op, db_url, big, path, model="false")
    name = ingest["tileset"]
    first = _run(live_server, db_url, big, _model_again(live_server, op, ds))["classified"]
    assert first["tiles_carry"] == "model" and first["laz_file"]
    folder = big.data_dir / "sources" / str(ds)
    published = _download(live_server, ds).content
    digest = hashlib.sha256(published).hexdigest()
    before = httpx.get(f"{live_server.url}/tiles/{name}/tileset.json")

    def unchanged() -> None:
        now = httpx.get(f"{live_server.url}/tiles/{name}/tileset.json")
        assert now.headers["Twinbase-Tileset-Version"] == str(first["tiles_version"])
        assert now.content == before.content
        assert hashlib.sha256(_download(live_server, ds).content).hexdigest() == digest
        assert (folder / first["laz_file"]).is_file()

    # a footprint layer that is no layer: the job fails with the reason, nothing changes
    bad = big.data_dir / "layers" / "broken.gpkg"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    job = _model_again(live_server, op, ds, {"footprints": "layers/broken.gpkg"})
    assert run_job(job, db_url, big) == "failed"
    assert "footprint layer" in httpx.get(f"{live_server.url}/jobs/{job}").json()["error"]
    unchanged()
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, first["laz_file"]])

    # a run killed where it publishes: it had written its file and tiles, none of which shows
    job = _model_again(live_server, op, ds)
    env = dict(os.environ, DATABASE_URL=db_url, TWINBASE_DATA_DIR=str(big.data_dir))
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_AT_SWITCH, str(job)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        proc.wait(300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert (folder / f"classified-job{job}-a1.laz").is_file()  # made, never published
    unchanged()
    survey = httpx.get(f"{live_server.url}/datasets/{ds}").json()
    assert survey["stats"]["classification"]["laz_file"] == first["laz_file"]
    made = [t for t in survey["tilesets"] if t["name"] == name
            and t["version"] > first["tiles_version"]]
    assert made and not any(t["is_current"] or t["status"] == "published" for t in made)

    # the next run publishes its own, and the file it replaces goes
    again = _run(live_server, db_url, big, _model_again(live_server, op, ds))["classified"]
    assert again["tiles_version"] > first["tiles_version"] and again["laz_file"]
    assert not (folder / first["laz_file"]).exists()
    assert (folder / again["laz_file"]).is_file()
    now = httpx.get(f"{live_server.url}/tiles/{name}/tileset.json")
    assert now.headers["Twinbase-Tileset-Version"] == str(again["tiles_version"])
    assert laspy.read(io.BytesIO(_download(live_server, ds).content)).header.point_count \
        == laspy.read(io.BytesIO(published)).header.point_count


def test_an_older_survey_modelled_again_leaves_a_newer_survey_on_top(
        live_server, op, db_url, big, tmp_path):
    """Two flights of the same area are versions of one tileset; modelling the first again
    must not bring its points back over the second's: its LAZ is published, its tiles not."""
    path, _ = _crop(tmp_path / "block.laz", half=20.0, strip=True)
    older, first = _ingest(live_server, op, db_url, big, path, survey="block", model="false")
    newer, second = _ingest(live_server, op, db_url, big, path, survey="block", model="false")
    name = first["tileset"]
    assert second["tileset"] == name and second["version"] > first["version"]
    report = _run(live_server, db_url, big, _model_again(live_server, op, older))
    done = report["classified"]
    assert done["laz_file"] and f"shows survey {newer} now" in done["note"]
    assert done["tiles_carry"] == "file"  # the survey's tiles were left as they were
    now = httpx.get(f"{live_server.url}/tiles/{name}/tileset.json")
    assert now.headers["Twinbase-Tileset-Version"] == str(second["version"])
    survey = httpx.get(f"{live_server.url}/datasets/{older}").json()
    assert [t["version"] for t in survey["tilesets"]] == [first["version"]]
    r = _download(live_server, older)
    assert r.status_code == 200
    got = laspy.read(io.BytesIO(r.content))
    assert _counts(np.asarray(got.classification)) == report["classification"]["counts"]
