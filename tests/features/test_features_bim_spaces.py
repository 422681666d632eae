"""BIM rooms as an OGC API - Features collection, from a real model (AC20-FZK-Haus, 7
IfcSpace) put through the real ingest job: listed, described by its queryables, filtered,
sorted, tiled and read by GDAL; BIM elements carry the room they are in and the rooms they
bound (IfcRelSpaceBoundary), the same as /bim/elements says."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import ifcopenshell
import pytest

BIM_TESTS = Path(__file__).resolve().parents[1] / "bim"


def _helpers_bim() -> ModuleType:
    """tests/bim/helpers_bim.py: the samples and the real ingest job (on the path when the
    bim tests ran in the same session, not when this folder runs alone)."""
    if str(BIM_TESTS) not in sys.path:
        sys.path.insert(0, str(BIM_TESTS))
    import helpers_bim

    return helpers_bim


@pytest.fixture(scope="module")
def fzk(db_url, tmp_path_factory, server) -> dict[str, Any]:
    from service.core.settings import Settings
    from service.features import metadata

    helpers = _helpers_bim()
    settings = Settings(database_url=db_url, data_dir=tmp_path_factory.mktemp("bim-var"),
                        in_process_worker=False, load_samples=False)
    run = helpers.run_ingest(db_url, settings, helpers.FZK)
    assert run.status == "succeeded", run.job.error
    metadata._extents.clear()  # the new rows widen the collections' extents
    spaces = httpx.get(f"{server.url}/bim/spaces", timeout=30,
                       params={"dataset": run.dataset_id, "limit": 1000}).json()["features"]
    return {"dataset_id": run.dataset_id, "path": helpers.FZK,
            "spaces": {f["id"]: f["properties"] for f in spaces},
            "bboxes": {f["id"]: f["bbox"] for f in spaces}}


def get(server, path: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, timeout=30)


def items(server, collection: str, **params) -> dict[str, Any]:
    r = get(server, f"/collections/{collection}/items", **params)
    assert r.status_code == 200, r.text
    return r.json()


def test_rooms_are_a_collection_with_their_queryables(server, fzk):
    listed = {c["id"]: c for c in get(server, "/collections").json()["collections"]}
    assert "bim_spaces" in listed
    x0, y0, x1, y1 = listed["bim_spaces"]["extent"]["spatial"]["bbox"][0]
    for rx0, ry0, _, rx1, ry1, _ in fzk["bboxes"].values():  # every room is in the extent
        assert x0 - 1e-7 <= rx0 <= rx1 <= x1 + 1e-7 and y0 - 1e-7 <= ry0 <= ry1 <= y1 + 1e-7

    queryables = get(server, "/collections/bim_spaces/queryables").json()["properties"]
    assert {"global_id", "name", "long_name", "storey", "floor_area", "min_height",
            "max_height", "dataset_id"} <= set(queryables)
    assert "psets" not in queryables
    assert queryables["floor_area"]["type"] == "number"
    elements = get(server, "/collections/bim_elements/queryables").json()["properties"]
    assert "space_global_id" in elements and "bounded_space_global_ids" not in elements


def test_room_items_match_the_bim_api(server, fzk):
    ds, spaces = fzk["dataset_id"], fzk["spaces"]
    page = items(server, "bim_spaces", dataset_id=ds, limit=100)
    assert page["numberMatched"] == page["numberReturned"] == len(spaces) == 7
    by_gid = {f["properties"]["global_id"]: f for f in page["features"]}
    assert set(by_gid) == set(spaces)
    for gid, f in by_gid.items():
        props, want = f["properties"], spaces[gid]
        assert f["geometry"]["type"] == "MultiPolygon"
        for key in ("name", "long_name", "storey", "floor_area", "min_height", "max_height",
                    "dataset_id"):
            assert props[key] == pytest.approx(want[key]) if isinstance(want[key], float) \
                else props[key] == want[key]
        assert isinstance(props["psets"], dict) and props["psets"]

    wohnen = items(server, "bim_spaces", filter=f"long_name='Wohnen' AND dataset_id={ds}")
    (only,) = wohnen["features"]
    assert only["properties"]["name"] == next(
        p["name"] for p in spaces.values() if p["long_name"] == "Wohnen")
    one = get(server, f"/collections/bim_spaces/items/{only['id']}")
    assert one.status_code == 200 and one.json()["properties"]["global_id"] == \
        only["properties"]["global_id"]

    big = {g for g, p in spaces.items() if p["floor_area"] > 20}
    assert 0 < len(big) < len(spaces)
    found = items(server, "bim_spaces", filter=f"floor_area > 20 AND dataset_id={ds}")
    assert {f["properties"]["global_id"] for f in found["features"]} == big
    ordered = items(server, "bim_spaces", dataset_id=ds, sortby="-floor_area")["features"]
    areas = [f["properties"]["floor_area"] for f in ordered]
    assert areas == sorted(areas, reverse=True)
    upstairs = items(server, "bim_spaces", dataset_id=ds, storey="Dachgeschoss")["features"]
    assert {f["properties"]["global_id"] for f in upstairs} == {
        g for g, p in spaces.items() if p["storey"] == "Dachgeschoss"} != set()

    bad = get(server, "/collections/bim_spaces/items", filter="psets = 1")
    assert bad.status_code == 400 and "psets" in bad.json()["detail"]


def test_rooms_are_in_the_vector_tiles(server, fzk):
    wohnen = next(g for g, p in fzk["spaces"].items() if p["long_name"] == "Wohnen")
    x0, y0, _, x1, y1, _ = fzk["bboxes"][wohnen]
    lon, lat = (x0 + x1) / 2, (y0 + y1) / 2
    z = 18
    x = int((lon + 180) / 360 * 2 ** z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2 ** z)
    tile = get(server, f"/collections/bim_spaces/tiles/WebMercatorQuad/{z}/{x}/{y}")
    assert tile.status_code == 200 and b"long_name" in tile.content
    assert b"psets" not in tile.content


def test_elements_carry_their_rooms(server, fzk):
    ds = fzk["dataset_id"]
    model = ifcopenshell.open(str(fzk["path"]))
    page = items(server, "bim_elements", dataset_id=ds, limit=1000)
    assert page["numberMatched"] == page["numberReturned"]
    by_gid = {f["properties"]["global_id"]: f["properties"] for f in page["features"]}
    api = get(server, "/bim/elements", dataset=ds, limit=1000).json()["features"]
    assert {f["id"]: (f["properties"]["space_global_id"],
                      f["properties"]["bounded_space_global_ids"]) for f in api} == {
        g: (p["space_global_id"], p["bounded_space_global_ids"]) for g, p in by_gid.items()}
    doors = [d.GlobalId for d in model.by_type("IfcDoor")]
    assert doors and all(by_gid[d]["bounded_space_global_ids"] for d in doors)

    wohnen = next(g for g, p in fzk["spaces"].items() if p["long_name"] == "Wohnen")
    inside = items(server, "bim_elements", filter=f"space_global_id='{wohnen}' AND "
                   f"dataset_id={ds}")["features"]
    assert [f["properties"]["ifc_class"] for f in inside] == ["IfcStair"]


@pytest.mark.skipif(shutil.which("ogrinfo") is None,
                    reason="GDAL (Debian gdal-bin) is not installed")
def test_gdal_reads_the_rooms(server, fzk):
    ds = fzk["dataset_id"]
    done = subprocess.run(["ogrinfo", "-ro", "-al", "-where", f"dataset_id={ds}",
                           f"OAPIF:{server.url}/collections/bim_spaces"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    out = done.stdout
    assert "Feature Count: 7" in out and "Geometry: Multi Polygon" in out
    areas = sorted(float(line.split("=")[1]) for line in out.splitlines()
                   if line.strip().startswith("floor_area (Real) ="))
    assert areas == pytest.approx(sorted(p["floor_area"] for p in fzk["spaces"].values()))
    assert "long_name (String) = Wohnen" in out

    # a door's rooms: GDAL infers no list type when early features have empty arrays, so
    # the array comes as JSON text
    door = next(d.GlobalId for d in ifcopenshell.open(str(fzk["path"])).by_type("IfcDoor"))
    rooms = get(server, f"/bim/elements/{door}", dataset=ds).json()["properties"][
        "bounded_space_global_ids"]
    done = subprocess.run(["ogrinfo", "-ro", "-al", "-where",
                           f"global_id='{door}' AND dataset_id={ds}",
                           f"OAPIF:{server.url}/collections/bim_elements"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    assert "Feature Count: 1" in done.stdout and rooms
    (line,) = [x for x in done.stdout.splitlines() if "bounded_space_global_ids (" in x]
    assert all(r in line for r in rooms)
