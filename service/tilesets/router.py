"""3D Tiles: the city tileset, the current version of each tileset, and immutable versioned
content.

Caching: versioned content never changes (immutable, a year); ``tileset.json`` documents
change on publish (short max-age, must revalidate, ETag, 304). JSON is gzipped by the app's
middleware, which then marks the ETag weak; If-None-Match compares weakly, as RFC 9110 says.

With an S3 tile store, versioned files are streamed from the store (``tile_serving=proxy``,
Range requests passed on) or answered with a redirect to it (``redirect``: a presigned URL,
or the CDN URL in front of it); the current ``tileset.json`` is always served here, since
it names the current version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.core.auth import Reader
from service.core.errors import BadRequest, NotFound
from service.core.ids import Version
from service.tilesets import aggregate as citytileset
from service.tilesets import store
from service.tilesets.storage import (
    MEDIA,
    LocalTileStore,
    RangeNotSatisfiable,
    TileStore,
    cache_control,
    clean_key,
    media_type,
    tile_store,
)

router = APIRouter(prefix="/tiles", tags=["tiles"])



@router.get("", summary="Tilesets and their current versions")
async def list_tilesets(request: Request, _: Reader) -> list[dict[str, Any]]:
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(store.current_versions())).mappings().all()
    # the directory on the server is not the client's business
    return [{k: v for k, v in r.items() if k != "path"}
            | {"url": f"/tiles/{r['name']}/tileset.json"} for r in rows]


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    if header.strip() == "*":
        return True
    return _opaque(etag) in {_opaque(t) for t in header.split(",")}


def _json_response(request: Request, body: bytes, headers: dict[str, str]) -> Response:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": cache_control("tileset.json"), **headers}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get(f"/{citytileset.AGGREGATE_NAME}/tileset.json",
            summary="The city tileset: the current version of every tileset as a child",
            description="Children are external tilesets at their versioned URLs, so the "
                        "document changes (new ETag) whenever any tileset is republished. "
                        "`kinds` keeps only some kinds, e.g. `mesh,bim` without point clouds.")
async def city_tileset(request: Request, _: Reader,
                       kinds: str | None = Query(None, pattern=r"^[a-z0-9_,-]{1,200}$",
                                                 description="comma-separated tileset kinds")
                       ) -> Response:
    wanted = frozenset(k for k in kinds.split(",") if k) if kinds is not None else None
    if wanted is not None and not wanted:
        raise BadRequest("kinds lists no kind; leave it out for every tileset")
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(store.current_versions())).all()
    children = [citytileset.Child(r.name, r.version, r.kind, r.status, r.path) for r in rows]
    doc = await run_in_threadpool(citytileset.build, children,
                                  tile_store(request.app.state.settings), wanted)
    body = json.dumps(doc, separators=(",", ":")).encode()
    return _json_response(request, body, {"Twinbase-Tilesets": str(
        len(doc["root"]["children"]))})


@router.get("/{name}/tileset.json", summary="Current version of a tileset (short cache)")
async def current_tileset(name: str, request: Request, _: Reader) -> Response:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(store.current_of(name))).first()
    if row is None:
        raise NotFound(f"no published tileset {name!r}")
    raw = await run_in_threadpool(tile_store(request.app.state.settings).read_bytes,
                                  f"{row.path}/tileset.json")
    if raw is None:
        raise NotFound(f"tileset {name!r} v{row.version} has no tileset.json")
    doc = json.loads(raw)
    _prefix_uris(doc.get("root", {}), f"v{row.version}/")
    body = json.dumps(doc, separators=(",", ":")).encode()
    return _json_response(request, body, {"Twinbase-Tileset-Version": str(row.version)})


def _prefix_uris(tile: dict[str, Any], prefix: str) -> None:
    """Point relative content URIs of the current tileset.json into its version folder."""
    stack = [tile]
    while stack:
        node = stack.pop()
        for content in [node.get("content"), *(node.get("contents") or [])]:
            if content and "uri" in content and "://" not in content["uri"] \
                    and not content["uri"].startswith("/"):
                content["uri"] = prefix + content["uri"]
        stack.extend(node.get("children") or [])


@router.get("/{name}/v{version}/{path:path}", summary="Versioned tileset file (immutable)",
            description="A file of a version. With the S3 tile store in redirect mode the "
                        "answer is a 307 to the store (a presigned URL) or to the CDN in "
                        "front of it; otherwise the bytes, with ETag and Range support.",
            responses={206: {"description": "the byte range asked for"},
                       304: {"description": "not modified (If-None-Match)"},
                       307: {"description": "redirect mode: the file at the store or CDN"},
                       416: {"description": "the range lies outside the file"}})
async def versioned_file(name: str, version: Version, path: str, request: Request, _: Reader
                         ) -> Response:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(store.version_of(name, version))).first()
    if row is None or row.status == "failed":
        raise NotFound(f"no tileset {name!r} version {version}")
    settings = request.app.state.settings
    tiles = tile_store(settings)
    if not isinstance(tiles, LocalTileStore):
        key = clean_key(row.path, path)
        if key is None:
            raise NotFound(f"no file {path!r} in tileset {name!r} v{version}")
        if settings.tile_serving == "redirect":
            return _redirect(tiles.redirect_url(key) or "", path, settings.tile_public_url)
        return await _proxy(request, tiles, key, path, name, version)
    root = (settings.tiles_dir / row.path).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise NotFound(f"no file {path!r} in tileset {name!r} v{version}")
    stat = target.stat()
    etag = '"' + hashlib.md5(f"{stat.st_mtime}-{stat.st_size}".encode(),
                             usedforsecurity=False).hexdigest() + '"'
    headers = {"Cache-Control": cache_control(path), "ETag": etag}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(target, media_type=MEDIA.get(target.suffix, "application/octet-stream"),
                        headers=headers)


def _redirect(url: str, path: str, public_url: str | None) -> Response:
    """307 keeps the method. A CDN URL never changes, so the redirect is cached as its
    target is; a presigned one expires, so it is not cached by shared caches."""
    cache = cache_control(path) if public_url else "private, max-age=60"
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": cache})


async def _proxy(request: Request, tiles: TileStore, key: str, path: str, name: str,
                 version: int) -> Response:
    byte_range = request.headers.get("range")
    try:
        obj = await run_in_threadpool(tiles.open, key, byte_range)
    except RangeNotSatisfiable as exc:
        headers = {"Content-Range": f"bytes */{exc.size}"} if exc.size is not None else {}
        return Response(status_code=416, headers=headers)
    if obj is None:
        raise NotFound(f"no file {path!r} in tileset {name!r} v{version}")
    headers = {"Cache-Control": cache_control(path), "ETag": obj.etag,
               "Accept-Ranges": "bytes", "Content-Length": str(obj.length)}
    if _not_modified(request, obj.etag):
        await run_in_threadpool(_drain_close, obj.chunks)
        headers.pop("Content-Length")
        return Response(status_code=304, headers=headers)
    status = 200
    if obj.content_range:
        status = 206
        headers["Content-Range"] = obj.content_range
    return StreamingResponse(obj.chunks, status_code=status, media_type=media_type(path),
                             headers=headers)


def _drain_close(chunks: Any) -> None:
    """Close the store's response without reading it (304: the client has the bytes)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()

