"""The reference dashboard (``service/dashboard/``) and the CesiumJS build it runs on.

CesiumJS comes from npm (``node_modules/cesium/Build/Cesium``, installed by ``./run``) and is
served by the service itself: government networks are often offline, so the page needs no
CDN, no Ion token and no internet imagery or terrain. ``TWINBASE_CESIUM_DIR`` points
elsewhere when the build lives outside the checkout (e.g. in a container image).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.auth import Reader
from service.core.errors import NotFound
from service.jobs import store as job_store
from service.jobs.router import job_view

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


@router.get("/dashboard/config.json")
async def dashboard_config(request: Request) -> dict[str, Any]:
    """What the page needs from the settings: where its home area is."""
    s = request.app.state.settings
    return {"home": {"lon": s.home_lon, "lat": s.home_lat, "radius_m": s.home_radius_m}}


# the jobs panel's stream: how often the job table is read, how many jobs are shown, and how
# long an unchanged stream waits before a keep-alive comment (proxies close idle streams)
JOBS_POLL_S = 1.0
JOBS_SHOWN = 20
JOBS_KEEPALIVE_S = 15.0


async def job_events(engine: AsyncEngine, is_disconnected: Callable[[], Awaitable[bool]],
                     poll_s: float = JOBS_POLL_S) -> AsyncIterator[bytes]:
    """The recent jobs as one ``jobs`` event, again whenever any of them changed (a job's
    progress is written by its worker as it goes, so each write is a new event)."""
    yield f"retry: {int(poll_s * 1000) + 1000}\n\n".encode()
    last: str | None = None
    idle = 0.0
    while not await is_disconnected():
        async with engine.connect() as conn:
            rows = (await conn.execute(job_store.recent(status=None, dataset_id=None,
                                                        limit=JOBS_SHOWN))).all()
        body = json.dumps([job_view(r) for r in rows], default=str, ensure_ascii=False)
        if body != last:
            last = body
            idle = 0.0
            yield f"event: jobs\ndata: {body}\n\n".encode()
        else:
            idle += poll_s
            if idle >= JOBS_KEEPALIVE_S:
                idle = 0.0
                yield b": keep-alive\n\n"
        await asyncio.sleep(poll_s)


@router.get("/dashboard/jobs/stream")
async def dashboard_jobs_stream(request: Request, _: Reader) -> StreamingResponse:
    """Server-Sent Events for the jobs panel: the recent jobs with their progress."""
    return StreamingResponse(job_events(request.app.state.engine, request.is_disconnected),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


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
