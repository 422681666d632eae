"""3D Tiles: the city tileset, the current version of each tileset, and immutable versioned
content.

Caching: versioned content never changes (immutable, a year); ``tileset.json`` documents
change on publish (short max-age, must revalidate, ETag, 304). JSON is gzipped by the app's
middleware, which then marks the ETag weak; If-None-Match compares weakly, as RFC 9110 says.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from service.core.auth import Reader
from service.core.errors import BadRequest, NotFound
from service.core.ids import Version
from service.tilesets import aggregate as citytileset
from service.tilesets import store

router = APIRouter(prefix="/tiles", tags=["tiles"])

SHORT_CACHE = "public, max-age=10, must-revalidate"
IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA = {".json": "application/json", ".glb": "model/gltf-binary", ".subtree":
         "application/octet-stream", ".pnts": "application/octet-stream",
         ".b3dm": "application/octet-stream"}


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
    headers = {"ETag": etag, "Cache-Control": SHORT_CACHE, **headers}
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
                                  request.app.state.settings.tiles_dir, wanted)
    body = json.dumps(doc, separators=(",", ":")).encode()
    return _json_response(request, body, {"Twinbase-Tilesets": str(
        len(doc["root"]["children"]))})


@router.get("/{name}/tileset.json", summary="Current version of a tileset (short cache)")
async def current_tileset(name: str, request: Request, _: Reader) -> Response:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(store.current_of(name))).first()
    if row is None:
        raise NotFound(f"no published tileset {name!r}")
    path = request.app.state.settings.tiles_dir / row.path / "tileset.json"
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise NotFound(f"tileset {name!r} v{row.version} has no tileset.json") from exc
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


@router.get("/{name}/v{version}/{path:path}", summary="Versioned tileset file (immutable)")
async def versioned_file(name: str, version: Version, path: str, request: Request, _: Reader
                         ) -> Response:
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(store.version_of(name, version))).first()
    if row is None or row.status == "failed":
        raise NotFound(f"no tileset {name!r} version {version}")
    root = (request.app.state.settings.tiles_dir / row.path).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise NotFound(f"no file {path!r} in tileset {name!r} v{version}")
    stat = target.stat()
    etag = '"' + hashlib.md5(f"{stat.st_mtime}-{stat.st_size}".encode(),
                             usedforsecurity=False).hexdigest() + '"'
    # tileset.json of a version in progress changes (preview, then complete); content never
    cache = SHORT_CACHE if Path(path).name == "tileset.json" else IMMUTABLE
    headers = {"Cache-Control": cache, "ETag": etag}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(target, media_type=MEDIA.get(target.suffix, "application/octet-stream"),
                        headers=headers)
