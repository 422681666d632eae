"""OGC API - Features endpoints over the registry (and the landing page of the service).

Handlers read raw query parameters (so unknown ones can be refused, as Part 1 asks) and
return bytes built by PostgreSQL; nothing here is specific to one layer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from service import __version__
from service.core.auth import Reader, current_principal, reader
from service.core.errors import BadRequest, NotFound
from service.features import conformance, metadata, openapi, registry, responses, tiles
from service.features.binds import Binds
from service.features.cql2sql import compile_filter, parse
from service.features.crs import parse_crs
from service.features.engine import lifespan, read_pool
from service.features.execute import fetchrow
from service.features.pager import next_url, prev_url, read_page
from service.features.params import (
    parse_bbox,
    parse_datetime,
    parse_instant,
    parse_limit,
    parse_offset,
    parse_properties,
    parse_sortby,
)
from service.features.query import ItemsQuery, item_sql
from service.features.registry import Collection

router = APIRouter(tags=["features"], lifespan=lifespan)

ITEM_PARAMS = frozenset({"limit", "offset", "bbox", "bbox-crs", "datetime", "crs", "filter",
                         "filter-lang", "filter-crs", "properties", "sortby", "f"})
ONE_PARAMS = frozenset({"crs", "properties", "f"})
TILE_PARAMS = frozenset({"filter", "filter-lang", "filter-crs", "datetime", "f"})
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean", "datetime", "date"})


async def _may_read(request: Request) -> None:
    """The Reader rule, called directly on the hottest routes: same checks, without the
    per-request dependency solving."""
    await reader(request, await current_principal(request))


def _base(request: Request) -> str:
    return responses.request_urls(request.scope)[0]


def _collection(request: Request, collection_id: str) -> Collection:
    cat = registry.catalog(request)
    c = cat.get(collection_id)
    if c is None:
        known = ", ".join(x.id for x in cat.collections())
        raise NotFound(f"no collection {collection_id!r}; collections: {known}")
    return c


def _check_params(params: Any, allowed: frozenset[str], c: Collection | None = None) -> None:
    for key in params:
        if key in allowed:
            continue
        if c is not None and key in c.props_by_name and \
                c.props_by_name[key].queryable and c.props_by_name[key].type in SCALAR_TYPES:
            continue
        raise BadRequest(f"unknown query parameter {key!r}")
    fmt = params.get("f")
    if fmt is not None and fmt.lower() not in ("json", "geojson", "application/json",
                                               "application/geo+json", "mvt"):
        raise BadRequest(f"f={fmt!r} is not offered; this server answers JSON and GeoJSON")


def _equality(c: Collection, params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in params.items():
        prop = c.props_by_name.get(key)
        if prop is None or key in ITEM_PARAMS:
            continue
        try:
            if prop.type == "integer":
                out[key] = int(raw)
            elif prop.type == "number":
                out[key] = float(raw)
            elif prop.type == "boolean":
                if raw.lower() not in ("true", "false"):
                    raise ValueError
                out[key] = raw.lower() == "true"
            elif prop.type in ("datetime", "date"):
                out[key] = parse_instant(raw, key)[0]
            else:
                out[key] = raw
        except ValueError:
            raise BadRequest(f"{key}={raw!r} is not a valid {prop.type}") from None
    return out


def _filter(c: Collection, params: Any, binds: Binds) -> str | None:
    raw = params.get("filter")
    if raw is None:
        return None
    tree = parse(raw, params.get("filter-lang"))
    return compile_filter(tree, c, binds, parse_crs(params.get("filter-crs"), "filter-crs"))


@router.get("/", summary="Landing page", tags=["operations"])
async def landing(request: Request) -> Response:
    return responses.json_response(metadata.landing(_base(request), "Twinbase", __version__))


@router.get("/conformance", summary="Conformance classes")
async def get_conformance(_: Reader) -> Response:
    return responses.json_response({"conformsTo": conformance.CONFORMS_TO})


@router.get("/api", summary="API definition (OpenAPI 3, with one items path per collection)")
async def api(request: Request) -> Response:
    doc = openapi.api_document(request.app.openapi(), registry.catalog(request).collections())
    return responses.json_response(doc, "application/vnd.oai.openapi+json;version=3.0")


@router.get("/collections", summary="Feature collections")
async def list_collections(request: Request, _: Reader) -> Response:
    base = _base(request)
    reads = read_pool(request)
    docs = [metadata.collection_doc(base, c, await metadata.extent(reads, c))
            for c in registry.catalog(request).collections()]
    return responses.json_response({
        "links": [{"rel": "self", "type": "application/json", "href": f"{base}/collections"}],
        "collections": docs,
    })


@router.get("/collections/{collection_id}", summary="One feature collection")
async def get_collection(collection_id: str, request: Request, _: Reader) -> Response:
    c = _collection(request, collection_id)
    ext = await metadata.extent(read_pool(request), c)
    return responses.json_response(metadata.collection_doc(_base(request), c, ext))


@router.get("/collections/{collection_id}/queryables", summary="Queryable properties")
async def queryables(collection_id: str, request: Request, _: Reader) -> Response:
    c = _collection(request, collection_id)
    return responses.json_response(metadata.queryables_doc(_base(request), c),
                                   "application/schema+json")


async def items(request: Request) -> Response:
    await _may_read(request)
    collection_id = request.path_params["collection_id"]
    c = _collection(request, collection_id)
    params = request.query_params
    _check_params(params, ITEM_PARAMS, c)
    binds = Binds()
    crs = parse_crs(params.get("crs"))
    q = ItemsQuery(
        bbox=parse_bbox(params.get("bbox"), params.get("bbox-crs")),
        interval=parse_datetime(params.get("datetime")),
        equals=_equality(c, params),
        limit=parse_limit(params.get("limit")),
        offset=parse_offset(params.get("offset")),
        sortby=parse_sortby(params.get("sortby"), c),
        properties=parse_properties(params.get("properties"), c),
        crs=crs,
    )
    q.filter_sql = _filter(c, params, binds)
    page = await read_page(read_pool(request), c, q, binds)
    base, url = responses.request_urls(request.scope)
    return responses.feature_collection(
        page.body, returned=page.returned, matched=page.matched, url=url, base=base,
        collection_id=c.id, next_href=next_url(url, q, page), prev_href=prev_url(url, q),
        crs=crs)


async def item(request: Request) -> Response:
    await _may_read(request)
    collection_id = request.path_params["collection_id"]
    feature_id = request.path_params["feature_id"]
    c = _collection(request, collection_id)
    params = request.query_params
    _check_params(params, ONE_PARAMS)
    crs = parse_crs(params.get("crs"))
    if c.id_type == "integer":
        try:
            fid: Any = int(feature_id)
        except ValueError:
            raise NotFound(f"no feature {feature_id!r} in {c.id} (ids are integers)") from None
        if not -(2**63) <= fid < 2**63:
            raise NotFound(f"no feature {feature_id!r} in {c.id}")
    else:
        fid = feature_id
    binds = Binds()
    sql = item_sql(c, fid, binds, crs, parse_properties(params.get("properties"), c))
    row = await fetchrow(read_pool(request), sql, binds.values)
    if row is None:
        raise NotFound(f"no feature {feature_id!r} in {c.id}")
    base = _base(request)
    links = (b',"links":[{"rel":"self","type":"application/geo+json","href":"'
             + f"{base}/collections/{c.id}/items/{fid}".encode()
             + b'"},{"rel":"collection","type":"application/json","href":"'
             + f"{base}/collections/{c.id}".encode() + b'"}]}')
    return Response(row["body"][:-1] + links, media_type=responses.GEOJSON,
                    headers={"Content-Crs": crs.header})


@router.get("/collections/{collection_id}/tiles", summary="Vector tilesets of a collection")
async def tilesets(collection_id: str, request: Request, _: Reader) -> Response:
    c = _collection(request, collection_id)
    href = f"{_base(request)}/collections/{c.id}/tiles/WebMercatorQuad"
    return responses.json_response({"tilesets": [{
        "title": f"{c.title} (MVT)", "dataType": "vector",
        "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
        "tileMatrixSetURI": "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
        "links": [{"rel": "item", "type": "application/vnd.mapbox-vector-tile",
                   "templated": True, "href": href + "/{tileMatrix}/{tileCol}/{tileRow}"}],
    }]})


async def tile(request: Request) -> Response:
    await _may_read(request)
    c = _collection(request, request.path_params["collection_id"])
    z, x, y = (request.path_params[k] for k in ("z", "x", "y"))
    params = request.query_params
    _check_params(params, TILE_PARAMS)
    tiles.check_tile(z, x, y)
    binds = Binds()
    where: list[str] = []
    flt = _filter(c, params, binds)
    if flt:
        where.append(flt)
    sql = tiles.tile_sql(c, z, x, y, binds, where)
    row = await fetchrow(read_pool(request), sql, binds.values)
    body = (row[0] if row else None) or b""
    return Response(bytes(body), media_type="application/vnd.mapbox-vector-tile",
                    headers={"Cache-Control": "public, max-age=60"})


# The three hottest routes are plain Starlette routes: no dependency solving or parameter
# models per request (their parameters are read above, and described in openapi.py). They
# go first in the router, so a request for them is not matched against every other route
# first; no other route's pattern overlaps theirs, so the order changes nothing else.
_declared = len(router.routes)
router.add_route("/collections/{collection_id}/items/{feature_id}", item, methods=["GET"],
                 include_in_schema=False)
router.add_route("/collections/{collection_id}/items", items, methods=["GET"],
                 include_in_schema=False)
router.add_route("/collections/{collection_id}/tiles/WebMercatorQuad/{z:int}/{x:int}/{y:int}",
                 tile, methods=["GET"], include_in_schema=False)
router.routes[:] = router.routes[_declared:] + router.routes[:_declared]
