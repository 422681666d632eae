"""The writes of an IFC ingest, as SQLAlchemy Core over ``service/bim/tables.py``.

A dataset's rows are replaced in one transaction (delete, insert, link to buildings), so a
re-ingest never leaves a mix of old and new elements or rooms, and a failed one leaves the
old rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Delete,
    Float,
    Insert,
    LargeBinary,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    select,
    table,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from readers.ifc.model import BimElement
from readers.ifc.spaces import BimSpace
from service.bim.tables import bim_elements, bim_spaces

BATCH_ROWS = 1000

# The columns of CIM's table the building link reads. Named here, not imported: one domain
# does not import another (pyproject's import contracts); service/cim/tables.py defines it.
city_objects = table("city_objects", column("object_id"), column("type"),
                     column("parent_object_id"), column("footprint"), column("valid_to"))


def _point(corner: str) -> Any:
    return func.ST_MakePoint(*(bindparam(f"{axis}{corner}", type_=Float) for axis in "xyz"))


# Executed with a list of rows (executemany): the columns not named here take the row's
# value of the same key; psets travel as JSON text (serialised without NaN), footprints as
# WKB and the box as its two corners. A space without geometry has NULL corners, which give
# a NULL box.
_GEOMETRY = {
    "psets": cast(bindparam("psets_json", type_=Text), JSONB),
    "footprint": func.ST_Multi(func.ST_GeomFromWKB(bindparam("footprint_wkb",
                                                            type_=LargeBinary), 4326)),
    "bbox3d": func.ST_3DMakeBox(_point("0"), _point("1")),
    "min_height": bindparam("z0", type_=Float),
    "max_height": bindparam("z1", type_=Float),
}
INSERT_ELEMENT: Insert = insert(bim_elements).values(_GEOMETRY)
INSERT_SPACE: Insert = insert(bim_spaces).values(_GEOMETRY)


def delete_dataset(dataset_id: int) -> Delete:
    """Both tables in one statement: a model without rooms pays no extra round trip."""
    spaces = delete(bim_spaces).where(bim_spaces.c.dataset_id == dataset_id).cte("spaces")
    return delete(bim_elements).where(bim_elements.c.dataset_id == dataset_id).add_cte(spaces)


def link_to_buildings(dataset_id: int) -> Update:
    """Each element of the dataset to the current CIM building (or the building of a current
    building part) whose footprint overlaps its own the most."""
    c, e2 = city_objects.alias("c"), bim_elements.alias("e2")
    building = (
        select(case((and_(c.c.type == "BuildingPart", c.c.parent_object_id.is_not(None)),
                     c.c.parent_object_id), else_=c.c.object_id))
        .where(c.c.valid_to.is_(None), c.c.type.in_(("Building", "BuildingPart")),
               c.c.footprint.bool_op("&&")(e2.c.footprint),
               func.ST_Intersects(c.c.footprint, e2.c.footprint))
        .order_by(func.ST_Area(func.ST_Intersection(func.ST_MakeValid(c.c.footprint),
                                                    e2.c.footprint)).desc(), c.c.object_id)
        .limit(1).scalar_subquery())
    best = (select(e2.c.id, building.label("building"))
            .where(e2.c.dataset_id == dataset_id, e2.c.footprint.is_not(None))
            .subquery("best"))
    e = bim_elements.c
    return (update(bim_elements).values(building_object_id=best.c.building)
            .where(e.id == best.c.id, best.c.building.is_not(None)))


def unlink(dataset_id: int) -> Update:
    e = bim_elements.c
    return update(bim_elements).values(building_object_id=None).where(e.dataset_id == dataset_id)


def _row(dataset_id: int, e: BimElement) -> dict[str, Any]:
    lo, hi = e.llh.min(axis=0), e.llh.max(axis=0)
    i = e.info
    return {
        "dataset_id": dataset_id, "global_id": i.global_id, "ifc_class": i.ifc_class,
        "class_path": i.class_path, "name": i.name, "type_name": i.type_name,
        "assembly_global_id": i.assembly_global_id, "assembly_class": i.assembly_class,
        "storey": i.storey, "storey_global_id": i.storey_global_id,
        "storey_elevation": i.storey_elevation,
        "psets_json": json.dumps(i.psets, ensure_ascii=False, allow_nan=False),
        "footprint_wkb": e.footprint.wkb if not e.footprint.is_empty else None,
        "x0": float(lo[0]), "y0": float(lo[1]), "z0": float(lo[2]),
        "x1": float(hi[0]), "y1": float(hi[1]), "z1": float(hi[2]),
        "triangles": e.triangles, "space_global_id": e.space_global_id,
        "bounded_space_global_ids": list(e.bounded_space_global_ids),
    }


def _space_row(dataset_id: int, s: BimSpace) -> dict[str, Any]:
    lo, hi = s.llh_min or (None,) * 3, s.llh_max or (None,) * 3
    return {
        "dataset_id": dataset_id, "global_id": s.global_id, "name": s.name,
        "long_name": s.long_name, "storey": s.storey, "storey_global_id": s.storey_global_id,
        "psets_json": json.dumps(s.psets, ensure_ascii=False, allow_nan=False),
        "footprint_wkb": s.footprint.wkb if s.footprint is not None else None,
        "x0": lo[0], "y0": lo[1], "z0": lo[2], "x1": hi[0], "y1": hi[1], "z1": hi[2],
        "floor_area": s.floor_area,
    }


def replace_elements(conn: Connection, dataset_id: int, elements: Sequence[BimElement], *,
                     spaces: Sequence[BimSpace] = ()) -> int:
    """Replace the dataset's elements and spaces; return how many elements stand in a CIM
    building."""
    conn.execute(delete_dataset(dataset_id))
    rows = [_row(dataset_id, e) for e in elements]
    for start in range(0, len(rows), BATCH_ROWS):
        conn.execute(INSERT_ELEMENT, rows[start:start + BATCH_ROWS])
    space_rows = [_space_row(dataset_id, s) for s in spaces]
    for start in range(0, len(space_rows), BATCH_ROWS):
        conn.execute(INSERT_SPACE, space_rows[start:start + BATCH_ROWS])
    return conn.execute(link_to_buildings(dataset_id)).rowcount  # new rows: no links


def link_buildings(conn: Connection, dataset_id: int) -> int:
    """(Re)compute which CIM building each element of the dataset stands in."""
    conn.execute(unlink(dataset_id))
    return conn.execute(link_to_buildings(dataset_id)).rowcount
