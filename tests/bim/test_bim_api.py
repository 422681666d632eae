"""IFC models through the HTTP API: tus upload, the job's error that asks for an anchor,
re-ingest with one, and element queries by class, storey, property values, space and
GlobalId, checked against what ifcopenshell reads from the same file."""

from __future__ import annotations

import httpx
import ifcopenshell
import ifcopenshell.util.element as ue
import pytest
from helpers_bim import FZK, HOUSE
from helpers_tus import upload_file

from service.jobs.execute import run_job


@pytest.fixture
def fzk(live_server, auth, db_url, settings):
    dataset_id, job_id = upload_file(live_server, auth("operator"), FZK)
    assert run_job(job_id, db_url, settings) == "succeeded"
    return live_server, dataset_id


def _get(server, path: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, timeout=30)


def test_model_without_georeferencing_asks_for_an_anchor_then_loads(live_server, auth,
                                                                      db_url, settings):
    op = auth("operator")
    dataset_id, job_id = upload_file(live_server, op, HOUSE)
    assert run_job(job_id, db_url, settings) == "failed"
    job = _get(live_server, f"/jobs/{job_id}").json()
    assert "anchor" in job["error"] and "/bim/datasets/{id}/ingest" in job["error"]

    body = {"anchor": {"lon": 114.2466, "lat": 22.7209, "height": 45, "rotation": 30}}
    anon = httpx.post(f"{live_server.url}/bim/datasets/{dataset_id}/ingest", json=body)
    assert anon.status_code == 401
    viewer = httpx.post(f"{live_server.url}/bim/datasets/{dataset_id}/ingest", json=body,
                        headers=auth("viewer"))
    assert viewer.status_code == 403
    for wrong in ({"anchor": {"lon": 500, "lat": 0}}, {**body, "geometry_library": "cgal"}):
        bad = httpx.post(f"{live_server.url}/bim/datasets/{dataset_id}/ingest", json=wrong,
                         headers=op)
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
    # IfcConvert's kernel on request
    again = httpx.post(f"{live_server.url}/bim/datasets/{dataset_id}/ingest",
                       json={**body, "geometry_library": "opencascade"}, headers=op)
    assert again.status_code == 202, again.text
    assert run_job(again.json()["job_id"], db_url, settings) == "succeeded"

    ds = _get(live_server, f"/datasets/{dataset_id}").json()
    assert ds["status"] == "ready" and ds["stats"]["georeference"]["source"] == "anchor"
    assert ds["stats"]["geometry_library"] == "opencascade"
    lo, hi = ds["bounds3d"]["min"], ds["bounds3d"]["max"]
    assert 114.24 < lo[0] < hi[0] < 114.26 and 22.71 < lo[1] < hi[1] < 22.73
    summary = _get(live_server, f"/bim/datasets/{dataset_id}").json()
    assert summary["georeference"]["anchor"]["rotation_deg"] == 30
    tileset = _get(live_server, f"/tiles/bim-{dataset_id}/tileset.json")
    assert tileset.status_code == 200 and tileset.json()["asset"]["version"] == "1.1"
    # the window of members and plates is found by its own class
    windows = _get(live_server, "/bim/elements", dataset=dataset_id, **{"class": "IfcWindow"})
    assert windows.json()["numberReturned"] > 0
    assert {f["properties"]["assembly_class"] for f in windows.json()["features"]} \
        == {"IfcWindow"}


def test_queries_by_class_storey_property_space_and_global_id(fzk):
    server, ds = fzk
    model = ifcopenshell.open(str(FZK))

    def ids(**params) -> set[str]:
        r = _get(server, "/bim/elements", dataset=ds, limit=1000, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["type"] == "FeatureCollection"
        return {f["id"] for f in body["features"]}

    walls = {w.GlobalId for w in model.by_type("IfcWall")}
    assert ids(**{"class": "IfcWall"}) == walls  # IfcWallStandardCase included
    assert ids(**{"class": "ifcwallstandardcase"}) == walls
    both = ids(**{"class": ["IfcWall", "IfcSlab"]})
    assert both == walls | {s.GlobalId for s in model.by_type("IfcSlab")}

    ground = {w.GlobalId for w in model.by_type("IfcWall")
              if ue.get_container(w).Name == "Erdgeschoss"}
    assert ids(**{"class": "IfcWall", "storey": "erdgeschoss"}) == ground
    storey_gid = model.by_type("IfcBuildingStorey")[0]
    assert ids(storey=storey_gid.GlobalId) == ids(storey=storey_gid.Name)

    long_walls = {w.GlobalId for w in model.by_type("IfcWall")
                  if ue.get_psets(w).get("BaseQuantities", {}).get("Length", 0) >= 4}
    assert 0 < len(long_walls) < len(walls)
    assert ids(property="BaseQuantities.Length>=4", **{"class": "IfcWall"}) == long_walls
    living = {e.GlobalId for e in model.by_type("IfcProduct")
              if any(p.get("Raumname") == "Wohnen" for p in ue.get_psets(e).values())}
    assert living and ids(property="Raumname=Wohnen") <= living
    assert ids(property="Raumname=Wohnen", **{"class": "IfcWall"}) == living & walls
    room5 = {e.GlobalId for e in model.by_type("IfcProduct")
             if any(p.get("Raumnummer") == "5" for p in ue.get_psets(e).values())}
    assert room5 and ids(property="Raumnummer=5") <= room5  # "5" in the file, 5 asked
    assert ids(property="Raumnummer=5", **{"class": "IfcWall"}) == room5 & walls
    assert ids(property="AC_Pset_Name.Name='Wand-Int-ERDG-4'") == {
        w.GlobalId for w in model.by_type("IfcWall")
        if ue.get_psets(w).get("AC_Pset_Name", {}).get("Name") == "Wand-Int-ERDG-4"}

    everything = _get(server, "/bim/elements", dataset=ds, limit=1000).json()["features"]
    lons = sorted(f["bbox"][0] for f in everything)
    lats = sorted(f["bbox"][1] for f in everything)
    west = ids(bbox=f"{lons[0] - 1e-4},{lats[0] - 1e-4},{lons[len(lons) // 2]},{lats[-1]}")
    assert 0 < len(west) < len(everything)
    assert ids(bbox="0,0,1,1") == set()
    top = max(f["bbox"][5] for f in everything)
    assert 0 < len(ids(height=f"{top - 1},{top + 10}")) < len(everything)

    wall = next(iter(walls))
    one = _get(server, f"/bim/elements/{wall}").json()
    assert one["id"] == wall and one["properties"]["ifc_class"] == "IfcWallStandardCase"
    assert one["properties"]["psets"]["BaseQuantities"]["Width"] > 0
    assert one["geometry"]["type"] == "MultiPolygon" and len(one["bbox"]) == 6
    assert one["properties"]["links"]["tileset"] == f"/tiles/bim-{ds}/tileset.json"
    missing = _get(server, "/bim/elements/0000000000000000000000")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"

    page = _get(server, "/bim/elements", dataset=ds, limit=5).json()
    assert page["numberReturned"] == 5
    nxt = next(link["href"] for link in page["links"] if link["rel"] == "next")
    second = httpx.get(nxt).json()
    assert {f["id"] for f in second["features"]}.isdisjoint(f["id"] for f in page["features"])

    summary = _get(server, f"/bim/datasets/{ds}").json()
    assert summary["classes"]["IfcWallStandardCase"] == len(walls)
    # ordered by elevation; the site itself stands on no storey
    assert [s["name"] for s in summary["storeys"]] == ["Erdgeschoss", "Dachgeschoss", None]


@pytest.mark.parametrize("params", [{"property": "no operator"}, {"property": "Length>abc"},
                                    {"bbox": "1,2,3"}, {"height": "x"}, {"limit": "0"}])
def test_bad_queries_are_4xx_problems(live_server, params):
    r = _get(live_server, "/bim/elements", **params)
    assert r.status_code in (400, 422)
    assert r.headers["content-type"] == "application/problem+json"


def test_cesium_draws_the_model_and_clicks_map_to_element_rows(fzk, tmp_path, cesium_check):
    """CesiumJS in headless Chromium loads the model's tileset from the live server, with no
    errors; what it picks are GlobalIds that /bim/elements knows."""
    server, ds = fzk
    shot = tmp_path / "bim_cesium.png"
    summary = cesium_check(f"{server.url}/tiles/bim-{ds}/tileset.json", shot,
                           "--pitch", "-30", "--range", "60")
    result = summary["result"]
    assert result["ok"] and not result["errors"] and result["assetVersion"] == "1.1"
    assert shot.stat().st_size > 10_000
    assert result["pickedIds"], "CesiumJS picked no element"
    for gid in result["pickedIds"]:
        r = _get(server, f"/bim/elements/{gid}", dataset=ds)
        assert r.status_code == 200 and r.json()["id"] == gid
