"""City objects (CIM): query by id, bbox, type and attribute, with the living map's history.

Geometry is GeoJSON with Z (longitude, latitude, WGS 84 ellipsoidal height in metres). A click
on a building in the city tileset gives its ``id`` property; ``/city/objects/{id}`` is its row.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, literal_column, or_, select

from service.cim import export
from service.cim.tables import CITY_TILESET, city_changes, city_objects
from service.core.auth import Reader, Writer
from service.core.errors import BadRequest, Conflict, NotFound, Unprocessable
from service.core.ids import Id
from service.core.instants import UtcDatetime
from service.core.tables import datasets, tilesets
from service.features.binds import Binds
from service.features.crs import DEFAULT as DEFAULT_CRS
from service.features.engine import read_pool
from service.features.pager import list_links, read_page, restricted
from service.features.params import parse_bbox
from service.features.query import ItemsQuery
from service.features.registry import Collection, Prop
from service.features.responses import request_urls
from service.jobs.submit import submit_job_async

router = APIRouter(prefix="/city", tags=["city"])

GEOJSON = "application/geo+json"
ATTR_PREFIX = "attr."
c = city_objects.c
_PROPERTIES = (c.object_id, c.type, c.lod, c.name, c.parent_object_id, c.height, c.min_z,
               c.max_z, c.dataset_id, c.valid_from, c.valid_to, c.attributes)
Geometry = Literal["3d", "footprint", "none"]


def _geometry_column(kind: Geometry):
    if kind == "none":
        return None
    column = c.geom if kind == "3d" else c.footprint
    return func.ST_AsGeoJSON(column, 9).label("geometry")


def _select(kind: Geometry, *extra):
    columns = [*_PROPERTIES, *extra]
    geometry = _geometry_column(kind)
    if geometry is not None:
        columns.append(geometry)
    return select(*columns)


def valid_at(at: datetime | None) -> ColumnElement[bool]:
    """Current rows, or the rows that were valid at ``at``."""
    if at is None:
        return c.valid_to.is_(None)
    return and_(c.valid_from <= at, or_(c.valid_to.is_(None), c.valid_to > at))


def attribute_values(raw: str) -> list[Any]:
    """A query-string value as the JSON values it may stand for: ``1000`` matches the string
    "1000" and the number 1000, ``true`` the string and the boolean."""
    values: list[Any] = [raw]
    try:
        parsed = json.loads(raw)
    except ValueError:
        return values
    if isinstance(parsed, bool | int | float):
        values.append(parsed)
    return values


def attribute_filters(request: Request) -> list[ColumnElement[bool]]:
    filters = []
    for key, raw in request.query_params.multi_items():
        if not key.startswith(ATTR_PREFIX):
            continue
        name = key[len(ATTR_PREFIX):]
        if not name:
            raise BadRequest("attribute filters are attr.<name>=<value>, e.g. attr.roofType=1000")
        # containment (@>) is what the GIN index on attributes answers
        filters.append(or_(*(c.attributes.contains({name: v}) for v in attribute_values(raw))))
    return filters


def feature(row: Any, *, detail: bool = False) -> dict[str, Any]:
    props = {col.name: getattr(row, col.name) for col in _PROPERTIES}
    for key in ("valid_from", "valid_to"):
        if props[key] is not None:
            props[key] = props[key].isoformat()
    if detail:
        props["surfaces"] = (row.semantics or {}).get("surfaces", [])
        props["other_lods"] = row.other_lods or {}
    geometry = getattr(row, "geometry", None)
    return {
        "type": "Feature", "id": row.object_id,
        "geometry": json.loads(geometry) if geometry else None,
        "properties": props,
        "links": [{"rel": "self", "type": GEOJSON, "href": f"/city/objects/{row.object_id}"}],
    }


# What /city/objects answers of each object, in its order; the features engine reads the
# page (service.features.pager) from the rows the list's filters keep.
LISTED = Collection(
    id="city_objects", title="City objects", description="the rows of /city/objects",
    source="city_objects", geometry_type="Geometry", filter_geometry_column="footprint",
    properties=(
        Prop("object_id", "string", nullable=False), Prop("type", "string"),
        Prop("lod", "string"), Prop("name", "string"), Prop("parent_object_id", "string"),
        Prop("height", "number"), Prop("min_z", "number"), Prop("max_z", "number"),
        Prop("dataset_id", "integer"), Prop("valid_from", "datetime"),
        Prop("valid_to", "datetime"), Prop("attributes", "object"),
    ),
)
LISTED_CRS = replace(DEFAULT_CRS, decimals=9)


def _listed(f: dict[str, Any]) -> dict[str, Any]:
    """An engine feature in the shape of :func:`feature` (instants as Python writes them)."""
    props = f["properties"]
    for key in ("valid_from", "valid_to"):
        if props[key] is not None:
            props[key] = datetime.fromisoformat(props[key]).astimezone(UTC).isoformat()
    return {
        "type": "Feature", "id": props["object_id"], "geometry": f["geometry"],
        "properties": props,
        "links": [{"rel": "self", "type": GEOJSON, "href": f"/city/objects/{props['object_id']}"}],
    }


def _geojson(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, media_type=GEOJSON)


@router.get("", summary="The city model: current objects by type and the city tileset")
async def city_summary(request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        counts = (await conn.execute(select(c.type, func.count()).where(c.valid_to.is_(None))
                                     .group_by(c.type).order_by(c.type))).all()
        version = (await conn.execute(select(tilesets.c.version).where(
            tilesets.c.name == CITY_TILESET, tilesets.c.is_current))).scalar()
    return {
        "objects": sum(n for _, n in counts), "by_type": dict(counts),
        "tileset": {"url": f"/tiles/{CITY_TILESET}/tileset.json", "version": version}
        if version else None,
        "links": [{"rel": "items", "href": "/city/objects"}],
    }


@router.get(
    "/objects", summary="City objects by bbox, type and attribute (GeoJSON with Z)",
    description="`bbox=minlon,minlat,maxlon,maxlat` (WGS 84, tested against the footprint; "
                "six numbers add the lowest and highest height, as in OGC API - Features), "
                "`type=Building` (comma-separated for several), `attr.<name>=<value>` for "
                "attribute equality (numbers match as numbers or text), `at=<datetime>` for "
                "the living map as it was then (default: now), `dataset=<id>`, `geometry=3d|"
                "footprint|none`, `limit`, `offset`. Sorted by object id; a `next` link "
                "follows while there is more.",
    response_class=JSONResponse,
)
async def list_objects(
    request: Request, _: Reader,
    bbox: str | None = None,
    type: str | None = Query(None, description="Building, BuildingPart, Road, ..."),
    at: UtcDatetime | None = None,
    dataset: Id | None = None,
    geometry: Geometry = "3d",
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> JSONResponse:
    rows = select(literal_column("*")).select_from(city_objects).where(
        valid_at(at), *attribute_filters(request))
    if type:
        types = [t.strip() for t in type.split(",") if t.strip()]
        rows = rows.where(c.type.in_(types))
    box = parse_bbox(bbox or None, None)
    if box is not None and box[0].minz is not None:  # bbox with heights: the 3D extent
        rows = rows.where(c.max_z >= box[0].minz, c.min_z <= box[0].maxz)
    binds = Binds()
    listed = restricted(replace(LISTED, geometry_column="footprint" if geometry == "footprint"
                                else "geom"), rows, binds)
    q = ItemsQuery(bbox=box,
                   equals={} if dataset is None else {"dataset_id": dataset},
                   limit=limit, offset=offset, sortby=[("object_id", False)], crs=LISTED_CRS,
                   count=False, skip_geometry=geometry == "none")
    page = await read_page(read_pool(request), listed, q, binds)
    return _geojson({"type": "FeatureCollection", "numberReturned": page.returned,
                     "features": [_listed(f) for f in page.features()],
                     "links": list_links(request_urls(request.scope)[1], q, page, GEOJSON)})


EXPORT_DESCRIPTION = """\
The city model as CityJSON 2.0 (`f=cityjson`, `application/city+json`) or CityJSONSeq
(`f=cityjsonseq`, `application/city+json-seq`: a CityJSON line with `transform` and
`metadata`, then one CityJSONFeature per line: a root object with its descendants).

- `bbox=minlon,minlat,maxlon,maxlat` (tested against the footprint), in `bbox-crs`
  (default CRS84; EPSG:4326, 4490 and 4547 in their axis order);
- `datetime`: one instant, the city as it was then (versions with valid_from <= t <
  valid_to); a date is the end of that day (UTC); default: the current objects. An interval
  is refused (400);
- `dataset`: only objects whose source is that dataset;
- `crs`: the output CRS, a projected one in metres with an EPSG code (default EPSG:4547,
  CGCS2000 / 3-degree Gauss-Kruger CM 114E); a compound one (e.g. EPSG:7415) gives heights
  above its vertical datum, a 2D one WGS 84 ellipsoidal heights, as stored (the
  metadata's title says which).

Every object comes with its parents and descendants. Vertices are integers on a
millimetre grid (`transform`); every stored LoD is a geometry with its semantic surfaces;
closed shells are Solids. A CityJSON document holds at most `TWINBASE_CITY_EXPORT_MAX_OBJECTS`
objects (422 with the count above it); CityJSONSeq has no limit. An empty selection is an
empty, valid CityJSON."""


@router.get(
    "/export", summary="The city model as CityJSON 2.0 or CityJSONSeq (bbox, instant, dataset, "
    "output CRS)", description=EXPORT_DESCRIPTION, response_class=StreamingResponse,
    responses={200: {"content": {export.CITYJSON: {}, export.CITYJSONSEQ: {}}}})
async def export_city(
    request: Request, _: Reader,
    bbox: str | None = None,
    bbox_crs: str | None = Query(None, alias="bbox-crs"),
    instant: str | None = Query(None, alias="datetime", description="an RFC 3339 instant "
                                "or a date (its end); default: now"),
    dataset: Id | None = None,
    crs: str | None = Query(None, description=f"default {export.DEFAULT_CRS}"),
    f: Literal["cityjson", "cityjsonseq"] = "cityjson",
) -> StreamingResponse:
    media = export.FORMATS[f]
    out = export.output_crs(crs)
    box = parse_bbox(bbox or None, bbox_crs or None)
    at = export.export_instant(instant)
    limit = request.app.state.settings.city_export_max_objects
    stack = AsyncExitStack()
    try:
        conn = await stack.enter_async_context(request.app.state.engine.connect())
        # one snapshot for the selection and every batch read after it
        await conn.execution_options(isolation_level="REPEATABLE READ")
        await stack.enter_async_context(conn.begin())
        if dataset is not None and (await conn.execute(
                select(datasets.c.id).where(datasets.c.id == dataset))).first() is None:
            raise NotFound(f"no dataset {dataset}")
        sel = await export.select_rows(conn, at, box, dataset)
        if media == export.CITYJSON and len(sel) > limit:
            raise Unprocessable(
                f"the export holds {len(sel)} city objects, over the {limit} one CityJSON "
                "document may hold: ask for f=cityjsonseq (streamed, no limit) or a smaller "
                "bbox", objects=len(sel), limit=limit)
        labels = (await conn.execute(select(datasets.c.crs).distinct().where(
            datasets.c.id.in_(set(sel.datasets)), datasets.c.crs.is_not(None)))).scalars()
        export.check_area(out, sel, sorted(labels))
    except BaseException:
        await stack.aclose()
        raise
    write = export.write_cityjson if media == export.CITYJSON else export.write_cityjsonseq

    async def body():
        async with stack:
            async for chunk in write(conn, sel, out, at, anyio.to_thread.run_sync):
                yield chunk

    name = "city.city.json" if media == export.CITYJSON else "city.city.jsonl"
    return StreamingResponse(body(), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/objects/{object_id:path}/history", response_class=JSONResponse,
            summary="Every stored version of a city object, oldest first")
async def object_history(object_id: str, request: Request, _: Reader,
                         geometry: Geometry = "none") -> JSONResponse:
    query = _select(geometry).where(c.object_id == object_id).order_by(c.valid_from, c.id)
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    if not rows:
        raise NotFound(f"no city object {object_id!r}")
    return _geojson({"type": "FeatureCollection", "numberReturned": len(rows),
                     "features": [feature(r) for r in rows]})


@router.get("/objects/{object_id:path}",
            summary="One city object: its current version, or the one valid at `at`",
            response_class=JSONResponse)
async def get_object(object_id: str, request: Request, _: Reader, at: UtcDatetime | None = None,
                     geometry: Geometry = "3d") -> JSONResponse:
    query = _select(geometry, c.semantics, c.other_lods).where(c.object_id == object_id,
                                                               valid_at(at))
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        when = "now" if at is None else f"at {at.isoformat()}"
        raise NotFound(f"no city object {object_id!r} valid {when}")
    return _geojson(feature(row, detail=True))


# Routes under /datasets/{id}: the survey's change list and its modelling. A router of this
# domain beside the datasets router (FastAPI matches them by full path).
survey_router = APIRouter(tags=["city"])

CHANGES = ("new", "changed", "unchanged", "demolished", "skipped")


@survey_router.get("/datasets/{dataset_id}/changes", response_class=JSONResponse,
                   summary="The change list of a modelled survey: new, changed, unchanged, "
                           "demolished buildings with LoD, RMSE, points and reason")
async def survey_changes(dataset_id: Id, request: Request, _: Reader,
                         change: Literal[CHANGES] | None = None) -> JSONResponse:  # type: ignore[valid-type]
    ch = city_changes.c
    query = (select(ch.object_id, ch.change, ch.lod, ch.rmse_m, ch.points, ch.density,
                    ch.reason, ch.detected_at, func.ST_AsGeoJSON(ch.footprint, 9).label("g"))
             .where(ch.dataset_id == dataset_id).order_by(ch.change, ch.object_id))
    if change is not None:
        query = query.where(ch.change == change)
    async with request.app.state.engine.connect() as conn:
        if (await conn.execute(select(datasets.c.id).where(datasets.c.id == dataset_id))
                ).first() is None:
            raise NotFound(f"no dataset {dataset_id}")
        rows = (await conn.execute(query)).all()
    features = [{"type": "Feature", "id": r.object_id,
                 "geometry": json.loads(r.g) if r.g else None,
                 "properties": {"object_id": r.object_id, "change": r.change, "lod": r.lod,
                                "rmse_m": r.rmse_m, "points": r.points, "density": r.density,
                                "reason": r.reason, "detected_at": r.detected_at.isoformat(),
                                "dataset_id": dataset_id},
                 "links": [{"rel": "related", "type": GEOJSON,
                            "href": f"/city/objects/{r.object_id}"}]} for r in rows]
    return _geojson({"type": "FeatureCollection", "numberReturned": len(features),
                     "features": features})


def _server_layer(path: str, data_dir: Path) -> str:
    """A footprint layer named by a client must lie in the server's data directory: an API
    key is no licence to make the server open any file it can read."""
    root = Path(data_dir).resolve()
    resolved = (root / path).resolve()  # a relative path is taken from the data directory
    if not resolved.is_relative_to(root):
        raise Unprocessable(f"the footprint layer must be in the server's data directory "
                            f"({root}); {path!r} is not")
    if not resolved.exists():
        raise Unprocessable(f"no footprint layer {path!r} in the server's data directory")
    return str(resolved)


class ModelBody(BaseModel):
    footprints: str | None = Field(None, description="footprint layer (GeoJSON, GeoPackage "
                                   "or any OGR source) in the server's data directory, as a "
                                   "path relative to it or absolute")
    footprints_layer: str | None = Field(None, description="layer of that source")
    footprints_id: str | None = Field(None, description="attribute naming each building")
    reclassify: bool = Field(False, description="classify anew even where the file's "
                             "classes are meaningful")


@survey_router.post("/datasets/{dataset_id}/model", status_code=202,
                    summary="Model a stored survey into buildings of the city model again")
async def model_survey_again(dataset_id: Id, request: Request, principal: Writer,
                             body: ModelBody | None = None) -> dict[str, Any]:
    from service.cim.fly import survey_problem

    settings = request.app.state.settings
    async with request.app.state.engine.begin() as conn:
        row = (await conn.execute(select(datasets).where(datasets.c.id == dataset_id))).first()
        if row is None:
            raise NotFound(f"no dataset {dataset_id}")
        problem = survey_problem(row, dataset_id)
        if problem is not None:
            raise (Unprocessable if row.kind != "lidar" else Conflict)(problem)
        params = body.model_dump(exclude_none=True) if body is not None else {}
        if "footprints" in params:
            params["footprints"] = _server_layer(params["footprints"], settings.data_dir)
        job_id = await submit_job_async(conn, "model_survey", dataset_id=dataset_id,
                                        params=params, created_by=principal.name,
                                        max_attempts=settings.job_max_attempts)
    request.state.audit_detail = {"dataset": dataset_id, "job": job_id}
    return {"job_id": job_id, "dataset_id": dataset_id,
            "links": {"job": f"/jobs/{job_id}", "changes": f"/datasets/{dataset_id}/changes"}}
