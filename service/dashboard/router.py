"""The reference dashboard (``service/dashboard/``) and the CesiumJS build it runs on.

CesiumJS comes from npm (``node_modules/cesium/Build/Cesium``, installed by ``./run``) and is
served by the service itself: government networks are often offline, so the page needs no
CDN, no Ion token and no internet imagery or terrain. ``TWINBASE_CESIUM_DIR`` points
elsewhere when the build lives outside the checkout (e.g. in a container image).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from service.core.errors import NotFound

router = APIRouter(tags=["dashboard"], include_in_schema=False)

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = Path(__file__).resolve().parents[1] / "dashboard"
# the dashboard's own files change with each deployment: always revalidate (cheap, ETag)
PAGE_CACHE = "no-cache"
# CesiumJS changes only with package-lock.json: a day, then revalidate
CESIUM_CACHE = "public, max-age=86400"
MEDIA = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
         ".html": "text/html; charset=utf-8", ".json": "application/json",
         ".wasm": "application/wasm", ".svg": "image/svg+xml", ".png": "image/png",
         ".jpg": "image/jpeg", ".glb": "model/gltf-binary", ".ktx2": "image/ktx2",
         ".woff": "font/woff", ".woff2": "font/woff2", ".xml": "application/xml",
         ".txt": "text/plain"}


def cesium_dir() -> Path:
    env = os.environ.get("TWINBASE_CESIUM_DIR")
    return Path(env) if env else ROOT / "node_modules" / "cesium" / "Build" / "Cesium"


def _send(request: Request, root: Path, rel: str, cache: str) -> Response:
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise NotFound(f"no file {rel!r} here")
    st = target.stat()
    etag = '"' + hashlib.md5(f"{st.st_mtime_ns}-{st.st_size}".encode(),
                             usedforsecurity=False).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": cache}
    tags = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match",
                                                                      "").split(",")}
    if etag in tags:
        return Response(status_code=304, headers=headers)
    return FileResponse(target, headers=headers,
                        media_type=MEDIA.get(target.suffix.lower(), "application/octet-stream"))


@router.get("/dashboard")
async def dashboard_redirect(request: Request) -> RedirectResponse:
    # the page's relative URLs (its modules, the API) resolve against /dashboard/
    return RedirectResponse(str(request.url.replace(path=request.url.path + "/")),
                            status_code=308)


@router.get("/dashboard/")
async def dashboard_page(request: Request) -> Response:
    return _send(request, PAGE_DIR, "index.html", PAGE_CACHE)


@router.get("/dashboard/cesium/{path:path}")
async def cesium_file(path: str, request: Request) -> Response:
    root = cesium_dir()
    if not root.is_dir():
        raise NotFound("CesiumJS is not installed: run `npm ci` in the checkout (./run serve "
                       "does), or set TWINBASE_CESIUM_DIR to a Cesium Build/Cesium folder")
    return _send(request, root, path, CESIUM_CACHE)


@router.get("/dashboard/{path:path}")
async def dashboard_file(path: str, request: Request) -> Response:
    return _send(request, PAGE_DIR, path, PAGE_CACHE)
