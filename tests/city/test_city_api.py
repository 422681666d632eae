"""Querying city objects: bbox, type, attributes, paging, GeoJSON with Z, typed errors."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from helpers_city import DATA, object_url
from helpers_tus import upload

from service.jobs.execute import run_job


@pytest.fixture
def city(live_server, auth, db_url, settings):
    op = auth("operator")
    for path, meta in ((DATA / "rotterdam_subset.json", {"crs": "EPSG:7415"}),
                       (DATA / "citygml4j_lod2_buildings_v2.city.json", {})):
        _, job_id = upload(live_server, op, path.read_bytes(), filename=path.name, **meta)
        assert run_job(job_id, db_url, settings) == "succeeded"
    return live_server


def items(server, **params) -> dict:
    r = httpx.get(f"{server.url}/city/objects", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/geo+json"
    return r.json()


def test_bbox_type_attribute_and_paging(city, db_url):
    everything = items(city, limit=1000)
    assert everything["numberReturned"] == 116
    ids = [f["id"] for f in everything["features"]]
    assert ids == sorted(ids)
    first = everything["features"][0]
    ring = first["geometry"]["coordinates"][0][0]
    assert first["geometry"]["type"] == "MultiPolygon" and all(len(p) == 3 for p in ring)

    # Rotterdam only, by bbox (tested against footprints)
    rotterdam = items(city, bbox="4.44,51.90,4.46,51.92", limit=1000)
    assert rotterdam["numberReturned"] == 16
    with psycopg.connect(db_url) as conn:
        terrain = conn.execute("SELECT count(*) FROM city_objects WHERE valid_to IS NULL AND "
                               "attributes->>'status' = '1'").fetchone()[0]
    # string and number attributes both match the query-string value
    assert items(city, **{"attr.status": "1"}, limit=1000)["numberReturned"] == terrain > 0
    assert items(city, **{"attr.roofType": "1030"}, limit=1000)["numberReturned"] == 100
    assert items(city, **{"attr.storeysAboveGround": "5", "type": "Building"},
                 limit=1000)["numberReturned"] > 0
    assert items(city, type="Road")["numberReturned"] == 0
    assert items(city, bbox="4.44,51.90,4.46,51.92", **{"attr.roofType": "1030"}
                 )["numberReturned"] == 0

    page = items(city, limit=50)
    assert page["numberReturned"] == 50
    nxt = next(link["href"] for link in page["links"] if link["rel"] == "next")
    second = httpx.get(nxt).json()
    assert [f["id"] for f in second["features"]] == ids[50:100]
    footprint = items(city, geometry="footprint", limit=1)["features"][0]["geometry"]
    assert footprint["type"] == "MultiPolygon"
    assert items(city, geometry="none", limit=1)["features"][0]["geometry"] is None


def test_one_object_and_its_parts(city):
    some = items(city, limit=1)["features"][0]
    one = httpx.get(object_url(city, some["id"]))
    assert one.status_code == 200
    body = one.json()
    assert body["properties"]["surfaces"] and len(body["properties"]["surfaces"]) == len(
        body["geometry"]["coordinates"])
    assert body["properties"]["valid_to"] is None


BAD_QUERIES = [
    ({"bbox": "1,2,3"}, 400), ({"bbox": "a,b,c,d"}, 400), ({"bbox": "5,5,4,4"}, 400),
    ({"bbox": "0,0,200,10"}, 400), ({"limit": "0"}, 422), ({"at": "yesterday"}, 422),
    ({"geometry": "4d"}, 422), ({"attr.": "x"}, 400),
]


def test_bad_queries_are_problems_and_unknown_objects_404(live_server):
    for params, status in BAD_QUERIES:
        r = httpx.get(f"{live_server.url}/city/objects", params=params)
        assert r.status_code == status, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"]
    r = httpx.get(object_url(live_server, "no-such-building"))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert httpx.get(object_url(live_server, "no-such-building") + "/history").status_code == 404
    summary = httpx.get(f"{live_server.url}/city").json()
    assert summary["objects"] == 0 and summary["tileset"] is None
