"""BIM elements: query by class, storey, property values, space and GlobalId; the spaces
(rooms) of models, also by an element they hold or that bounds them; re-ingest a model with
an anchor.

Elements come back as GeoJSON features: the plan footprint as geometry (lon / lat), the 3D
extent as the feature's 6-number ``bbox`` (lon, lat, ellipsoidal height), and the element's
identity; ``psets=true`` adds the property and quantity sets (always there for one element).
The feature id is the IFC GlobalId, which is also the feature id in the model's 3D Tiles.
Spaces come back the same way, with their floor area and element counts; they are not in
the tiles (readers/ifc/spaces.py says why, which room an element is in and which rooms it
bounds).

An element relates to rooms in two ways the file keeps apart: the room it is in
(``space_global_id``: furniture, a stair) and the rooms it bounds
(``bounded_space_global_ids``, after IfcRelSpaceBoundary: walls, doors, windows, slabs).
``space_relation`` picks which one a query by room (or by element) follows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from geoalchemy2.functions import ST_AsGeoJSON
from pydantic import BaseModel, Field
from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    any_,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.types import UserDefinedType

from service.bim.tables import bim_elements as el
from service.bim.tables import bim_spaces as sp
from service.core.auth import Reader, Writer
from service.core.errors import BadRequest, NotFound, Unprocessable
from service.core.ids import Id
from service.core.tables import datasets
from service.features.binds import Binds
from service.features.engine import read_pool
from service.features.pager import list_links, read_page, restricted
from service.features.params import parse_bbox
from service.features.query import ItemsQuery
from service.features.registry import Collection, Prop
from service.features.responses import request_urls
from service.jobs.submit import submit_job_async

router = APIRouter(prefix="/bim", tags=["bim"])

_COLUMNS = [el.c.id, el.c.dataset_id, el.c.global_id, el.c.ifc_class, el.c.name,
            el.c.type_name, el.c.assembly_global_id, el.c.assembly_class, el.c.storey,
            el.c.storey_global_id, el.c.storey_elevation,
            el.c.building_object_id, el.c.min_height, el.c.max_height, el.c.triangles,
            el.c.space_global_id, el.c.bounded_space_global_ids]
_SPACE_COLUMNS = [sp.c.dataset_id, sp.c.global_id, sp.c.name, sp.c.long_name, sp.c.storey,
                  sp.c.storey_global_id, sp.c.floor_area, sp.c.min_height, sp.c.max_height]
MAX_TEXT = 255  # an IfcLabel (a space's name or long name) is at most this long
SPACE_HELP = ("the space's GlobalId, or its whole name or long name (any case), as "
              "/bim/spaces lists them")
ELEMENT_HELP = "an element's IFC GlobalId, as /bim/elements lists them"
GLOBAL_ID_LENGTH = 22
# what a planner means by "the elements of room X" depends on the question: its contents
# (the furniture to move) or its boundaries (the doors to check), so both can be asked for
SPACE_RELATIONS = ("contained", "boundary", "any")
SPACE_RELATION_HELP = (
    "contained: the element is in the room (the room the file contains it in, else the room "
    "around it: furniture, stairs, columns); boundary: the element bounds the room after the "
    "file's IfcRelSpaceBoundary (walls, doors, windows, slabs, coverings; a partition bounds "
    "the rooms on both sides); any: either")
_FILTER = re.compile(r"^(?P<path>[^<>=!]+?)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>.*)$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_OPS = {"=": "==", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
FILTER_HELP = ("property filters look like Pset_WallCommon.IsExternal=true, "
               "FireRating=EI90 (any property set) or Qto_WallBaseQuantities.Length>=5; "
               "operators = != > >= < <=")


def _select(with_psets: bool):
    cols = [*_COLUMNS, ST_AsGeoJSON(el.c.footprint, 7).label("geojson"),
            func.ST_XMin(el.c.bbox3d).label("x0"), func.ST_YMin(el.c.bbox3d).label("y0"),
            func.ST_XMax(el.c.bbox3d).label("x1"), func.ST_YMax(el.c.bbox3d).label("y1")]
    if with_psets:
        cols.append(el.c.psets)
    return select(*cols)


def _element_links(props: dict[str, Any]) -> dict[str, Any]:
    gid, ds, building = props["global_id"], props["dataset_id"], props["building_object_id"]
    return {
        "self": f"/bim/elements/{gid}?dataset={ds}",
        "dataset": f"/datasets/{ds}",
        "tileset": f"/tiles/bim-{ds}/tileset.json",
        "building": f"/city/objects/{building}" if building else None,
        "spaces": f"/bim/spaces?dataset={ds}&element={quote(gid)}",
    }


def feature(row: Any, with_psets: bool) -> dict[str, Any]:
    props = {c.name: getattr(row, c.name) for c in _COLUMNS if c.name != "id"}
    if with_psets:
        props["psets"] = row.psets
    props["links"] = _element_links(props)
    return {
        "type": "Feature", "id": row.global_id,
        "bbox": [row.x0, row.y0, row.min_height, row.x1, row.y1, row.max_height],
        "geometry": json.loads(row.geojson) if row.geojson else None,
        "properties": props,
    }


def _prop(column: Any) -> Prop:
    kind = column.type.python_type if not isinstance(column.type, ARRAY) else list
    return Prop(column.name, {float: "number", int: "integer", list: "array"}.get(kind, "string"),
                nullable=column.nullable)


# The 3D extent of a feature, as its GeoJSON bbox: lon, lat and ellipsoidal height
_BBOX = Prop("bbox", "array", sql="json_build_array(ST_XMin(t.bbox3d), ST_YMin(t.bbox3d), "
             "t.min_height, ST_XMax(t.bbox3d), ST_YMax(t.bbox3d), t.max_height)")
# What /bim/elements answers of each element, in the order of :func:`feature`; the features
# engine reads the page (service.features.pager) from the rows the list's filters keep.
LISTED = Collection(
    id="bim_elements", title="BIM elements", description="the rows of /bim/elements",
    source="bim_elements", geometry_type="MultiPolygon", geometry_column="footprint",
    properties=(*(_prop(c) for c in _COLUMNS if c.name != "id"),
                Prop("psets", "object"), _BBOX),
)
_WITHOUT_PSETS = [p.name for p in LISTED.properties if p.name != "psets"]


def _listed(f: dict[str, Any]) -> dict[str, Any]:
    """An engine feature in the shape of :func:`feature`."""
    props = f["properties"]
    box = props.pop("bbox")
    props["links"] = _element_links(props)
    return {"type": "Feature", "id": props["global_id"], "bbox": box,
            "geometry": f["geometry"], "properties": props}


async def _page(request: Request, view: Collection, rows: Select[Any], q: ItemsQuery,
                to_feature: Callable[[dict[str, Any]], dict[str, Any]]) -> JSONResponse:
    """One page of ``view`` read from ``rows`` by the features engine, with a next link
    while there is more."""
    binds = Binds()
    page = await read_page(read_pool(request), restricted(view, rows, binds), q, binds)
    return JSONResponse({"type": "FeatureCollection", "numberReturned": page.returned,
                         "features": [to_feature(f) for f in page.features()],
                         "links": list_links(request_urls(request.scope)[1], q, page)})


def _literal(text: str) -> Any:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        return t[1:-1]
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if _NUMBER.match(t):
        return float(t)
    return t


def _quoted(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def property_filter(expr: str):
    """``Pset.Prop<op>value`` (or ``Prop<op>value`` for any set) as a JSON path test with the
    value bound as a variable, so nothing from the request is spliced into SQL."""
    m = _FILTER.match(expr.strip())
    if not m or not m.group("path").strip():
        raise BadRequest(f"cannot read the property filter {expr!r}: {FILTER_HELP}")
    path, op = m.group("path").strip(), m.group("op")
    value = _literal(m.group("value"))
    if op not in ("=", "!=") and not isinstance(value, float):
        raise BadRequest(f"{op} compares numbers; {m.group('value')!r} is not one")
    pset, _, prop = path.partition(".") if "." in path else ("*", "", path)
    head = "$.*" if pset in ("*", "") else f"$.{_quoted(pset)}"
    test = f"@ {_OPS[op]} $v"
    if isinstance(value, float) and op in ("=", "!="):
        # a number written as text in the file ("5") matches the number 5 too
        test = "@ == $v || @ == $s" if op == "=" else "@ != $v && @ != $s"
    jsonpath = f"{head}.{_quoted(prop.strip())} ? ({test})"
    variables = {"v": value, "s": m.group("value").strip()}
    return func.jsonb_path_exists(el.c.psets, cast(literal(jsonpath, Text), _JSONPATH),
                                  cast(literal(json.dumps(variables), Text), _JSONB))


def _pg_type(name: str) -> UserDefinedType:
    """A PostgreSQL type for CAST that SQLAlchemy has no class for (jsonpath)."""

    class T(UserDefinedType):
        cache_ok = True

        def get_col_spec(self, **kw: Any) -> str:
            return name

    return T()


_JSONPATH = _pg_type("jsonpath")
_JSONB = _pg_type("jsonb")


def _text_value(key: str, value: str, what: str) -> str:
    """A text filter as given, refused when it cannot name anything: empty, longer than an
    IFC label can be, or with control characters (PostgreSQL refuses a NUL outright)."""
    v = value.strip()
    if not v:
        raise BadRequest(f"{key} must not be empty: give {what}")
    if len(v) > MAX_TEXT:
        raise BadRequest(f"{key} is {len(v)} characters long; at most {MAX_TEXT}: give {what}")
    if any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise BadRequest(f"{key} contains control characters: give {what}")
    return v


def _contains(column, value: str):
    return column.ilike("%" + value.replace("\\", "\\\\").replace("%", "\\%")
                        .replace("_", "\\_") + "%")


def _space_relation(value: str | None, needs: str, given: bool, default: str) -> str:
    """A ``space_relation`` parameter checked by hand, so a bad one is a 400 with the
    values it can take, and one without the parameter it qualifies is refused rather than
    ignored (it would return everything)."""
    if value is None:
        return default
    if not given:
        raise BadRequest(f"space_relation applies to {needs}; give {needs} too")
    v = value.strip().lower()
    if v not in SPACE_RELATIONS:
        raise BadRequest(f"space_relation must be one of {', '.join(SPACE_RELATIONS)}, not "
                         f"{value!r}: {SPACE_RELATION_HELP}")
    return v


def _in_space(value: str, relation: str) -> ColumnElement[bool]:
    """Elements in (or bounding) the space(s) of their own model with this GlobalId, name
    or long name."""
    v = _text_value("space", value, SPACE_HELP)
    named = or_(sp.c.global_id == v, func.lower(sp.c.name) == v.lower(),
                func.lower(sp.c.long_name) == v.lower())
    # The GlobalIds of the named rooms, computed once, let both indexes (btree on the room
    # an element is in, GIN on the rooms it bounds) find the candidates, also for "any",
    # where an EXISTS per side would read every element. GlobalIds repeat across models
    # (a file ingested twice), so the EXISTS then keeps the element's own model's rooms.
    rooms = func.array(select(cast(sp.c.global_id, Text)).where(named).scalar_subquery(),
                       type_=ARRAY(Text))
    bounded = el.c.bounded_space_global_ids
    candidates = {"contained": el.c.space_global_id == any_(rooms),
                  "boundary": bounded.overlap(rooms)}
    own = {"contained": sp.c.global_id == el.c.space_global_id,
           "boundary": sp.c.global_id == any_(bounded)}
    if relation == "any":
        candidates["any"] = or_(candidates["contained"], candidates["boundary"])
        own["any"] = or_(own["contained"], own["boundary"])
    return and_(candidates[relation], select(sp.c.id).where(
        sp.c.dataset_id == el.c.dataset_id, named, own[relation]).exists())


def _height(text: str):
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise BadRequest("height must be min,max (ellipsoidal metres)") from exc
    return and_(el.c.max_height >= lo, el.c.min_height <= hi)


@router.get("/elements", summary="BIM elements by class, storey, property values and space",
            response_model=dict[str, Any])
async def list_elements(
    request: Request, _: Reader,
    dataset: Id | None = Query(None, description="only this model (dataset id)"),
    ifc_class: list[str] | None = Query(None, alias="class", description=(
        "IFC class, subtypes included: class=IfcWall finds IfcWallStandardCase too, and "
        "class=IfcWindow the members and plates of windows modelled as assemblies; repeat "
        "for any of several")),
    storey: str | None = Query(None, description="storey name (any case) or GlobalId"),
    prop: list[str] | None = Query(None, alias="property", description=FILTER_HELP),
    name: str | None = Query(None, description="name contains (any case)"),
    building: str | None = Query(None, description="CIM building object id"),
    space: str | None = Query(None, description=(
        "elements of this space (room): " + SPACE_HELP + "; a name several rooms share "
        "finds the elements of all of them. Which elements: see space_relation")),
    space_relation: str | None = Query(None, description=(
        "with space: which elements of the room, " + SPACE_RELATION_HELP + ". Default "
        "contained, the room's contents; walls, doors, windows and slabs the file names as "
        "room boundaries are in no room, so ask for boundary (or any) to get them"),
        json_schema_extra={"enum": list(SPACE_RELATIONS)}),
    bbox: str | None = Query(None, description=(
        "minlon,minlat,maxlon,maxlat (WGS 84); six numbers minlon,minlat,minheight,maxlon,"
        "maxlat,maxheight (ellipsoidal m) also select by height, as in OGC API - Features")),
    height: str | None = Query(None, description="min,max ellipsoidal height (m) overlapped"),
    psets: bool = Query(False, description="include property and quantity sets"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> JSONResponse:
    relation = _space_relation(space_relation, "space", space is not None, "contained")
    conds = []
    if ifc_class:
        wanted = [c.strip().lower() for c in ifc_class]
        conds.append(or_(*[el.c.class_path.contains([c]) for c in wanted],
                         func.lower(el.c.assembly_class).in_(wanted)))
    if storey:
        conds.append(or_(func.lower(el.c.storey) == storey.lower(),
                         el.c.storey_global_id == storey))
    for expr in prop or []:
        conds.append(property_filter(expr))
    if name:
        conds.append(_contains(el.c.name, name))
    if building:
        conds.append(el.c.building_object_id == building)
    if space is not None:
        conds.append(_in_space(space, relation))
    box = parse_bbox(bbox or None, None)
    if box is not None and box[0].minz is not None:  # bbox with heights: as height= does
        conds.append(and_(el.c.max_height >= box[0].minz, el.c.min_height <= box[0].maxz))
    if height:
        conds.append(_height(height))
    rows = select(literal_column("*")).select_from(el).where(and_(true(), *conds))
    q = ItemsQuery(bbox=box, equals={} if dataset is None else {"dataset_id": dataset},
                   limit=limit, offset=offset, sortby=[("dataset_id", False), ("id", False)],
                   properties=None if psets else _WITHOUT_PSETS, count=False)
    return await _page(request, LISTED, rows, q, _listed)


@router.get("/elements/{global_id}", summary="One element by IFC GlobalId, with its sets")
async def get_element(global_id: str, request: Request, _: Reader,
                      dataset: Id | None = Query(None, description=(
                          "the model; default: the newest model holding this GlobalId"))
                      ) -> dict[str, Any]:
    query = _select(True).where(el.c.global_id == global_id)
    if dataset is not None:
        query = query.where(el.c.dataset_id == dataset)
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(query.order_by(el.c.dataset_id.desc()).limit(1))).first()
    if row is None:
        where = f" in dataset {dataset}" if dataset is not None else ""
        raise NotFound(f"no BIM element {global_id!r}{where}")
    return feature(row, True)


# What /bim/spaces answers of each space; ``elements`` and ``boundary_elements`` are
# columns of the rows the list reads (counted there), the bbox is null for a room without
# a body
LISTED_SPACES = Collection(
    id="bim_spaces", title="BIM spaces", description="the rows of /bim/spaces",
    source="bim_spaces", geometry_type="MultiPolygon", geometry_column="footprint",
    properties=(*(_prop(c) for c in _SPACE_COLUMNS), Prop("elements", "integer"),
                Prop("boundary_elements", "integer"), Prop("psets", "object"),
                replace(_BBOX, sql=f"CASE WHEN t.bbox3d IS NOT NULL THEN {_BBOX.expr} END")),
)
_SPACES_WITHOUT_PSETS = [p.name for p in LISTED_SPACES.properties if p.name != "psets"]


def _listed_space(f: dict[str, Any]) -> dict[str, Any]:
    props = f["properties"]
    box = props.pop("bbox")
    gid, ds = quote(props["global_id"]), props["dataset_id"]
    props["links"] = {
        "elements": f"/bim/elements?dataset={ds}&space={gid}",
        "boundary_elements": f"/bim/elements?dataset={ds}&space={gid}&space_relation=boundary",
        "dataset": f"/datasets/{ds}",
        "model": f"/bim/datasets/{ds}",
    }
    return {"type": "Feature", "id": props["global_id"], "bbox": box,
            "geometry": f["geometry"], "properties": props}


def _one(global_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """A one-GlobalId array for ``@>``, text[] like the column (the varchar[] that
    ``global_id`` would make has no ``@>`` with text[])."""
    return array([cast(global_id, Text)])


def _of_element(value: str, relation: str) -> ColumnElement[bool]:
    """Spaces the element(s) with this GlobalId are in or bound, in the element's model."""
    v = _text_value("element", value, ELEMENT_HELP)
    if len(v) > GLOBAL_ID_LENGTH:
        raise BadRequest(f"element is {len(v)} characters long; an IFC GlobalId has "
                         f"{GLOBAL_ID_LENGTH}: give {ELEMENT_HELP}")
    contained = el.c.space_global_id == sp.c.global_id
    bounding = el.c.bounded_space_global_ids.contains(_one(sp.c.global_id))
    test = {"contained": contained, "boundary": bounding,
            "any": or_(contained, bounding)}[relation]
    return select(el.c.id).where(el.c.dataset_id == sp.c.dataset_id, el.c.global_id == v,
                                 test).exists()


@router.get("/spaces", summary="BIM spaces (rooms) by model, storey, name and element",
            response_model=dict[str, Any])
async def list_spaces(
    request: Request, _: Reader,
    dataset: Id | None = Query(None, description="only this model (dataset id)"),
    storey: str | None = Query(None, description="storey name (any case) or GlobalId"),
    name: str | None = Query(None, description=(
        "name or long name contains (any case): the room number or what the room is")),
    element: str | None = Query(None, description=(
        "only the rooms of this element: " + ELEMENT_HELP + "; which rooms: see "
        "space_relation")),
    space_relation: str | None = Query(None, description=(
        "with element: which rooms of the element, " + SPACE_RELATION_HELP + ". Default "
        "any: the room a chair is in, the two rooms a door between them bounds"),
        json_schema_extra={"enum": list(SPACE_RELATIONS)}),
    psets: bool = Query(False, description="include property and quantity sets"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> JSONResponse:
    """Every IfcSpace of the models, as GeoJSON features: the footprint of its body (lon /
    lat; null when it has no body or its geometry failed), the 3D extent as ``bbox`` (lon,
    lat, ellipsoidal height), ``floor_area`` (m², of the footprint, computed in model
    metres: the gross area), ``min_height`` / ``max_height`` (ellipsoidal metres),
    ``elements``, the number of elements in it, which ``links.elements`` lists, and
    ``boundary_elements``, the number of elements the file names as its boundaries (walls,
    doors, windows, slabs), which ``links.boundary_elements`` lists."""
    relation = _space_relation(space_relation, "element", element is not None, "any")
    count = (select(func.count()).select_from(el)
             .where(el.c.dataset_id == sp.c.dataset_id, el.c.space_global_id == sp.c.global_id)
             .scalar_subquery())
    bounding = (select(func.count()).select_from(el)
                .where(el.c.dataset_id == sp.c.dataset_id,
                       el.c.bounded_space_global_ids.contains(_one(sp.c.global_id)))
                .scalar_subquery())
    conds = []
    if storey:
        conds.append(or_(func.lower(sp.c.storey) == storey.lower(),
                         sp.c.storey_global_id == storey))
    if name is not None:
        v = _text_value("name", name, "part of a space's name or long name")
        conds.append(or_(_contains(sp.c.name, v), _contains(sp.c.long_name, v)))
    if element is not None:
        conds.append(_of_element(element, relation))
    rows = (select(literal_column("*"), count.label("elements"),
                   bounding.label("boundary_elements"))
            .select_from(sp).where(and_(true(), *conds)))
    q = ItemsQuery(equals={} if dataset is None else {"dataset_id": dataset},
                   limit=limit, offset=offset, sortby=[("dataset_id", False), ("id", False)],
                   properties=None if psets else _SPACES_WITHOUT_PSETS, count=False)
    return await _page(request, LISTED_SPACES, rows, q, _listed_space)


@router.get("/datasets/{dataset_id}",
            summary="A model's classes, storeys, number of spaces and placement")
async def model_summary(dataset_id: Id, request: Request, _: Reader) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        ds = (await conn.execute(select(datasets.c.id, datasets.c.kind, datasets.c.status,
                                        datasets.c.stats, datasets.c.crs)
                                 .where(datasets.c.id == dataset_id))).first()
        if ds is None or ds.kind != "ifc":
            raise NotFound(f"no IFC dataset {dataset_id}")
        classes = (await conn.execute(
            select(el.c.ifc_class, func.count()).where(el.c.dataset_id == dataset_id)
            .group_by(el.c.ifc_class).order_by(el.c.ifc_class))).all()
        storeys = (await conn.execute(
            select(el.c.storey, el.c.storey_global_id, el.c.storey_elevation, func.count())
            .where(el.c.dataset_id == dataset_id)
            .group_by(el.c.storey, el.c.storey_global_id, el.c.storey_elevation)
            .order_by(el.c.storey_elevation.nulls_last(), el.c.storey))).all()
        spaces = (await conn.execute(select(func.count()).select_from(sp)
                                     .where(sp.c.dataset_id == dataset_id))).scalar_one()
    return {
        "dataset_id": ds.id, "status": ds.status, "crs": ds.crs,
        "georeference": (ds.stats or {}).get("georeference"),
        "classes": {c: n for c, n in classes},
        "spaces": spaces,
        "storeys": [{"name": s, "global_id": g, "elevation": e, "elements": n}
                    for s, g, e, n in storeys],
        "links": {"elements": f"/bim/elements?dataset={ds.id}",
                  "spaces": f"/bim/spaces?dataset={ds.id}",
                  "tileset": f"/tiles/bim-{ds.id}/tileset.json"},
    }


class AnchorBody(BaseModel):
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    height: float = Field(0.0, description="model origin height, metres above sea level "
                          "(or ellipsoidal with vertical=ellipsoidal)")
    rotation: float = Field(0.0, description="degrees counter-clockwise from east to the "
                            "model x axis")


class IngestBody(BaseModel):
    anchor: AnchorBody | None = None
    crs: str | None = Field(None, description="projected CRS of an IfcMapConversion that "
                            "names none, e.g. EPSG:4547")
    vertical: str | None = Field(None, pattern="^(orthometric|ellipsoidal)$")
    max_triangles_per_tile: int | None = Field(None, ge=1000, le=5_000_000)
    geometry_library: str | None = Field(
        None, pattern="^(hybrid-cgal-simple-opencascade|opencascade)$",
        description="ifcopenshell geometry kernel: hybrid-cgal-simple-opencascade (default, "
        "fast) or opencascade (IfcConvert's default)")


@router.post("/datasets/{dataset_id}/ingest", status_code=202,
             summary="Ingest an uploaded IFC model again, e.g. with an anchor")
async def reingest(dataset_id: Id, body: IngestBody, request: Request, principal: Writer
                   ) -> dict[str, Any]:
    settings = request.app.state.settings
    async with request.app.state.engine.begin() as conn:
        ds = (await conn.execute(select(datasets.c.id, datasets.c.kind)
                                 .where(datasets.c.id == dataset_id))).first()
        if ds is None:
            raise NotFound(f"no dataset {dataset_id}")
        if ds.kind != "ifc":
            raise Unprocessable(f"dataset {dataset_id} is {ds.kind}, not an IFC model")
        params = body.model_dump(exclude_none=True)
        job_id = await submit_job_async(conn, "ingest_ifc", dataset_id=dataset_id,
                                        params=params, created_by=principal.name,
                                        max_attempts=settings.job_max_attempts)
    request.state.audit_detail = {"dataset": dataset_id, "job": job_id}
    return {"job_id": job_id, "dataset_id": dataset_id,
            "links": {"job": f"/jobs/{job_id}", "dataset": f"/datasets/{dataset_id}"}}


@router.post("/datasets/{dataset_id}/link-buildings",
             summary="Recompute which CIM building each element stands in (after new CIM data)")
async def relink(dataset_id: Id, request: Request, principal: Writer) -> dict[str, Any]:
    from service.bim.store import link_buildings

    async with request.app.state.engine.begin() as conn:
        ds = (await conn.execute(select(datasets.c.kind).where(datasets.c.id == dataset_id))
              ).first()
        if ds is None or ds.kind != "ifc":
            raise NotFound(f"no IFC dataset {dataset_id}")
        linked = await conn.run_sync(lambda sync: link_buildings(sync, dataset_id))
    request.state.audit_detail = {"dataset": dataset_id, "linked": linked}
    return {"dataset_id": dataset_id, "elements_in_buildings": linked}
