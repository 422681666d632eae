"""OGC API - Features behaviour on a live server: core, CRS, filtering, tiles, errors."""

from __future__ import annotations

import json

import httpx
import pytest
from pyproj import Transformer

BBOX = "114.2446,22.7177,114.2494,22.7223"
F1 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"


def get(server, path: str, **params) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=30)


def items(server, collection: str = "road_segments", **params) -> dict:
    r = get(server, f"/collections/{collection}/items", **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    return r.json()


def ft(features: list[dict]) -> list[dict]:
    """Only the test grid's segments (other tests may add rows to the same tables)."""
    return [f for f in features if str(f["properties"].get("code", "")).startswith("FT-")]


def test_landing_conformance_and_api(server):
    landing = get(server, "/").json()
    rels = {link["rel"]: link["href"] for link in landing["links"]}
    for rel in ("service-desc", "service-doc", "conformance", "data"):
        assert rel in rels
    for path in ("/docs", "/health", "/ready", "/datasets", "/jobs", "/tiles", "/uploads"):
        assert any(link["href"].endswith(path) for link in landing["links"]), path
    conf = get(server, "/conformance").json()["conformsTo"]
    for c in ("core", "geojson", "oas30"):
        assert F1 + c in conf
    for c in ("filter", "features-filter", "queryables"):
        assert f"http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/{c}" in conf
    for c in ("cql2-text", "cql2-json", "basic-cql2"):
        assert f"http://www.opengis.net/spec/cql2/1.0/conf/{c}" in conf
    api = get(server, "/api")
    assert api.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    params = api.json()["paths"]["/collections/road_segments/items"]["get"]["parameters"]
    names = {p["name"]: p for p in params}
    # GDAL pushes -where filters only when filter-lang lists cql-text
    assert "cql-text" in names["filter-lang"]["schema"]["enum"]
    assert {"road_class", "lanes", "bbox", "datetime", "limit"} <= set(names)


def test_collections_extents_and_queryables(server):
    data = get(server, "/collections").json()
    ids = [c["id"] for c in data["collections"]]
    assert {"road_segments", "water_stations", "surveys", "city_objects"} <= set(ids)
    road = get(server, "/collections/road_segments").json()
    (x1, y1, x2, y2), = road["extent"]["spatial"]["bbox"]
    assert x1 <= 114.2441 and x2 >= 114.2505 and y1 <= 22.7171 and y2 >= 22.7230
    assert "http://www.opengis.net/def/crs/EPSG/0/4547" in road["crs"]
    assert any(link["rel"] == "items" for link in road["links"])
    q = get(server, "/collections/road_segments/queryables")
    assert q.headers["content-type"].startswith("application/schema+json")
    props = q.json()["properties"]
    assert props["lanes"]["type"] == "integer"
    assert props["road_class"]["enum"] == ["expressway", "primary", "secondary", "branch"]
    assert props["geometry"]["format"] == "geometry-linestring"
    assert get(server, "/collections/nope").status_code == 404


def test_bbox_paging_and_counts(server):
    first = items(server, bbox=BBOX, limit=50)
    total = first["numberMatched"]
    assert total > 50 and first["numberReturned"] == 50
    seen = [f["id"] for f in first["features"]]
    page = first
    while True:
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            break
        page = httpx.get(nxt[0], timeout=30).json()
        assert any(link["rel"] == "prev" for link in page["links"])
        seen += [f["id"] for f in page["features"]]
    assert len(seen) == len(set(seen)) == total
    whole = items(server, limit=1)
    assert whole["numberMatched"] >= 144  # the whole collection is counted exactly


def test_one_feature_and_404(server):
    feature = items(server, bbox=BBOX, limit=1)["features"][0]
    r = get(server, f"/collections/road_segments/items/{feature['id']}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    one = r.json()
    assert one["type"] == "Feature" and one["id"] == feature["id"]
    assert one["geometry"] == feature["geometry"]
    assert get(server, "/collections/road_segments/items/999999999").status_code == 404
    assert get(server, "/collections/road_segments/items/x'1").status_code == 404


def test_crs_output_and_bbox_crs(server):
    base = items(server, bbox=BBOX, limit=1)["features"][0]
    lon, lat = base["geometry"]["coordinates"][0]
    r = get(server, f"/collections/road_segments/items/{base['id']}",
            crs="http://www.opengis.net/def/crs/EPSG/0/4326")
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4326>"
    assert r.json()["geometry"]["coordinates"][0] == [lat, lon]  # EPSG:4326 is lat/lon
    cgcs = get(server, f"/collections/road_segments/items/{base['id']}", crs="EPSG:4490").json()
    assert cgcs["geometry"]["coordinates"][0] == pytest.approx([lat, lon], abs=1e-6)
    gk = get(server, f"/collections/road_segments/items/{base['id']}",
             crs="http://www.opengis.net/def/crs/EPSG/0/4547").json()
    north, east = gk["geometry"]["coordinates"][0]
    e, n = Transformer.from_crs(4326, 4547, always_xy=True).transform(lon, lat)
    assert (north, east) == pytest.approx((n, e), abs=0.01)  # northing first, as EPSG says
    assert 2_500_000 < north < 2_520_000 and 500_000 < east < 560_000
    # the same area as a bbox in EPSG:4326 (lat/lon) and in EPSG:4547 (northing/easting)
    x1, y1, x2, y2 = (float(v) for v in BBOX.split(","))
    lat_first = items(server, bbox=f"{y1},{x1},{y2},{x2}", limit=1,
                      **{"bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"})
    assert lat_first["numberMatched"] == items(server, bbox=BBOX, limit=1)["numberMatched"]
    t = Transformer.from_crs(4326, 4547, always_xy=True)
    (ea, na), (eb, nb) = t.transform(x1 + 0.001, y1 + 0.001), t.transform(x2 - 0.001, y2 - 0.001)
    projected = items(server, bbox=f"{na},{ea},{nb},{eb}", limit=1, **{"bbox-crs": "EPSG:4547"})
    assert 0 < projected["numberMatched"] <= lat_first["numberMatched"]
    assert get(server, "/collections/road_segments/items", crs="EPSG:3857").status_code == 400


@pytest.mark.parametrize(("params", "expected"), [
    ({"filter": "road_class = 'primary' AND lanes >= 4"},
     lambda p: p["road_class"] == "primary" and p["lanes"] >= 4),
    ({"filter": "road_class IN ('expressway', 'branch') AND NOT lanes BETWEEN 2 AND 5"},
     lambda p: p["road_class"] in ("expressway", "branch") and not 2 <= p["lanes"] <= 5),
    ({"filter": "name LIKE '测试路0%' AND CASEI(road_class) = casei('SECONDARY')"},
     lambda p: p["name"].startswith("测试路0") and p["road_class"] == "secondary"),
    ({"filter": "speed_limit_kmh > lanes * 10 + 5"},
     lambda p: p["speed_limit_kmh"] > p["lanes"] * 10 + 5),
    ({"filter": json.dumps({"op": "and", "args": [
        {"op": "=", "args": [{"property": "road_class"}, "primary"]},
        {"op": ">=", "args": [{"property": "lanes"}, 4]}]}), "filter-lang": "cql2-json"},
     lambda p: p["road_class"] == "primary" and p["lanes"] >= 4),
    ({"road_class": "branch", "lanes": "4"},  # queryables as query parameters
     lambda p: p["road_class"] == "branch" and p["lanes"] == 4),
])
def test_attribute_filters(server, params, expected):
    got = items(server, bbox=BBOX, limit=1000, **params)
    assert got["features"], params
    assert all(expected(f["properties"]) for f in got["features"])
    everything = items(server, bbox=BBOX, limit=1000)["features"]
    assert len(got["features"]) == sum(expected(f["properties"]) for f in everything)


def test_spatial_and_temporal_filters(server):
    small = "S_INTERSECTS(geometry, BBOX(114.2446,22.7177,114.2460,22.7190))"
    by_filter = items(server, filter=small, limit=1000)
    by_bbox = items(server, bbox="114.2446,22.7177,114.2460,22.7190", limit=1000)
    assert {f["id"] for f in by_filter["features"]} == {f["id"] for f in by_bbox["features"]}
    poly = ("S_WITHIN(geometry, POLYGON((114.2 22.7, 114.3 22.7, 114.3 22.8, 114.2 22.8,"
            " 114.2 22.7)))")
    assert ft(items(server, filter=poly, limit=1000)["features"])
    assert not ft(items(server, filter="S_INTERSECTS(geometry, POINT(0 0))")["features"])
    # CQL2-JSON spatial literal in EPSG:4326 axis order via filter-crs
    js = {"op": "s_intersects", "args": [{"property": "geometry"},
                                         {"bbox": [22.7177, 114.2446, 22.7190, 114.2460]}]}
    lat_lon = items(server, filter=json.dumps(js), limit=1000, **{
        "filter-lang": "cql2-json", "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"})
    assert {f["id"] for f in lat_lon["features"]} == {f["id"] for f in by_bbox["features"]}
    # temporal: road segments carry updated_at; water stations their latest sample time
    assert ft(items(server, filter="T_BEFORE(updated_at, TIMESTAMP('2026-06-01T00:00:00Z'))",
                    bbox=BBOX)["features"])
    assert not ft(items(server, filter="T_AFTER(updated_at, TIMESTAMP('2026-06-01T00:00:00Z'))"
                        " AND code LIKE 'FT-%'")["features"])
    during = items(server, "water_stations", filter="T_DURING(latest_observed_at, INTERVAL("
                   "'2026-05-15T00:00:00Z', '2026-06-15T00:00:00Z')) AND code LIKE 'FTW-%'")
    assert {f["properties"]["code"] for f in during["features"]} == {"FTW-0", "FTW-2"}


def test_water_stations_carry_their_latest_class(server):
    got = items(server, "water_stations", filter="code LIKE 'FTW-%'", sortby="code")
    by_code = {f["properties"]["code"]: f["properties"] for f in got["features"]}
    # June sample of FTW-0: NH3-N 2.6 mg/L is worse than class V (2.0) -> 劣V
    assert by_code["FTW-0"]["latest_class"] == "劣V"
    assert by_code["FTW-0"]["latest_deciding"] == ["nh3_n"]
    assert by_code["FTW-0"]["latest_exceedance"]["nh3_n"] == pytest.approx(1.6)
    # the lake sample: TP 0.08 is class IV for lakes (class II for rivers)
    assert by_code["FTW-2"]["latest_class"] == "IV"
    assert by_code["FTW-1"]["latest_class"] is None  # no samples yet
    worst = items(server, "water_stations", filter="latest_class = '劣V' AND code LIKE 'FTW-%'")
    assert [f["properties"]["code"] for f in worst["features"]] == ["FTW-0"]


def test_properties_and_sortby(server):
    got = items(server, bbox=BBOX, limit=20, properties="road_class,lanes", sortby="-lanes,code")
    lanes = [f["properties"]["lanes"] for f in got["features"]]
    assert lanes == sorted(lanes, reverse=True)
    assert all(set(f["properties"]) == {"road_class", "lanes"} for f in got["features"])


def test_city_objects_keep_z_and_history(server, layer_data):
    current = items(server, "city_objects", filter="object_id LIKE 'FT-BLD-%'")
    assert sorted(f["properties"]["object_id"] for f in current["features"]) == [
        "FT-BLD-1", "FT-BLD-2"]
    for f in current["features"]:
        ring = f["geometry"]["coordinates"][0][0]
        assert all(len(pos) == 3 for pos in ring)
        assert ring[0][2] == f["properties"]["max_z"]
    past = items(server, "city_objects", filter="object_id LIKE 'FT-BLD-%'",
                 datetime="2025-06-01T00:00:00Z")
    assert [(f["properties"]["object_id"], f["properties"]["max_z"])
            for f in past["features"]] == [("FT-BLD-1", 30.0)]
    surveys = items(server, "surveys", bbox=BBOX)
    mine = [f for f in surveys["features"] if f["id"] == layer_data["dataset_id"]]
    assert mine[0]["properties"]["point_count"] == 123456


def test_vector_tile(server):
    # z14 tile over the test grid (lon 114.245, lat 22.72)
    r = get(server, "/collections/road_segments/tiles/WebMercatorQuad/14/13391/7129")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert b"road_segments" in r.content and b"road_class" in r.content
    empty = get(server, "/collections/road_segments/tiles/WebMercatorQuad/14/0/0")
    assert empty.status_code == 200 and empty.content == b""
    filtered = get(server, "/collections/road_segments/tiles/WebMercatorQuad/14/13391/7129",
                   filter="road_class = 'expressway'")
    assert 0 < len(filtered.content) < len(r.content)
    assert get(server, "/collections/road_segments/tiles").json()["tilesets"]


@pytest.mark.parametrize(("params", "reason"), [
    ({"filter": "lanes >= "}, "not valid cql2-text"),
    ({"filter": "nosuch = 1"}, "unknown property 'nosuch'"),
    ({"filter": "lanes = 'four'"}, "cannot compare"),
    ({"filter": "lanes = 1; DROP TABLE road_segments"}, "not valid"),
    ({"filter": "name = '1'' OR ''1''=''1'"}, None),  # a string literal, harmless: 200
    ({"filter": "{\"op\": \"=\"", "filter-lang": "cql2-json"}, "not valid cql2-json"),
    ({"filter": "lanes = 1", "filter-lang": "sql"}, "not supported"),
    ({"filter": "FOO(lanes) = 1"}, "not supported"),
    ({"bbox": "1,2,3"}, "4 or 6"),
    ({"bbox": "a,b,c,d"}, "numbers"),
    ({"bbox": "10,10,5,5"}, "antimeridian"),
    ({"bbox": "114.3,22.8,114.2,22.9"}, "antimeridian"),
    ({"bbox": "114.2,22.8,114.3,22.7"}, "lower corner"),
    ({"bbox": "0,0,200,10"}, "outside"),
    ({"bbox": "nan,0,1,1"}, "finite"),
    ({"limit": "10001"}, "maximum"),
    ({"limit": "0"}, "at least 1"),
    ({"limit": "ten"}, "integer"),
    ({"offset": "-1"}, "negative"),
    ({"datetime": "yesterday"}, "RFC 3339"),
    ({"datetime": "2026-02-01T00:00:00"}, "time zone"),
    ({"sortby": "geom"}, "sortable"),
    ({"properties": "nope"}, "not in road_segments"),
    ({"lanes": "many"}, "not a valid integer"),
    ({"unknownparam": "1"}, "unknown query parameter"),
    ({"crs": "EPSG:99999"}, "not supported"),
])
def test_bad_requests_are_400_with_a_reason(server, params, reason):
    r = get(server, "/collections/road_segments/items", **params)
    if reason is None:
        assert r.status_code == 200
        return
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert reason in r.json()["detail"]


def test_the_table_survives_hostile_filters(server):
    before = items(server, limit=1)["numberMatched"]
    for hostile in ("1=1) OR (1=1", "lanes = 1)); DELETE FROM road_segments; --",
                    "\"lanes\"; DROP TABLE road_segments = 1"):
        assert get(server, "/collections/road_segments/items", filter=hostile).status_code == 400
    assert items(server, limit=1)["numberMatched"] == before


@pytest.mark.parametrize("collection", ["road_segments", "water_stations", "surveys",
                                        "city_objects", "bim_elements", "drone_routes",
                                        "airspace_zones", "route_network", "vertiports"])
def test_every_layer_is_a_collection(server, collection):
    listed = [c["id"] for c in get(server, "/collections").json()["collections"]]
    assert collection in listed
    page = items(server, collection, limit=2, bbox="114.0,22.4,114.6,22.9",
                 datetime="2020-01-01T00:00:00Z/..")
    assert page["numberReturned"] == len(page["features"]) <= 2
    assert get(server, f"/collections/{collection}/queryables").status_code == 200
    tile = get(server, f"/collections/{collection}/tiles/WebMercatorQuad/10/836/445")
    assert tile.status_code == 200
