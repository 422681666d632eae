"""The tilesets a client downloads (LiDAR points, the CIM model, a BIM model, and the city
tileset that references them all) pass the official CesiumGS 3D Tiles validator with no
error, each on its own and the city tileset with every external tileset it points to."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urljoin, urlparse

import httpx
from helpers_3dtiles_validator import assert_no_errors
from helpers_dashboard import current_tilesets, ingest_samples


def mirror(url: str, folder: Path, seen: set[str] | None = None) -> Path:
    """Download a tileset and, recursively, its content and external tilesets into
    ``folder``, keeping the URL paths (so relative URIs such as ``../name/v1/...`` resolve
    on disk as they do over HTTP). Returns the local path of ``url``."""
    seen = set() if seen is None else seen
    local = folder / urlparse(url).path.lstrip("/")
    if url in seen:
        return local
    seen.add(url)
    r = httpx.get(url, timeout=60, headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200, url
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(r.content)
    if not urlparse(url).path.endswith(".json"):
        return local
    stack = [r.json()["root"]]
    while stack:
        tile = stack.pop()
        stack.extend(tile.get("children", []))
        for content in [tile.get("content"), *tile.get("contents", [])]:
            if content:
                mirror(urljoin(url, content["uri"]), folder, seen)
    return local


def test_every_kind_and_the_city_tileset_pass_the_official_validator(
        live_server, auth, db_url, settings, tmp_path):
    ingest_samples(live_server, auth("operator"), db_url, settings)
    current = current_tilesets(live_server)
    assert {t["kind"] for t in current.values()} == {"pointcloud", "mesh", "bim"}, current
    for name, t in current.items():
        local = mirror(f"{live_server.url}/tiles/{name}/tileset.json",
                       tmp_path / t["kind"])
        report = assert_no_errors(local)
        assert report["numWarnings"] == 0, (name, report["issues"])
    city = mirror(f"{live_server.url}/tiles/city/tileset.json",
                  tmp_path / "city")
    # the city tileset's external tilesets came along, and the validator follows them
    assert len(list((tmp_path / "city").rglob("*.glb"))) == sum(
        len(list((tmp_path / t["kind"]).rglob("*.glb"))) for t in current.values())
    report = assert_no_errors(city)
    assert report["numWarnings"] == 0, report["issues"]
