"""Fly and model through the real service: a simulated survey (truth known) uploaded as LAS
in EPSG:4547, ingested, then modelled into buildings of the city model; a second survey of the
same district with one building gone, one new and one raised; and bad input."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import httpx
import laspy
import numpy as np
import psycopg
import pytest
import shapely
from helpers_city import object_url
from helpers_tus import upload
from pyproj import Transformer

from recon.simulate import GROUND, Survey, simulate_district, write_las
from service.jobs.execute import run_job

TO_4547 = Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True)


@pytest.fixture
def op(auth):
    return auth("operator")


@pytest.fixture(scope="module")
def district() -> Survey:
    # 13 buildings on 120 m: small enough for seconds, enough to have every roof type
    return simulate_district(n_buildings=13, area_m=120.0, density=10.0, seed=7)


def _without(s: Survey, gone: set[int], raise_m: dict[int, float] | None = None) -> Survey:
    """The same district with the buildings ``gone`` razed (their roof points fall to the
    terrain, their wall returns vanish) and others raised."""
    xyz = s.xyz.copy()
    cls = s.truth_class.copy()
    bid = s.building_id.copy()
    keep = np.ones(len(s), bool)
    for b in gone:
        mine = np.flatnonzero(bid == b)
        first = mine[s.return_number[mine] == 1]
        walls = np.setdiff1d(mine, first)
        xyz[first, 2] = s.terrain(xyz[first, 0], xyz[first, 1])
        cls[first] = GROUND
        bid[first] = -1
        keep[walls] = False
    for b, dz in (raise_m or {}).items():
        xyz[bid == b, 2] += dz
    return dataclasses.replace(
        s, xyz=xyz[keep], truth_class=cls[keep], building_id=bid[keep],
        return_number=s.return_number[keep], number_of_returns=s.number_of_returns[keep],
        buildings=[b for b in s.buildings if b.id not in gone])


def _las(s: Survey, path: Path, day: dt.date, *, classified: bool = False) -> Path:
    write_las(s, path, classified=classified)
    las = laspy.read(path)
    las.header.creation_date = day
    las.write(path)
    return path


def _ingest(server, op, db_url, settings, path: Path, **meta: str) -> tuple[int, int | None]:
    """Upload and ingest a survey; the dataset id and the fly-and-model job it queued."""
    dataset_id, job_id = upload(server, op, path.read_bytes(), filename=path.name, **meta)
    assert run_job(job_id, db_url, settings) == "succeeded"
    report = httpx.get(f"{server.url}/jobs/{job_id}").json()["report"]
    return dataset_id, report.get("model_job_id")


def _model(server, db_url, settings, job_id: int) -> dict:
    assert run_job(job_id, db_url, settings) == "succeeded", \
        httpx.get(f"{server.url}/jobs/{job_id}").json()
    return httpx.get(f"{server.url}/jobs/{job_id}").json()["report"]


def _footprints(db_url: str) -> dict[str, shapely.Geometry]:
    """Current stored footprints, in EPSG:4547."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT object_id, ST_AsBinary(footprint) FROM city_objects "
                            "WHERE valid_to IS NULL").fetchall()
    return {oid: shapely.transform(shapely.from_wkb(bytes(wkb)), lambda c: np.column_stack(
        TO_4547.transform(c[:, 0], c[:, 1]))) for oid, wkb in rows}


def _match(truth: list, stored: dict[str, shapely.Geometry]) -> dict[int, tuple[str, float]]:
    """Each true building's best stored footprint and its IoU."""
    out = {}
    for b in truth:
        best = max(((oid, shapely.intersection(b.footprint, fp).area
                     / shapely.union(b.footprint, fp).area) for oid, fp in stored.items()),
                   key=lambda t: t[1], default=(None, 0.0))
        out[b.id] = best
    return out


@pytest.fixture
def big(settings):
    settings.max_upload_bytes = 60 * 1024 * 1024
    return settings


def test_survey_to_buildings_and_a_resurvey(live_server, op, db_url, big, district, tmp_path):
    url = live_server.url
    added, razed, raised = district.buildings[0].id, district.buildings[1].id, \
        district.buildings[2].id
    first = _without(district, {added})
    path1 = _las(first, tmp_path / "first.laz", dt.date(2026, 3, 1))
    ds1, job1 = _ingest(live_server, op, db_url, big, path1, survey="fly test")
    assert job1 is not None, "a LiDAR ingest queues the fly-and-model job"
    report = _model(live_server, db_url, big, job1)
    assert report["classification"]["kept_file_classes"] is False  # all class 1 in the file
    assert report["thresholds"] == {"footprint_iou_changed": 0.8, "height_change_m": 1.0}
    counts = report["buildings"]
    assert counts["new"] == len(first.buildings) and counts["changed"] == 0
    assert counts["demolished"] == 0 and counts["unchanged"] == 0

    stored = _footprints(db_url)
    matched = _match(first.buildings, stored)
    ious = [iou for _, iou in matched.values()]
    assert min(ious) >= 0.9, sorted(ious)
    assert len({oid for oid, _ in matched.values()}) == len(first.buildings)

    # in the city API, with LoD2.2 semantic surfaces and LoD1.2 beside them
    listed = httpx.get(f"{url}/city/objects", params={"limit": 100}).json()
    assert listed["numberReturned"] == len(first.buildings)
    one = httpx.get(object_url(live_server, matched[raised][0])).json()
    props = one["properties"]
    assert props["lod"] == "2.2" and props["dataset_id"] == ds1
    assert props["valid_from"].startswith("2026-03-01")
    assert {"RoofSurface", "WallSurface", "GroundSurface"} <= set(props["surfaces"])
    assert "1.2" in props["other_lods"]
    assert props["attributes"]["rmse_m"] < 0.3
    items = httpx.get(f"{url}/collections/city_objects/items", params={"limit": 100}).json()
    assert len(items["features"]) == len(first.buildings)
    assert httpx.get(f"{url}/tiles/cim/tileset.json").status_code == 200

    changes = httpx.get(f"{url}/datasets/{ds1}/changes").json()
    assert changes["numberReturned"] == len(first.buildings)
    assert {f["properties"]["change"] for f in changes["features"]} == {"new"}
    assert all(f["properties"]["lod"] == "2.2" for f in changes["features"])

    # the same district later: one razed, one built, one raised by 4 m
    second = _without(district, {razed}, {raised: 4.0})
    path2 = _las(second, tmp_path / "second.laz", dt.date(2026, 6, 1))
    ds2, job2 = _ingest(live_server, op, db_url, big, path2, survey="fly test")
    report2 = _model(live_server, db_url, big, job2)
    labels = {c["object_id"]: c["change"] for c in report2["changes"]}
    assert labels[matched[razed][0]] == "demolished"
    assert labels[matched[raised][0]] == "changed"
    new_ids = [oid for oid, ch in labels.items() if ch == "new"]
    assert len(new_ids) == 1
    unchanged = {b.id for b in district.buildings} - {added, razed, raised}
    assert all(labels[matched[b][0]] == "unchanged" for b in unchanged), labels
    assert report2["buildings"] == {"new": 1, "changed": 1, "unchanged": len(unchanged),
                                    "demolished": 1}

    now_stored = _footprints(db_url)
    assert matched[razed][0] not in now_stored
    new_building = next(b for b in district.buildings if b.id == added)
    fp = now_stored[new_ids[0]]
    assert shapely.intersection(fp, new_building.footprint).area \
        / shapely.union(fp, new_building.footprint).area >= 0.9
    # history: the raised building has two versions, the first ended when the second began
    hist = httpx.get(object_url(live_server, matched[raised][0]) + "/history").json()
    v1, v2 = (f["properties"] for f in hist["features"])
    assert v1["dataset_id"] == ds1 and v2["dataset_id"] == ds2
    assert v1["valid_to"] == v2["valid_from"] and v2["valid_from"].startswith("2026-06-01")
    assert v2["height"] == pytest.approx(v1["height"] + 4.0, abs=0.5)
    gone = httpx.get(object_url(live_server, matched[razed][0]) + "/history").json()
    assert gone["features"][-1]["properties"]["valid_to"].startswith("2026-06-01")
    # an unchanged building keeps its version (the first survey's row)
    kept = httpx.get(object_url(live_server, matched[next(iter(unchanged))][0]) + "/history")
    assert kept.json()["numberReturned"] == 1
    # the city as it was before the second survey still has the razed building
    before = httpx.get(object_url(live_server, matched[razed][0]),
                       params={"at": "2026-04-01T00:00:00Z"})
    assert before.status_code == 200

    listed2 = httpx.get(f"{url}/datasets/{ds2}/changes", params={"change": "demolished"}).json()
    assert [f["properties"]["object_id"] for f in listed2["features"]] == [matched[razed][0]]
    coll = httpx.get(f"{url}/collections/city_changes/items",
                     params={"dataset_id": ds2, "limit": 100}).json()
    # every building of the district: 10 unchanged, 1 changed, 1 new, 1 demolished
    assert len(coll["features"]) == len(district.buildings)
    razed_row = httpx.get(f"{url}/collections/city_changes/items",
                          params={"dataset_id": ds2, "change": "demolished"}).json()
    assert [f["properties"]["object_id"] for f in razed_row["features"]] == [matched[razed][0]]
    assert razed_row["features"][0]["geometry"]["type"] == "MultiPolygon"


def test_field_without_buildings(live_server, op, db_url, big, tmp_path):
    field = simulate_district(n_buildings=0, area_m=60.0, density=8.0, seed=3)
    path = _las(field, tmp_path / "field.laz", dt.date(2026, 2, 1))
    ds, job = _ingest(live_server, op, db_url, big, path)
    report = _model(live_server, db_url, big, job)
    assert report["buildings"] == {"new": 0, "changed": 0, "unchanged": 0, "demolished": 0}
    assert report["written"] == 0 and report["tiles"] is None
    survey = httpx.get(f"{live_server.url}/datasets/{ds}").json()
    assert survey["status"] == "ready" and survey["stats"]["points"] == len(field)
    assert survey["stats"]["model"]["buildings"]["new"] == 0


def test_a_dataset_that_is_not_a_ready_survey_is_refused(live_server, op, db_url, big,
                                                        tmp_path):
    r = httpx.post(f"{live_server.url}/datasets/999999/model", headers=op)
    assert r.status_code == 404
    cj = Path(__file__).resolve().parents[1] / "data" / "cim"
    sample = next(cj.glob("*.city.json"))
    ds, _ = upload(live_server, op, sample.read_bytes(), filename=sample.name)
    r = httpx.post(f"{live_server.url}/datasets/{ds}/model", headers=op)
    assert r.status_code == 422 and "not a LiDAR survey" in r.json()["detail"]
    small = simulate_district(n_buildings=1, area_m=30.0, density=4.0, seed=1)
    path = _las(small, tmp_path / "small.laz", dt.date(2026, 2, 1))
    sid, _ = upload(live_server, op, path.read_bytes(), filename=path.name)
    r = httpx.post(f"{live_server.url}/datasets/{sid}/model", headers=op)
    assert r.status_code == 409 and "not ready" in r.json()["detail"]
    assert httpx.post(f"{live_server.url}/datasets/{sid}/model").status_code in (401, 403)
