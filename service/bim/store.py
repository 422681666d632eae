"""The ``bim_elements`` and ``bim_spaces`` tables (migrations 0004, 0007, 0008) and the
writes of an IFC ingest.

A dataset's rows are replaced in one transaction (delete, insert, link to buildings), so a
re-ingest never leaves a mix of old and new elements or rooms, and a failed one leaves the
old rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.types import UserDefinedType

from readers.ifc.model import BimElement
from readers.ifc.spaces import BimSpace


class Box3D(UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "box3d"


metadata = MetaData()

bim_elements = Table(
    "bim_elements",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"),
           nullable=False),
    Column("global_id", String(22), nullable=False),
    Column("ifc_class", String(64), nullable=False),
    Column("class_path", ARRAY(Text), nullable=False),
    Column("name", Text),
    Column("type_name", Text),
    Column("assembly_global_id", String(22)),
    Column("assembly_class", String(64)),
    Column("storey", Text),
    Column("storey_global_id", String(22)),
    Column("storey_elevation", Float),
    Column("psets", JSONB, nullable=False),
    Column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    Column("bbox3d", Box3D, nullable=False),
    Column("min_height", Float, nullable=False),
    Column("max_height", Float, nullable=False),
    Column("building_object_id", Text),
    Column("triangles", Integer, nullable=False),
    Column("space_global_id", String(22)),
    Column("bounded_space_global_ids", ARRAY(Text), nullable=False),
)

bim_spaces = Table(
    "bim_spaces",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("dataset_id", BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"),
           nullable=False),
    Column("global_id", String(22), nullable=False),
    Column("name", Text),
    Column("long_name", Text),
    Column("storey", Text),
    Column("storey_global_id", String(22)),
    Column("psets", JSONB, nullable=False),
    Column("footprint", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    Column("bbox3d", Box3D),
    Column("min_height", Float),
    Column("max_height", Float),
    Column("floor_area", Float),
)

_INSERT = text(
    """
    INSERT INTO bim_elements (dataset_id, global_id, ifc_class, class_path, name, type_name,
        assembly_global_id, assembly_class, storey, storey_global_id, storey_elevation,
        psets, footprint, bbox3d, min_height, max_height, triangles, space_global_id,
        bounded_space_global_ids)
    VALUES (:dataset_id, :global_id, :ifc_class, :class_path, :name, :type_name,
        :assembly_global_id, :assembly_class, :storey,
        :storey_global_id, :storey_elevation, CAST(:psets AS jsonb),
        ST_Multi(ST_GeomFromWKB(:footprint, 4326)),
        ST_3DMakeBox(ST_MakePoint(:x0, :y0, :z0), ST_MakePoint(:x1, :y1, :z1)),
        :z0, :z1, :triangles, :space_global_id, :bounded_space_global_ids)
    """
)

# both tables in one statement: a model without rooms pays no extra round trip for them
_DELETE = text(
    """
    WITH spaces AS (DELETE FROM bim_spaces WHERE dataset_id = :dataset_id)
    DELETE FROM bim_elements WHERE dataset_id = :dataset_id
    """
)

# A space without geometry has NULL coordinates, which give a NULL box.
_INSERT_SPACE = text(
    """
    INSERT INTO bim_spaces (dataset_id, global_id, name, long_name, storey, storey_global_id,
        psets, footprint, bbox3d, min_height, max_height, floor_area)
    VALUES (:dataset_id, :global_id, :name, :long_name, :storey, :storey_global_id,
        CAST(:psets AS jsonb), ST_Multi(ST_GeomFromWKB(:footprint, 4326)),
        ST_3DMakeBox(ST_MakePoint(:x0, :y0, :z0), ST_MakePoint(:x1, :y1, :z1)),
        :z0, :z1, :floor_area)
    """
)

# The current CIM building (or the building of a current building part) whose footprint
# overlaps the element's the most.
_LINK = text(
    """
    UPDATE bim_elements e SET building_object_id = best.building
    FROM (
        SELECT e2.id, (
            SELECT CASE WHEN c.type = 'BuildingPart' AND c.parent_object_id IS NOT NULL
                        THEN c.parent_object_id ELSE c.object_id END
            FROM city_objects c
            WHERE c.valid_to IS NULL AND c.type IN ('Building', 'BuildingPart')
              AND c.footprint && e2.footprint
              AND ST_Intersects(c.footprint, e2.footprint)
            ORDER BY ST_Area(ST_Intersection(ST_MakeValid(c.footprint), e2.footprint)) DESC,
                     c.object_id
            LIMIT 1) AS building
        FROM bim_elements e2
        WHERE e2.dataset_id = :dataset_id AND e2.footprint IS NOT NULL
    ) best
    WHERE e.id = best.id AND best.building IS NOT NULL
    """
)


def _row(dataset_id: int, e: BimElement) -> dict[str, Any]:
    lo, hi = e.llh.min(axis=0), e.llh.max(axis=0)
    i = e.info
    return {
        "dataset_id": dataset_id, "global_id": i.global_id, "ifc_class": i.ifc_class,
        "class_path": i.class_path, "name": i.name, "type_name": i.type_name,
        "assembly_global_id": i.assembly_global_id, "assembly_class": i.assembly_class,
        "storey": i.storey, "storey_global_id": i.storey_global_id,
        "storey_elevation": i.storey_elevation,
        "psets": json.dumps(i.psets, ensure_ascii=False, allow_nan=False),
        "footprint": e.footprint.wkb if not e.footprint.is_empty else None,
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
        "psets": json.dumps(s.psets, ensure_ascii=False, allow_nan=False),
        "footprint": s.footprint.wkb if s.footprint is not None else None,
        "x0": lo[0], "y0": lo[1], "z0": lo[2], "x1": hi[0], "y1": hi[1], "z1": hi[2],
        "floor_area": s.floor_area,
    }


def replace_elements(conn: Connection, dataset_id: int, elements: Sequence[BimElement], *,
                     spaces: Sequence[BimSpace] = ()) -> int:
    """Replace the dataset's elements and spaces; return how many elements stand in a CIM
    building."""
    conn.execute(_DELETE, {"dataset_id": dataset_id})
    rows = [_row(dataset_id, e) for e in elements]
    for start in range(0, len(rows), 1000):
        conn.execute(_INSERT, rows[start:start + 1000])
    space_rows = [_space_row(dataset_id, s) for s in spaces]
    for start in range(0, len(space_rows), 1000):
        conn.execute(_INSERT_SPACE, space_rows[start:start + 1000])
    return conn.execute(_LINK, {"dataset_id": dataset_id}).rowcount  # new rows: no links


def link_buildings(conn: Connection, dataset_id: int) -> int:
    """(Re)compute which CIM building each element of the dataset stands in."""
    conn.execute(text("UPDATE bim_elements SET building_object_id = NULL "
                      "WHERE dataset_id = :dataset_id"), {"dataset_id": dataset_id})
    return conn.execute(_LINK, {"dataset_id": dataset_id}).rowcount
