"""Assembling responses: the FeatureCollection around PostgreSQL's bytes, and links."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from starlette.datastructures import URL
from starlette.responses import Response
from starlette.types import Scope

from service.core.errors import BadRequest
from service.features.crs import Crs

GEOJSON = "application/geo+json"


@lru_cache(maxsize=256)
def _origin(scheme: str, host: bytes | None, server: tuple[str, int] | None) -> str:
    """``scheme://host[:port]`` as Starlette derives it (Host header, else the socket's
    address), computed once per distinct Host header instead of on every request."""
    scope = {"type": "http", "scheme": scheme, "server": server, "path": "/",
             "query_string": b"", "headers": [(b"host", host)] if host is not None else []}
    url = URL(scope=scope)
    return f"{url.scheme}://{url.netloc}" if url.netloc else ""


def request_urls(scope: Scope) -> tuple[str, str]:
    """(base, self): the service's base URL without a trailing slash (``request.base_url``)
    and the request's own URL (``request.url``)."""
    host = next((value for key, value in scope["headers"] if key == b"host"), None)
    server = scope.get("server")
    origin = _origin(scope.get("scheme", "http"), host, tuple(server) if server else None)
    root = scope.get("app_root_path", scope.get("root_path", ""))
    path = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    try:
        query = scope.get("query_string", b"").decode()
    except UnicodeDecodeError:
        raise BadRequest("the query string is not UTF-8 (percent-encode it)") from None
    return origin + root.rstrip("/"), origin + path + (f"?{query}" if query else "")


def page_url(url: str, offset: int) -> str:
    """``url`` with its offset parameter set to ``offset`` (left out for 0): the other
    parameters keep their order and their encoding."""
    path, _, query = url.partition("?")
    parts = [p for p in query.split("&")
             if p and unquote_plus(p.partition("=")[0]) != "offset"]
    if offset:
        parts.append(f"offset={offset}")
    return f"{path}?{'&'.join(parts)}" if parts else path


def feature_collection(body: bytes, *, returned: int, matched: int | None, url: str,
                       base: str, collection_id: str, next_href: str | None,
                       prev_href: str | None, crs: Crs) -> Response:
    links: list[dict[str, Any]] = [
        {"rel": "self", "type": GEOJSON, "href": url},
        {"rel": "collection", "type": "application/json",
         "href": f"{base}/collections/{collection_id}"},
    ]
    if next_href is not None:
        links.append({"rel": "next", "type": GEOJSON, "href": next_href})
    if prev_href is not None:
        links.append({"rel": "prev", "type": GEOJSON, "href": prev_href})
    tail: dict[str, Any] = {}
    if matched is not None:
        tail["numberMatched"] = matched
    tail["numberReturned"] = returned
    tail["timeStamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tail["links"] = links
    footer = json.dumps(tail, separators=(",", ":"), ensure_ascii=False).encode()
    content = b'{"type":"FeatureCollection","features":[' + body + b"]," + footer[1:]
    return Response(content, media_type=GEOJSON, headers={"Content-Crs": crs.header})


def json_response(data: Any, media_type: str = "application/json") -> Response:
    return Response(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(),
                    media_type=media_type)
