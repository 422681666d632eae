"""Assembling responses: the FeatureCollection around PostgreSQL's bytes, and links."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import URL
from starlette.responses import Response

from service.features.crs import Crs

GEOJSON = "application/geo+json"


def page_url(url: URL, offset: int) -> str:
    url = url.remove_query_params("offset")
    return str(url.include_query_params(offset=offset)) if offset else str(url)


def feature_collection(body: bytes, *, returned: int, matched: int | None, url: URL,
                       base: str, collection_id: str, offset: int, limit: int,
                       crs: Crs) -> Response:
    links: list[dict[str, Any]] = [
        {"rel": "self", "type": GEOJSON, "href": str(url)},
        {"rel": "collection", "type": "application/json",
         "href": f"{base}/collections/{collection_id}"},
    ]
    more = returned == limit and (matched is None or offset + limit < matched)
    if more:
        links.append({"rel": "next", "type": GEOJSON, "href": page_url(url, offset + limit)})
    if offset > 0:
        links.append({"rel": "prev", "type": GEOJSON,
                      "href": page_url(url, max(0, offset - limit))})
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
