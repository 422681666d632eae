"""Quantized-mesh terrain for CesiumJS's ``CesiumTerrainProvider``: ``/terrain/layer.json``
and ``/terrain/{z}/{x}/{y}.terrain``, over every stored survey DTM, newest survey first, and
the EGM96 sea level wherever none has data (so the globe is never a hole).

Caching: a tile changes only when a DTM that meets it is added, replaced or removed. The
tile's ETag is the tag of those DTMs (304 on revalidation, no tile computed); layer.json's
``tiles`` template carries the tag of all DTMs (``?v=``), so a tile fetched with the current
tag may be cached for a day, and one with an older tag must be revalidated. Tiles made are
kept in the process (least recently used out first).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service.core.auth import Reader
from service.core.errors import NotFound
from service.terrain import store
from tiler.terrain import tiles as qm

router = APIRouter(prefix="/terrain", tags=["terrain"])

MEDIA = "application/vnd.quantized-mesh"
LAYER_CACHE = "no-cache"  # always revalidated (ETag): a new survey shows at once
CURRENT_TILE_CACHE = "public, max-age=86400"
STALE_TILE_CACHE = "no-cache"
TILE_CACHE_BYTES = 64 * 1024 * 1024
NORMALS = "octvertexnormals"


class _TileCache:
    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self.lock:
            body = self.items.get(key)
            if body is not None:
                self.items.move_to_end(key)
            return body

    def put(self, key: tuple[Any, ...], body: bytes) -> None:
        with self.lock:
            if key not in self.items:
                self.items[key] = body
                self.used += len(body)
            while self.used > self.limit and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.used -= len(old)


TILES = _TileCache(TILE_CACHE_BYTES)


def _matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return header.strip() == "*" or etag in tags


@router.get("/layer.json", summary="Terrain layer for CesiumTerrainProvider",
            description="quantized-mesh-1.0 in the geographic tms scheme: level 0 everywhere "
                        "(sea level where no survey has a DTM), deeper levels where survey "
                        "DTMs are, down to their cell size. `surveys` counts the DTMs: 0 "
                        "means the layer is sea level only.")
async def layer_json(request: Request, _: Reader) -> Response:
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(store.LAYER)).all()
    version = store.version_of(rows)
    levels = qm.available(((r.w, r.s, r.e, r.n), r.cell) for r in rows)
    doc = {
        "tilejson": "2.1.0", "name": "survey terrain",
        "description": "DTMs of the modelled LiDAR surveys (newest survey first), WGS 84 "
                       "ellipsoidal heights; EGM96 sea level elsewhere",
        "version": "1.0.0", "format": "quantized-mesh-1.0", "scheme": "tms",
        "projection": "EPSG:4326", "bounds": [-180.0, -90.0, 180.0, 90.0],
        "minzoom": 0, "maxzoom": len(levels) - 1, "extensions": [NORMALS],
        "tiles": [f"{{z}}/{{x}}/{{y}}.terrain?v={version}"],
        "available": [[r.json() for r in level] for level in levels],
        "surveys": len(rows), "dataset_ids": [r.dataset_id for r in rows],
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": LAYER_CACHE}
    if _matches(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/{z}/{x}/{y}.terrain", summary="A quantized-mesh terrain tile",
            response_class=Response,
            responses={200: {"content": {MEDIA: {}}}},
            description="Heights of every survey DTM that meets the tile, newest survey "
                        "first, EGM96 sea level elsewhere; with the octvertexnormals "
                        "extension when the Accept header (or `extensions`) asks for it. "
                        "404 for a z / x / y outside the scheme.")
async def terrain_tile(z: int, x: int, y: int, request: Request, _: Reader,
                       v: str | None = Query(None, max_length=64,
                                             description="the layer's version (cache key)"),
                       extensions: str | None = Query(None, max_length=200)) -> Response:
    problem = qm.bad_tile(z, x, y)
    if problem is not None:
        raise NotFound(f"no terrain tile {z}/{x}/{y}: {problem} (geographic tms scheme, "
                       f"2 x 1 tiles at level 0)")
    tile = qm.Tile(z, x, y)
    wanted = f"{request.headers.get('accept', '')};{extensions or ''}"
    normals = NORMALS in wanted
    async with request.app.state.engine.connect() as conn:
        everything = (await conn.execute(store.LAYER)).all()
        rows = (await conn.execute(store.overlapping(*tile.bounds))).all()
        key = store.version_of(rows)
        etag = f'"{key}{"-n" if normals else ""}"'
        current = v is not None and v == store.version_of(everything)
        headers = {"ETag": etag, "Vary": "Accept",
                   "Cache-Control": CURRENT_TILE_CACHE if current else STALE_TILE_CACHE}
        if _matches(request, etag):
            return Response(status_code=304, headers=headers)
        cache_key = (key, z, x, y, normals)
        body = TILES.get(cache_key)
        if body is None:
            stack = await store.load_stack(conn, rows)
            body = await run_in_threadpool(qm.render_tile, tile, stack, normals=normals)
            TILES.put(cache_key, body)
    media = f"{MEDIA};extensions={NORMALS}" if normals else MEDIA
    return Response(body, media_type=media, headers=headers)
