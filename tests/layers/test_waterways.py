"""Waterways (rivers, streams, canals) in as GeoJSON lines, upserted by code and served as the
OGC API - Features collection ``waterways``; a bad feature refuses the whole request and
leaves what was there."""

from __future__ import annotations

import math

import httpx
import pytest


@pytest.fixture
def api(live_server, auth):
    headers = auth("operator")

    def call(method: str, path: str, **kw) -> httpx.Response:
        kw.setdefault("timeout", 30)
        kw["headers"] = {**headers, **kw.get("headers", {})}
        return httpx.request(method, live_server.url + path, **kw)

    return call


def _river(code: str, coords: list[list[float]], **props) -> dict:
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
            "properties": {"code": code, **props}}


# 0.01 degree of latitude along a meridian at 22.7 N: 1,106.9 m on the WGS 84 ellipsoid
# (meridian arc, m = a (1 - e^2) / (1 - e^2 sin^2 phi)^1.5 per radian)
_A, _E2 = 6378137.0, 0.00669437999014
_PHI = math.radians(22.705)
NORTH_001_M = _A * (1 - _E2) / (1 - _E2 * math.sin(_PHI) ** 2) ** 1.5 * math.radians(0.01)


def test_rivers_are_written_served_and_updated(api):
    fc = {"type": "FeatureCollection", "features": [
        _river("WW-LGH", [[114.25, 22.70], [114.25, 22.71]], name="龙岗河", kind="river"),
        _river("WW-DKH", [[114.26, 22.72], [114.25, 22.705]], name="丁山河", kind="stream",
               parent="龙岗河")]}
    r = api("POST", "/layers/water/waterways", json=fc)
    assert r.status_code == 201 and r.json() == {"written": 2}, r.text
    got = api("GET", "/collections/waterways/items", params={"sortby": "code"}).json()
    by_code = {f["properties"]["code"]: f for f in got["features"]}
    assert set(by_code) >= {"WW-LGH", "WW-DKH"}
    main = by_code["WW-LGH"]
    assert main["geometry"]["type"] == "LineString"
    assert main["properties"]["name"] == "龙岗河" and main["properties"]["kind"] == "river"
    assert main["properties"]["length_m"] == pytest.approx(NORTH_001_M, rel=1e-4)
    assert by_code["WW-DKH"]["properties"]["parent"] == "龙岗河"
    # a filter on the name, as the dashboard's click asks by id
    one = api("GET", f"/collections/waterways/items/{main['id']}").json()
    assert one["properties"]["code"] == "WW-LGH"

    # the same code again is an update, not a second river
    fc["features"][0]["geometry"]["coordinates"] = [[114.25, 22.70], [114.25, 22.72]]
    assert api("POST", "/layers/water/waterways", json=fc).status_code == 201
    again = api("GET", "/collections/waterways/items",
                params={"filter": "code = 'WW-LGH'"}).json()["features"]
    assert len(again) == 1
    assert again[0]["properties"]["length_m"] == pytest.approx(2 * NORTH_001_M, rel=1e-4)

    index = api("GET", "/layers").json()
    assert index["water"]["waterways"] == "/collections/waterways"


def test_a_bad_waterway_refuses_the_request(api, auth, live_server):
    good = _river("WW-OK", [[114.2, 22.7], [114.21, 22.7]], name="好河")
    assert api("POST", "/layers/water/waterways",
               json={"type": "FeatureCollection", "features": [good]}).status_code == 201
    bad = {"type": "FeatureCollection", "features": [
        {**good, "geometry": {"type": "LineString", "coordinates": [[114.2, 22.7],
                                                                   [114.3, 22.8]]}},
        _river("WW-PT", [114.2, 22.7], name="点"),
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [114.2, 22.7]},
         "properties": {"code": "WW-PT2", "name": "点"}},
        _river("WW-NONAME", [[114.2, 22.7], [114.21, 22.71]]),
        _river("WW-KIND", [[114.2, 22.7], [114.21, 22.71]], name="湖", kind="lake"),
        _river("WW-XY", [[500000, 2500000], [500100, 2500100]], name="米"),
    ]}
    r = api("POST", "/layers/water/waterways", json=bad)
    assert r.status_code == 422, r.text
    reasons = {e["row"]: " ".join(e["reasons"]) for e in r.json()["errors"]}
    assert set(reasons) == {2, 3, 4, 5, 6}, reasons
    assert "malformed" in reasons[2] and "must be a LineString" in reasons[3]
    assert "name is required" in reasons[4] and "kind must be one of" in reasons[5]
    assert "longitude, latitude" in reasons[6]
    # nothing of the request was written: the good river kept its line
    kept = api("GET", "/collections/waterways/items",
               params={"filter": "code = 'WW-OK'"}).json()["features"]
    assert kept[0]["geometry"]["coordinates"] == [[114.2, 22.7], [114.21, 22.7]]
    assert api("POST", "/layers/water/waterways", content=b"not json").status_code == 400
    viewer = httpx.post(live_server.url + "/layers/water/waterways", json=bad,
                        headers=auth("viewer"), timeout=10)
    assert viewer.status_code == 403
