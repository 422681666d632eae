"""Inputs that used to answer 500 answer a 4xx that says what is wrong: numbers beyond the
database's columns, NUL characters, instants that overflow in UTC, filters that fail while
they are evaluated, boxes outside a projection's domain, headers in other scripts' digits,
malformed layer features, and a cancel racing a write. Each class is tried on several routes,
since the next request will not be one of the listed examples."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.web.textguard import JsonNulScanner

BIG = str(2**64)  # beyond bigint
BIGGER = "99999999999999999999"
INT32 = str(2**31)  # beyond integer (tileset versions)
TUS = {"Tus-Resumable": "1.0.0"}
PROBLEM = "application/problem+json"


def _problem(r: httpx.Response, *statuses: int) -> dict:
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == r.status_code and body["detail"]
    return body


def _segment(code: str, **props) -> dict:
    return {"type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[114.25, 22.72], [114.26, 22.73]]},
            "properties": {"code": code, "road_class": "primary", "lanes": 4,
                           "speed_limit_kmh": 60, **props}}


def _collection(*features) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


@pytest.fixture
def admin(auth) -> dict[str, str]:
    return auth("admin")


@pytest.fixture
def road(live_server, admin) -> str:
    """One road segment, so filters have a row to be evaluated on."""
    code = "errors-road"
    r = httpx.post(f"{live_server.url}/layers/traffic/segments", headers=admin,
                   json=_collection(_segment(code)))
    assert r.status_code == 201, r.text
    return code


# -- numbers beyond the columns -------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "name"), [
    ("GET", f"/jobs/{BIGGER}", "job_id"),
    ("GET", f"/jobs?dataset={BIG}", "dataset"),
    ("GET", f"/datasets/{BIG}", "dataset_id"),
    ("GET", f"/tiles/any/v{INT32}/tileset.json", "version"),
    ("GET", f"/layers/traffic/segments/{BIG}/series", "segment_id"),
    ("GET", f"/layers/water/stations/{BIG}/assessment", "station_id"),
    ("GET", f"/layers/water/stations/{BIG}/observations", "station_id"),
    ("GET", f"/drones/{BIG}", "drone_id"),
    ("GET", f"/airspace-zones/{BIG}", "zone_id"),
    ("GET", f"/drone-routes/{BIG}", "route_id"),
    ("GET", f"/drone-routes?drone_id={BIG}", "drone_id"),
    ("POST", f"/drone-routes/{BIG}/approve", "route_id"),
    ("GET", f"/bim/datasets/{BIG}", "dataset_id"),
    ("POST", f"/bim/datasets/{BIG}/link-buildings", "dataset_id"),
    ("GET", f"/bim/elements?dataset={BIG}", "dataset"),
    ("GET", f"/city/objects?dataset={BIG}", "dataset"),
])
def test_ids_beyond_their_column_name_the_parameter(live_server, admin, method, path, name):
    r = httpx.request(method, live_server.url + path, headers=admin)
    body = _problem(r, 422)
    assert name in body["detail"] and "less than or equal" in body["detail"]


def test_numbers_beyond_bigint_in_queries_and_batches(live_server, admin, road):
    r = httpx.get(f"{live_server.url}/collections/road_segments/items", params={"lanes": BIG})
    assert "64-bit" in _problem(r, 400)["detail"]
    r = httpx.post(f"{live_server.url}/layers/traffic/observations", headers=admin, json=[
        {"segment_id": 2**70, "observed_at": "2026-05-01T08:00:00+08:00", "volume": 10,
         "speed_kmh": 40}])
    body = _problem(r, 422)
    assert body["errors"][0]["row"] == 1 and "64-bit" in body["errors"][0]["reasons"][0]


# -- NUL characters -------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/city/objects/a%00b", "/tiles/%00/tileset.json", "/bim/elements/%00",
    "/jobs?status=%00", "/collections/road_segments/items?code=x%00",
    "/collections/road_segments/items?filter=code%3D%27%00%27",
])
def test_nul_in_path_or_query_is_refused(live_server, path):
    body = _problem(httpx.get(live_server.url + path), 400)
    assert "NUL" in body["detail"]


@pytest.mark.parametrize(("path", "payload"), [
    ("/drones", {"serial": "SN\u00001", "operator": "x", "class": "light"}),
    ("/layers/traffic/segments", _collection(_segment("nul\u0000road"))),
    ("/layers/traffic/observations", [{"segment_id": 1, "observed_at": "2026-05-01T00:00:00Z",
                                       "volume": 1, "speed_kmh": 1, "note\u0000": 1}]),
    ("/jobs/selfcheck", {"steps": 1, "\u0000": 2}),
])
def test_nul_in_json_strings_is_refused(live_server, admin, path, payload):
    r = httpx.post(live_server.url + path, headers=admin | {"Content-Type": "application/json"},
                   content=json.dumps(payload).encode())
    assert "NUL" in _problem(r, 400)["detail"]


def test_an_escaped_backslash_before_u0000_is_not_a_nul(live_server, admin):
    """``"\\\\u0000"`` is a backslash and the text u0000: stored as is."""
    serial = "SN\\u0000"
    r = httpx.post(f"{live_server.url}/drones", headers=admin, json={
        "serial": serial + str(id(admin)), "operator": "x", "class": "light"})
    assert r.status_code == 201, r.text
    assert r.json()["serial"].startswith(serial)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(["\\", "u", "0", "\x00", "a", "\u00e9"]),
                    max_size=40),
       ascii_only=st.booleans(), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_the_nul_scanner_agrees_with_json_in_any_chunking(text, ascii_only, cuts):
    body = json.dumps({"k": text}, ensure_ascii=ascii_only).encode()
    scanner = JsonNulScanner()
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    found = any([scanner.feed(p) for p in pieces])
    assert found == ("\x00" in json.loads(body)["k"])


def test_nul_in_upload_metadata_leaves_no_file(live_server, admin, settings):
    name = base64.b64encode(b"a\x00.laz").decode()
    r = httpx.post(f"{live_server.url}/uploads", headers=TUS | admin | {
        "Upload-Length": "10", "Upload-Metadata": f"filename {name}"})
    assert "NUL" in _problem(r, 400)["detail"]
    assert not list(settings.uploads_dir.glob("*.part"))


# -- instants that overflow in UTC ----------------------------------------------------------

@pytest.mark.parametrize(("path", "status"), [
    ("/collections/city_objects/items?datetime=9999-12-31T23:59:59-23:59", 400),
    ("/collections/road_segments/items?datetime=../9999-12-31T23:59:59-23:59", 400),
    ("/collections/road_segments/items?updated_at=9999-12-31T23:59:59-23:59", 400),
    ("/city/objects?at=9999-12-31T23:59:59-23:59", 422),
    ("/layers/traffic/congestion?end=0001-01-01T00:00:00Z", 400),
    ("/layers/traffic/tpi?end=0001-01-01T00:00:00Z", 400),
])
def test_instants_beyond_utc_are_refused(live_server, path, status):
    _problem(httpx.get(live_server.url + path), status)


def test_the_last_day_of_the_calendar_is_a_whole_day(live_server):
    r = httpx.get(f"{live_server.url}/collections/road_segments/items?datetime=9999-12-31")
    assert r.status_code == 200, r.text


def test_batch_instants_beyond_utc_are_a_row_error(live_server, admin, road):
    r = httpx.post(f"{live_server.url}/layers/traffic/observations", headers=admin, json=[
        {"segment_id": 1, "observed_at": "9999-12-31T23:59:59-23:59", "volume": 1,
         "speed_kmh": 1}])
    body = _problem(r, 422)
    assert "observed_at" in body["errors"][0]["reasons"][0]


# -- filters that fail while they are evaluated ---------------------------------------------

@pytest.mark.parametrize("expr", [
    "speed_limit_kmh ^ 400 > 1",  # overflow
    "(lanes - lanes) ^ -1 > 1",  # zero to a negative power
    "speed_limit_kmh * 10 ^ 300 * 10 ^ 300 > 1",  # double precision overflow
])
def test_filter_evaluation_errors_are_bad_requests(live_server, road, expr):
    r = httpx.get(f"{live_server.url}/collections/road_segments/items",
                  params={"filter": f"code = '{road}' AND {expr}"})
    _problem(r, 400)


# -- coordinates outside a projection's domain ----------------------------------------------

@pytest.mark.parametrize("bbox", ["0,0,1e8,1e8", "-1e9,-1e9,1e9,1e9", "1e30,1e30,2e30,2e30"])
def test_bbox_outside_the_crs_domain(live_server, bbox):
    r = httpx.get(f"{live_server.url}/collections/road_segments/items",
                  params={"bbox": bbox, "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4547"})
    assert "domain" in _problem(r, 400)["detail"]


def test_filter_geometry_outside_the_crs_domain(live_server, road):
    far = 1_000_000_000
    ring = f"0 0, 0 {far}, {far} {far}, {far} 0, 0 0"
    r = httpx.get(f"{live_server.url}/collections/road_segments/items", params={
        "filter": f"S_INTERSECTS(geometry, POLYGON(({ring})))",
        "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4547"})
    assert "domain" in _problem(r, 400)["detail"]


# -- headers --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [b"1\xb2", b"\xb9", "\u0661\u0660".encode(), b"1e3",
                                   b"-5", b"99999999999999999999999"])
def test_upload_length_must_be_ascii_digits(live_server, admin, value):
    r = httpx.post(f"{live_server.url}/uploads", headers=[
        *TUS.items(), *admin.items(), ("Upload-Length", value)])
    body = _problem(r, 400, 413)
    assert "Upload-Length" in body["detail"] or r.status_code == 413


def test_upload_offset_must_be_ascii_digits(live_server, admin):
    r = httpx.post(f"{live_server.url}/uploads", headers=TUS | admin | {
        "Upload-Length": "4", "Upload-Metadata": "filename " + base64.b64encode(b"o.laz").decode()})
    r = httpx.patch(r.headers["Location"], content=b"abcd", headers=[
        *TUS.items(), *admin.items(), ("Upload-Offset", b"\xb2"),
        ("Content-Type", "application/offset+octet-stream")])
    assert "Upload-Offset" in _problem(r, 400)["detail"]


@pytest.mark.parametrize("value", [b"\xb9", b"1\xb2", BIGGER.encode()])
def test_last_event_id_must_be_ascii_digits(live_server, value):
    r = httpx.get(f"{live_server.url}/drones-live/stream", headers=[("Last-Event-ID", value)])
    assert "Last-Event-ID" in _problem(r, 400)["detail"]


# -- layer features -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/layers/traffic/segments", "/layers/water/stations"])
@pytest.mark.parametrize("properties", [["code", "x"], "code", 5])
def test_feature_properties_must_be_an_object(live_server, admin, path, properties):
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [114, 22]},
               "properties": properties}
    r = httpx.post(live_server.url + path, headers=admin, json=_collection(feature))
    body = _problem(r, 422)
    assert "properties must be an object" in body["errors"][0]["reasons"][0]


def test_a_code_twice_in_one_batch_is_refused_and_nothing_written(live_server, admin):
    r = httpx.post(f"{live_server.url}/layers/traffic/segments", headers=admin,
                   json=_collection(_segment("twice", lanes=2), _segment("once"),
                                    _segment("twice", lanes=3)))
    body = _problem(r, 422)
    assert [e["row"] for e in body["errors"]] == [3]
    assert "feature 1" in body["errors"][0]["reasons"][0]
    assert "2 of 3" not in body["detail"] and "1 of 3" in body["detail"]
    listed = httpx.get(f"{live_server.url}/collections/road_segments/items",
                       params={"filter": "code IN ('twice', 'once')"}).json()
    assert listed["numberReturned"] == 0
    station = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [114.2, 22.7]},
               "properties": {"code": "st-twice", "name": "n", "water_body": "w",
                              "body_type": "river"}}
    r = httpx.post(f"{live_server.url}/layers/water/stations", headers=admin,
                   json=_collection(station, station))
    assert _problem(r, 422)["errors"][0]["row"] == 2


# -- an upload cancelled while a chunk is written -------------------------------------------

class HeldBody:
    """A PATCH body that sends its first bytes, then waits until released."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.sent = threading.Event()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        self.sent.set()
        assert self.release.wait(30)
        yield self.rest


def _patch_in_thread(url: str, headers: dict, body: HeldBody, offset: int = 0) -> dict:
    result: dict = {}

    def run() -> None:
        result["response"] = httpx.patch(url, content=body, timeout=60, headers=TUS | headers | {
            "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})

    thread = threading.Thread(target=run)
    thread.start()
    result["thread"] = thread
    return result


def test_delete_while_a_patch_writes_is_a_conflict(live_server, admin, settings):
    data = bytes(range(256)) * 64
    r = httpx.post(f"{live_server.url}/uploads", headers=TUS | admin | {
        "Upload-Length": str(len(data)),
        "Upload-Metadata": "filename " + base64.b64encode(b"race.laz").decode()})
    location = r.headers["Location"]
    body = HeldBody(data[:4096], data[4096:])
    patch = _patch_in_thread(location, admin, body)
    assert body.sent.wait(30)
    deleted = httpx.delete(location, headers=TUS | admin)
    assert "writing" in _problem(deleted, 409)["detail"]
    body.release.set()
    patch["thread"].join(60)
    done = patch["response"]
    assert done.status_code == 204, done.text
    dataset = httpx.get(f"{live_server.url}/datasets/{done.headers['Twinbase-Dataset-Id']}",
                        headers=admin).json()
    assert dataset["size_bytes"] == len(data)
    # complete now: a late DELETE is refused and the file stays
    _problem(httpx.delete(location, headers=TUS | admin), 409)
    sources = list((settings.data_dir / "sources").rglob("race.laz"))
    assert len(sources) == 1 and sources[0].read_bytes() == data


def test_a_patch_after_a_cancel_creates_no_file(live_server, admin, settings):
    r = httpx.post(f"{live_server.url}/uploads", headers=TUS | admin | {
        "Upload-Length": "8", "Upload-Metadata": "filename " + base64.b64encode(b"c.laz").decode()})
    location = r.headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    part: Path = settings.uploads_dir / f"{upload_id}.part"
    r = httpx.patch(location, content=b"abcd", headers=TUS | admin | {
        "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204 and part.stat().st_size == 4
    assert httpx.delete(location, headers=TUS | admin).status_code == 204
    assert not part.exists()
    r = httpx.patch(location, content=b"efgh", headers=TUS | admin | {
        "Upload-Offset": "4", "Content-Type": "application/offset+octet-stream"})
    _problem(r, 410)
    assert not part.exists()


# -- instants a route computes with ---------------------------------------------------------

@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                  "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_flight_times_at_the_calendar_ends_are_refused(live_server, admin, when):
    drone = httpx.post(f"{live_server.url}/drones", headers=admin, json={
        "serial": f"ends-{when}-{id(admin)}", "operator": "x", "class": "light"}).json()
    line = {"type": "LineString", "coordinates": [[114.25, 22.72, 80], [114.255, 22.723, 90]]}
    route = {"drone_id": drone["id"], "geometry": line, "start_time": "2026-05-01T10:00:00Z",
             "end_time": "2026-05-01T10:30:00Z"}
    for field in ("start_time", "end_time"):
        for path in ("/drone-routes/validate", "/drone-routes"):
            r = httpx.post(live_server.url + path, headers=admin, json=route | {field: when})
            assert field in _problem(r, 422)["detail"]
    r = httpx.post(f"{live_server.url}/telemetry/one", headers=admin, json={
        "drone_id": drone["id"], "t": when, "lon": 114.25, "lat": 22.72, "h": 80})
    assert "t" in _problem(r, 422)["errors"][0]["loc"]


# -- an unexpected error keeps the connection -----------------------------------------------

def test_a_500_leaves_the_kept_alive_connection_usable(settings, db_url, live_server_factory):
    """Any defect still left answers a problem document, and the client's next request on
    the same connection is answered (it used to find the connection closed)."""
    from service.app import create_app

    app = create_app(settings, db_url, in_process_worker=False)

    async def defect() -> None:
        raise RuntimeError("a defect")

    app.add_api_route("/defect", defect)
    with live_server_factory(app) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            body = _problem(client.get("/defect"), 500)
            assert body["type"].endswith("/internal")
            assert client.get("/health").status_code == 200


@pytest.mark.parametrize("field", ["half_width_m", "vertical_half_m"])
def test_a_corridor_narrower_than_half_a_metre_is_refused(live_server, admin, field):
    """A denormal width (1e-320) passed ``> 0``, was filed, and its approval answered 500."""
    drone = httpx.post(f"{live_server.url}/drones", headers=admin, json={
        "serial": f"thin-{field}-{id(admin)}", "operator": "x", "class": "light"}).json()
    line = {"type": "LineString", "coordinates": [[114.25, 22.72, 80], [114.255, 22.723, 90]]}
    route = {"drone_id": drone["id"], "geometry": line, "start_time": "2027-05-01T10:00:00Z",
             "end_time": "2027-05-01T10:30:00Z", field: 1e-320}
    for path in ("/drone-routes/validate", "/drone-routes"):
        r = httpx.post(live_server.url + path, headers=admin, json=route)
        assert field in _problem(r, 422)["detail"]
