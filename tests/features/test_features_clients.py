"""Real clients read the API: GDAL's OAPIF driver (ogrinfo, ogr2ogr) and OWSLib."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

BBOX = (114.2446, 22.7177, 114.2494, 22.7223)
WHERE = "road_class='primary' AND lanes>=4"

pytestmark = pytest.mark.skipif(shutil.which("ogrinfo") is None,
                                reason="GDAL (Debian gdal-bin) is not installed")


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def count(output: str) -> int:
    line = next(x for x in output.splitlines() if x.startswith("Feature Count:"))
    return int(line.split(":")[1])


def server_matched(server, **params) -> int:
    import httpx

    r = httpx.get(f"{server.url}/collections/road_segments/items", timeout=30,
                  params={"bbox": ",".join(map(str, BBOX)), "limit": 1, **params})
    return r.json()["numberMatched"]


def test_ogrinfo_lists_layers_and_reads_a_bbox(server):
    out = run("ogrinfo", "-ro", "-so", f"OAPIF:{server.url}")
    for name in ("road_segments", "water_stations", "surveys", "city_objects"):
        assert f": {name}" in out
    spat = [str(v) for v in BBOX]
    out = run("ogrinfo", "--debug", "on", "-ro", "-so", "-al", "-oo", "PAGE_SIZE=20", "-spat",
              *spat, f"OAPIF:{server.url}/collections/road_segments")
    assert count(out) == server_matched(server) > 20
    assert out.count("HTTP: Fetch(") >= 3  # followed the next links
    assert "Geometry: Line String" in out


def test_ogr_where_is_pushed_to_the_server(server):
    spat = [str(v) for v in BBOX]
    out = run("ogrinfo", "--debug", "on", "-ro", "-so", "-al", "-spat", *spat, "-where", WHERE,
              f"OAPIF:{server.url}/collections/road_segments")
    assert "Full filter will be evaluated on client side" not in out
    assert "filter-lang=cql-text" in out
    assert count(out) == server_matched(server, filter=WHERE) > 0


def test_ogr2ogr_to_geopackage(server, tmp_path: Path):
    gpkg = tmp_path / "roads.gpkg"
    spat = [str(v) for v in BBOX]
    run("ogr2ogr", "-f", "GPKG", str(gpkg), f"OAPIF:{server.url}/collections/road_segments",
        "-spat", *spat, "-where", WHERE, "-nln", "roads")
    out = run("ogrinfo", "-ro", "-al", str(gpkg))
    assert count(out) == server_matched(server, filter=WHERE)
    assert "road_class (String) = primary" in out
    lanes = [int(x.split("=")[1]) for x in out.splitlines() if "lanes (Integer" in x]
    assert lanes and min(lanes) >= 4


def test_ogr2ogr_keeps_z(server, tmp_path: Path):
    gpkg = tmp_path / "city.gpkg"
    run("ogr2ogr", "-f", "GPKG", str(gpkg), f"OAPIF:{server.url}/collections/city_objects",
        "-where", "object_id LIKE 'FT-BLD-%'", "-nln", "city")
    out = run("ogrinfo", "-ro", "-so", str(gpkg), "city")
    assert "3D" in out


def test_owslib_features_client(server):
    from owslib.ogcapi.features import Features

    api = Features(server.url)
    assert any(c.endswith("ogcapi-features-1/1.0/conf/core")
               for c in api.conformance()["conformsTo"])
    assert "water_stations" in [c["id"] for c in api.collections()["collections"]]
    assert api.collection("road_segments")["extent"]["spatial"]["bbox"]
    assert "lanes" in api.collection_queryables("road_segments")["properties"]
    page = api.collection_items("road_segments", bbox=list(BBOX), limit=10)
    assert page["numberReturned"] == 10 and page["numberMatched"] > 10
    filtered = api.collection_items("road_segments", bbox=list(BBOX), filter=WHERE, limit=100)
    assert all(f["properties"]["road_class"] == "primary" for f in filtered["features"])
    one = api.collection_item("road_segments", str(page["features"][0]["id"]))
    assert one["id"] == page["features"][0]["id"]
