"""The CIM tileset in a real client: CesiumJS in headless Chromium loads /tiles/cim from the
live server, with no errors and at least one tile, picks buildings whose ids are rows in the
API, and leaves a screenshot to look at (set TWINBASE_ARTIFACTS to keep a copy)."""

from __future__ import annotations

import httpx
from helpers_city import DATA, object_url
from helpers_tus import upload

from service.jobs.execute import run_job


def test_cesium_loads_and_picks_the_city_tileset(live_server, auth, db_url, settings,
                                                 tmp_path, cesium_check):
    op = auth("operator")
    path = DATA / "rotterdam_subset.json"
    _, job_id = upload(live_server, op, path.read_bytes(), filename=path.name, crs="EPSG:7415")
    assert run_job(job_id, db_url, settings) == "succeeded"

    shot = tmp_path / "city_cesium.png"
    summary = cesium_check(f"{live_server.url}/tiles/cim/tileset.json", shot,
                           "--pitch", "-35", "--range", "700")
    result = summary["result"]
    assert result["ok"] and not result["errors"], result
    assert result["tileLoadEvents"] >= 1 and result["assetVersion"] == "1.1"
    assert not summary["httpErrors"] and not summary["consoleErrors"], summary
    assert shot.stat().st_size > 10_000

    # a click in the client maps back to the object's row
    assert result["pickedIds"], "CesiumJS picked no building"
    for object_id in result["pickedIds"]:
        r = httpx.get(object_url(live_server, object_id))
        assert r.status_code == 200 and r.json()["properties"]["type"] == "Building"
