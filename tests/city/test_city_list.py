"""/city/objects as a wrapper over the features pager: a bbox with heights (OGC API -
Features' six numbers) selects by the objects' height range, and the next link is there
exactly while more objects follow."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from helpers_city import DATA
from helpers_tus import upload

from service.jobs.execute import run_job


@pytest.fixture
def rotterdam(live_server, auth, db_url, settings):
    path = DATA / "rotterdam_subset.json"
    _, job_id = upload(live_server, auth("operator"), path.read_bytes(), filename=path.name,
                       crs="EPSG:7415")
    assert run_job(job_id, db_url, settings) == "succeeded"
    return live_server


def _ids(server, **params) -> list[str]:
    r = httpx.get(f"{server.url}/city/objects", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return [f["id"] for f in r.json()["features"]]


def test_a_bbox_with_heights_selects_by_height(rotterdam, db_url):
    flat = _ids(rotterdam, bbox="4.44,51.90,4.46,51.92")
    with psycopg.connect(db_url) as conn:
        tops = dict(conn.execute("SELECT object_id, max_z FROM city_objects "
                                 "WHERE valid_to IS NULL AND object_id = ANY(%s)", (flat,)))
    level = sorted(tops.values())[len(tops) // 2]  # the median top: about half reach it
    assert _ids(rotterdam, bbox="4.44,51.90,-1000,4.46,51.92,10000") == flat
    high = _ids(rotterdam, bbox=f"4.44,51.90,{level},4.46,51.92,10000")
    assert set(high) == {o for o, top in tops.items() if top >= level}
    assert 0 < len(high) < len(flat)
    assert _ids(rotterdam, bbox="4.44,51.90,9000,4.46,51.92,10000") == []
    r = httpx.get(f"{rotterdam.url}/city/objects", params={"bbox": "4.44,51.90,5,4.46,51.92,4"})
    assert r.status_code == 400 and "height" in r.json()["detail"]


def test_the_next_link_is_there_while_more_follow(rotterdam):
    everything = _ids(rotterdam)
    n = len(everything)

    def page(limit: int, offset: int) -> dict:
        return httpx.get(f"{rotterdam.url}/city/objects",
                         params={"limit": limit, "offset": offset}).json()

    last = page(n - 3, 3)
    assert [f["id"] for f in last["features"]] == everything[3:]
    assert [link["rel"] for link in last["links"]] == ["self"]
    short = page(n - 4, 3)
    assert [link["rel"] for link in short["links"]] == ["self", "next"]
    rest = httpx.get(short["links"][1]["href"]).json()
    assert [f["id"] for f in rest["features"]] == everything[-1:]
    assert [link["rel"] for link in rest["links"]] == ["self"]
