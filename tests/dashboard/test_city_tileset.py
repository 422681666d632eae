"""The city tileset over HTTP: it references the current version of every published tileset,
its volumes contain theirs, it and every tileset it references pass the official 3D Tiles
validator, it changes when one is republished, and it revalidates with 304;
tile responses carry the cache headers, Range, gzip for JSON only, and CORS per deployment."""

from __future__ import annotations

import math
from urllib.parse import urljoin

import httpx
import numpy as np
import pytest
from helpers_3dtiles_validator import assert_no_errors, flatten
from helpers_dashboard import (
    ALLOWED_ORIGIN,
    LIDAR,
    current_tilesets,
    ingest,
    ingest_samples,
    mirror,
)
from pyproj import Transformer

TO_LLH = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


@pytest.fixture
def op(auth):
    return auth("operator")


def _get(server, path: str, **headers: str) -> httpx.Response:
    # httpx asks for gzip by default; these checks want the identity representation
    return httpx.get(urljoin(server.url, path), timeout=30,
                     headers={"Accept-Encoding": "identity", **headers})


def _corners(volume: dict, transform: list[float] | None) -> np.ndarray:
    """The 8 corners of a box volume in lon, lat (radians) and height, through the root
    transform (3D Tiles matrices are column-major)."""
    box = np.asarray(volume["box"], float)
    c, axes = box[:3], box[3:].reshape(3, 3)
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    local = c + signs @ axes
    m = np.asarray(transform or np.eye(4).ravel(), float).reshape(4, 4).T
    ecef = local @ m[:3, :3].T + m[:3, 3]
    lon, lat, h = TO_LLH.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    return np.column_stack([np.radians(lon), np.radians(lat), h])


def _inside(points: np.ndarray, region: list[float]) -> bool:
    w, s, e, n, lo, hi = region
    return bool(np.all((points[:, 0] >= w) & (points[:, 0] <= e) & (points[:, 1] >= s)
                       & (points[:, 1] <= n) & (points[:, 2] >= lo) & (points[:, 2] <= hi)))


def test_city_tileset_references_every_current_tileset_and_contains_them(
        live_server, op, db_url, settings, tmp_path):
    empty = _get(live_server, "/tiles/city/tileset.json")
    assert empty.status_code == 200 and empty.json()["root"]["children"] == []

    ingest_samples(live_server, op, db_url, settings)
    current = current_tilesets(live_server)
    assert {t["kind"] for t in current.values()} == {"pointcloud", "mesh", "bim"}, current

    r = _get(live_server, "/tiles/city/tileset.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["asset"]["version"] == "1.1"
    root = doc["root"]
    children = root["children"]
    expected = {f"../{name}/v{t['version']}/tileset.json" for name, t in current.items()}
    assert {c["content"]["uri"] for c in children} == expected
    assert int(r.headers["Twinbase-Tilesets"]) == len(current)
    assert root["refine"] == "ADD" and "transform" not in root
    region = root["boundingVolume"]["region"]
    w, s, e, n, lo, hi = region
    assert -math.pi <= w < e <= math.pi and -math.pi / 2 <= s < n <= math.pi / 2 and lo < hi

    for child in children:
        # the child URI resolves against the city tileset's URL, as a client resolves it
        url = urljoin(f"{live_server.url}/tiles/city/tileset.json", child["content"]["uri"])
        sub = httpx.get(url)
        assert sub.status_code == 200, url
        sub_doc = sub.json()
        corners = _corners(sub_doc["root"]["boundingVolume"], sub_doc["root"].get("transform"))
        assert _inside(corners, child["boundingVolume"]["region"]), child["extras"]
        assert _inside(corners, region), child["extras"]
        assert child["geometricError"] == sub_doc["geometricError"]
        assert child["extras"]["kind"] == current[child["extras"]["tileset"]]["kind"]
        assert doc["geometricError"] >= child["geometricError"]

    # the official CesiumGS validator: no error and no warning in any tileset of any kind,
    # each on its own and through the city tileset that references them all
    for name, t in current.items():
        local = mirror(f"{live_server.url}/tiles/{name}/tileset.json", tmp_path / t["kind"])
        report = assert_no_errors(local)
        assert report["numWarnings"] == 0, (name, flatten(report["issues"]))
    city = mirror(f"{live_server.url}/tiles/city/tileset.json", tmp_path / "city")
    assert len(list((tmp_path / "city").rglob("*.glb"))) == sum(
        len(list((tmp_path / t["kind"]).rglob("*.glb"))) for t in current.values())
    report = assert_no_errors(city)
    assert report["numWarnings"] == 0, flatten(report["issues"])

    # only some kinds, e.g. a dashboard with the point clouds switched off
    meshes = _get(live_server, "/tiles/city/tileset.json?kinds=mesh,bim").json()
    assert {c["extras"]["kind"] for c in meshes["root"]["children"]} == {"mesh", "bim"}
    assert _get(live_server, "/tiles/city/tileset.json?kinds=,").status_code == 400


def test_city_tileset_changes_on_republish_and_revalidates(live_server, op, db_url, settings):
    first = ingest(live_server, op, db_url, settings, LIDAR, survey="autzen")
    name = first["report"]["tileset"]
    r1 = _get(live_server, "/tiles/city/tileset.json")
    etag = r1.headers["etag"]
    assert r1.headers["cache-control"].startswith("public, max-age=") \
        and "must-revalidate" in r1.headers["cache-control"]
    # revalidation: 304, no body, same validator
    again = _get(live_server, "/tiles/city/tileset.json", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag

    # gzip: JSON is compressed, its ETag marked weak, and the weak tag revalidates too
    z = httpx.get(f"{live_server.url}/tiles/city/tileset.json",
                  headers={"Accept-Encoding": "gzip"})
    assert z.headers["content-encoding"] == "gzip" and "Accept-Encoding" in z.headers["vary"]
    assert z.headers["etag"] == "W/" + etag and z.json() == r1.json()
    assert _get(live_server, "/tiles/city/tileset.json",
                **{"If-None-Match": z.headers["etag"],
                   "Accept-Encoding": "gzip"}).status_code == 304

    second = ingest(live_server, op, db_url, settings, LIDAR, survey="autzen")
    assert second["report"]["tileset"] == name and second["report"]["version"] == 2
    r2 = _get(live_server, "/tiles/city/tileset.json", **{"If-None-Match": etag})
    assert r2.status_code == 200 and r2.headers["etag"] != etag
    uris = [c["content"]["uri"] for c in r2.json()["root"]["children"]]
    assert uris == [f"../{name}/v2/tileset.json"]
    assert _get(live_server, "/tiles/city/tileset.json",
                **{"If-None-Match": r2.headers["etag"]}).status_code == 304
    # the version the old city tileset pointed at stays readable at its URL
    assert _get(live_server, f"/tiles/{name}/v1/tileset.json").status_code == 200


def _first_content(server, name: str) -> str:
    doc = _get(server, f"/tiles/{name}/tileset.json").json()
    stack = [doc["root"]]
    while stack:
        tile = stack.pop()
        if "content" in tile:
            return tile["content"]["uri"]
        stack.extend(tile.get("children", []))
    raise AssertionError("no content")


def test_tile_content_caching_range_gzip_and_cors(live_server, op, db_url, settings):
    job = ingest(live_server, op, db_url, settings, LIDAR, survey="autzen")
    name = job["report"]["tileset"]
    uri = _first_content(live_server, name)
    assert uri.startswith("v1/") and uri.endswith(".glb")
    path = f"/tiles/{name}/{uri}"

    full = httpx.get(f"{live_server.url}{path}", headers={"Accept-Encoding": "gzip"})
    assert full.status_code == 200
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-encoding" not in full.headers  # binary tiles are not gzipped
    assert full.content[:4] == b"glTF"
    etag = full.headers["etag"]
    assert _get(live_server, path, **{"If-None-Match": etag}).status_code == 304
    part = _get(live_server, path, Range="bytes=4-11")
    assert part.status_code == 206 and part.content == full.content[4:12]
    assert part.headers["content-range"] == f"bytes 4-11/{len(full.content)}"

    # versioned tileset.json: short cache (a preview is replaced in place), gzip
    vts = httpx.get(f"{live_server.url}/tiles/{name}/v1/tileset.json",
                    headers={"Accept-Encoding": "gzip"})
    assert vts.headers["cache-control"].startswith("public, max-age=10")
    raw = _get(live_server, f"/tiles/{name}/v1/tileset.json")
    assert vts.headers.get("content-encoding") == "gzip" and vts.json() == raw.json()

    # CORS as the deployment says: its origin is allowed (and sees the validators), others not
    ok = _get(live_server, "/tiles/city/tileset.json", Origin=ALLOWED_ORIGIN)
    assert ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "etag" in ok.headers["access-control-expose-headers"].lower()
    other = _get(live_server, "/tiles/city/tileset.json", Origin="https://elsewhere.example")
    assert "access-control-allow-origin" not in other.headers
    pre = httpx.options(f"{live_server.url}{path}", headers={
        "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range"})
    assert pre.status_code == 200 and "range" in pre.headers[
        "access-control-allow-headers"].lower()


def test_no_data_tileset_can_take_the_city_name(db_url, settings):
    from service.core.db import sync_engine
    from service.tilesets.store import begin_version

    with pytest.raises(ValueError, match="reserved"):
        begin_version(sync_engine(db_url), settings.tiles_dir, "city", "mesh",
                      dataset_id=None, job_id=None)
