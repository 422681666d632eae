"""/bim/elements as a wrapper over the features pager: a bbox with heights (OGC API -
Features' six numbers) selects as ``height=`` does, and the one bbox parser's rules hold."""

from __future__ import annotations

import httpx
from helpers_bim import FZK


def test_a_bbox_with_heights_selects_as_height_does(ingested, live_server):
    ds = ingested(FZK).dataset_id

    def ids(**params) -> set[str]:
        r = httpx.get(f"{live_server.url}/bim/elements", timeout=30,
                      params={"dataset": ds, "limit": 1000, **params})
        assert r.status_code == 200, r.text
        return {f["id"] for f in r.json()["features"]}

    everything = httpx.get(f"{live_server.url}/bim/elements", timeout=30,
                           params={"dataset": ds, "limit": 1000}).json()["features"]
    x0 = min(f["bbox"][0] for f in everything) - 1e-4
    y0 = min(f["bbox"][1] for f in everything) - 1e-4
    x1 = max(f["bbox"][3] for f in everything) + 1e-4
    y1 = max(f["bbox"][4] for f in everything) + 1e-4
    top = max(f["bbox"][5] for f in everything)
    assert ids(bbox=f"{x0},{y0},{x1},{y1}") == {f["id"] for f in everything}
    upper = ids(height=f"{top - 1},{top + 10}")
    assert 0 < len(upper) < len(everything)
    assert ids(bbox=f"{x0},{y0},{top - 1},{x1},{y1},{top + 10}") == upper


def test_the_ogc_bbox_rules(live_server):
    for bbox in ("0,0,200,10", "0,-91,1,1", "nan,0,1,1", "1,2,3,4,5", "1,1,0,0"):
        r = httpx.get(f"{live_server.url}/bim/elements", params={"bbox": bbox})
        assert r.status_code == 400, (bbox, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = httpx.get(f"{live_server.url}/bim/elements", params={"bbox": "0,0,0,1,1,10"})
    assert r.status_code == 200 and r.json()["features"] == []
