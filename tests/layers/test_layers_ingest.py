"""Layer ingest and reads on a live server: all-or-nothing batches in JSON, NDJSON and CSV,
series, congestion, TPI and the water-quality assessment."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import text


@pytest.fixture
def api(live_server, auth):
    headers = auth("operator")

    def call(method: str, path: str, **kw) -> httpx.Response:
        kw.setdefault("timeout", 30)
        kw["headers"] = {**headers, **kw.get("headers", {})}
        return httpx.request(method, live_server.url + path, **kw)

    return call


def _segments(api, prefix: str) -> list[int]:
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [
            [114.30 + i * 0.001, 22.65], [114.3005 + i * 0.001, 22.6505]]},
         "properties": {"code": f"{prefix}-{i}", "road_class": rc, "lanes": 3,
                        "speed_limit_kmh": 60, "free_flow_kmh": 55}}
        for i, rc in enumerate(("primary", "expressway"))]}
    r = api("POST", "/layers/traffic/segments", json=fc)
    assert r.status_code == 201, r.text
    got = api("GET", "/collections/road_segments/items",
              params={"filter": f"code LIKE '{prefix}-%'", "sortby": "code"}).json()
    return [f["id"] for f in got["features"]]


def test_traffic_batches_series_and_tpi(api, db_url):
    ids = _segments(api, "ING")
    assert len(ids) == 2
    rows = [{"segment_id": ids[0], "observed_at": f"2026-03-02T08:{m:02d}:00+08:00",
             "volume": 30, "speed_kmh": 12.0, "occupancy": 40} for m in range(0, 60, 5)]
    assert api("POST", "/layers/traffic/observations", json=rows).status_code == 201
    ndjson = "\n".join(json.dumps({"segment_id": ids[1], "observed_at":
                                   f"2026-03-02T08:{m:02d}:00+08:00", "volume": 10,
                                   "speed_kmh": 70}) for m in range(0, 60, 5))
    r = api("POST", "/layers/traffic/observations", content=ndjson,
            headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 201 and r.json() == {"inserted": 12}
    csv_body = "segment_id,observed_at,volume,speed_kmh,occupancy\n" + "\n".join(
        f"{ids[0]},2026-03-02T09:{m:02d}:00Z,5,45.5," for m in range(0, 10, 5))
    r = api("POST", "/layers/traffic/observations", content=csv_body,
            headers={"content-type": "text/csv"})
    assert r.status_code == 201, r.text

    series = api("GET", f"/layers/traffic/segments/{ids[0]}/series", params={
        "start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z", "interval": "1h"}).json()
    first = series["points"][0]
    assert first["volume"] == 360 and first["speed_kmh"] == 12.0 and first["observations"] == 12
    assert first["level_name"] == "严重拥堵"  # primary road at 12 km/h
    raw = api("GET", f"/layers/traffic/segments/{ids[0]}/series", params={
        "start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"}).json()
    assert len(raw["points"]) == 14

    window = {"start": "2026-03-02T00:00:00Z", "end": "2026-03-02T01:00:00Z",
              "bbox": "114.299,22.649,114.303,22.652"}
    tpi = api("GET", "/layers/traffic/tpi", params=window).json()
    assert tpi["segments"] == 2
    assert 6 < tpi["tpi"] < 10  # the busy primary road dominates the VKT
    congestion = api("GET", "/layers/traffic/congestion", params=window).json()
    assert [s["level_en"] for s in congestion["segments"]] == ["severe", "free"]


def test_a_bad_row_refuses_the_whole_batch(api, db_url):
    ids = _segments(api, "BAD")
    from service.core.db import sync_engine

    def stored() -> int:
        with sync_engine(db_url).connect() as conn:
            return conn.execute(text("SELECT count(*) FROM traffic_observations WHERE"
                                     " segment_id = ANY(:ids)"), {"ids": ids}).scalar()

    good = {"segment_id": ids[0], "observed_at": "2026-03-03T08:00:00Z", "volume": 3,
            "speed_kmh": 30}
    rows = [good, {**good, "observed_at": "2026-03-03T08:05:00Z", "speed_kmh": -4},
            {**good, "observed_at": "2026-03-03T08:10:00"},
            {**good, "observed_at": "2026-03-03T08:15:00Z", "segment_id": 987654321},
            {**good, "observed_at": "2026-03-03T08:20:00Z", "volume": "lots"}, good]
    r = api("POST", "/layers/traffic/observations", json=rows)
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "nothing was written" in problem["detail"]
    reasons = {e["row"]: " ".join(e["reasons"]) for e in problem["errors"]}
    assert set(reasons) == {2, 3, 4, 5, 6}
    assert "speed_kmh" in reasons[2] and "time zone" in reasons[3]
    assert "not a road segment" in reasons[4] and "volume" in reasons[5]
    assert "same segment and time as row 1" in reasons[6]
    assert stored() == 0


def test_ingest_needs_a_writer_key(live_server, auth):
    r = httpx.post(live_server.url + "/layers/traffic/observations", json=[], timeout=10)
    assert r.status_code == 401
    r = httpx.post(live_server.url + "/layers/water/observations", json=[], timeout=10,
                   headers=auth("viewer"))
    assert r.status_code == 403


def test_water_samples_are_classed_and_assessed(api):
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [114.31, 22.66]},
         "properties": {"code": "ING-W1", "name": "测试水库站", "water_body": "测试水库",
                        "body_type": "reservoir"}}]}
    assert api("POST", "/layers/water/stations", json=fc).status_code == 201
    station = api("GET", "/collections/water_stations/items",
                  params={"code": "ING-W1"}).json()["features"][0]
    sid = station["id"]
    samples = [
        {"station_id": sid, "observed_at": "2026-04-01T00:00:00Z", "ph": 7.2,
         "dissolved_oxygen": 7.0, "tp": 0.04, "tn": 0.8, "nh3_n": 0.3},
        {"station_id": sid, "observed_at": "2026-04-02T00:00:00Z", "ph": 7.4,
         "dissolved_oxygen": 6.2, "tp": 0.12, "tn": 1.2, "nh3_n": 0.5},
    ]
    r = api("POST", "/layers/water/observations", json=samples)
    assert r.status_code == 201, r.text
    assert r.json()["inserted"] == 2
    # a bad batch leaves nothing: one unknown station, one sample with nothing to class
    bad = [{**samples[0], "observed_at": "2026-04-03T00:00:00Z"},
           {"station_id": 987654321, "observed_at": "2026-04-04T00:00:00Z", "ph": 7},
           {"station_id": sid, "observed_at": "2026-04-05T00:00:00Z", "water_temp": 20}]
    r = api("POST", "/layers/water/observations", json=bad)
    assert r.status_code == 422 and {e["row"] for e in r.json()["errors"]} == {2, 3}
    listed = api("GET", f"/layers/water/stations/{sid}/observations").json()["observations"]
    assert [o["class"] for o in listed] == ["V", "III"]  # newest first; lake TP 0.12 is V
    assert listed[0]["deciding"] == ["tp"]
    report = api("GET", f"/layers/water/stations/{sid}/assessment",
                 params={"start": "2026-04-01T00:00:00Z", "end": "2026-05-01T00:00:00Z"}).json()
    assert report["samples"] == 2
    assert report["means"]["tp"] == pytest.approx(0.08)
    assert report["assessment"]["class"] == "IV"  # mean TP 0.08 in a reservoir
    assert report["assessment"]["deciding"] == ["tp"]
    assert report["assessment"]["exceedance"]["tp"] == pytest.approx(0.6)
    assert report["samples_by_class"] == {"III": 1, "V": 1}
    latest = api("GET", f"/collections/water_stations/items/{sid}").json()
    assert latest["properties"]["latest_class"] == "V"
    # the map's view: every station's newest sample before a time, in one request
    at = {s["station_id"]: s["latest"] for s in api(
        "GET", "/layers/water/stations/latest",
        params={"end": "2026-04-01T12:00:00Z"}).json()["stations"]}
    assert at[sid]["class"] == "III" and at[sid]["observed_at"].startswith("2026-04-01")
    before = api("GET", "/layers/water/stations/latest",
                 params={"end": "2026-03-01T00:00:00Z"}).json()["stations"]
    assert {s["station_id"]: s["latest"] for s in before}[sid] is None
    now = api("GET", "/layers/water/stations/latest").json()["stations"]
    assert {s["station_id"]: s["latest"] for s in now}[sid]["class"] == "V"
    assert api("GET", "/layers/water/stations/latest",
               params={"end": "yesterday"}).status_code == 400
