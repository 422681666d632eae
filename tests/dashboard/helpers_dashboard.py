"""Client-side helpers of the dashboard tests: the real samples ingested through the API
(tus upload, then the job run inline), small traffic, water and drone layers placed
around the city model, and tilesets downloaded as a client sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import httpx
from helpers_tus import upload_file

from service.jobs.execute import run_job

DATA = Path(__file__).resolve().parents[1] / "data"
LIDAR = DATA / "lidar" / "pdal_autzen_trim.laz"  # Oregon Lambert (ft) in the file
CITY = DATA / "cim" / "rotterdam_subset.json"  # CityJSON, no CRS in the file: EPSG:7415
IFC = DATA / "bim" / "AC20-FZK-Haus.ifc"  # IFC4, IfcSite georeferenced (Karlsruhe)
# the one deployment origin these tests allow besides same-origin pages (CORS checks)
ALLOWED_ORIGIN = "https://twin.example.gov"


def ingest(server: Any, headers: dict[str, str], db_url: str, settings: Any, path: Path,
           **meta: str) -> dict[str, Any]:
    """Upload and run the ingest job to its end; return the job as the API shows it."""
    _, job_id = upload_file(server, headers, path, **meta)
    status = run_job(job_id, db_url, settings)
    job = httpx.get(f"{server.url}/jobs/{job_id}").json()
    assert status == "succeeded", job.get("error")
    return job


def ingest_samples(server: Any, headers: dict[str, str], db_url: str, settings: Any
                   ) -> dict[str, dict[str, Any]]:
    """One LiDAR survey, the CIM model and one BIM model, as an operator would load them."""
    return {
        "pointcloud": ingest(server, headers, db_url, settings, LIDAR, survey="autzen"),
        "mesh": ingest(server, headers, db_url, settings, CITY, crs="EPSG:7415"),
        "bim": ingest(server, headers, db_url, settings, IFC),
    }


def current_tilesets(server: Any) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in httpx.get(f"{server.url}/tiles").json()}


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
