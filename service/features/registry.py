"""The one registry of feature collections.

A collection is data: where its rows come from (a table, a view, or a fixed SELECT written
here), its id and geometry columns, its temporal columns and its queryable properties.
Routers, query compilation, queryables, OpenAPI and tiles all read from here, so adding a
layer is one ``register(Collection(...))`` call. Every SQL identifier the API ever emits
comes from this module; nothing a client sends becomes an identifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

PropType = Literal["string", "integer", "number", "boolean", "datetime", "date", "object",
                   "array"]
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Prop:
    """One output property. ``sql`` is an expression over the source alias ``t``."""

    name: str
    type: PropType
    sql: str | None = None  # default: t."name"
    title: str | None = None
    description: str | None = None
    enum: tuple[str, ...] | None = None
    queryable: bool = True
    sortable: bool = True

    @property
    def expr(self) -> str:
        return self.sql or f't."{self.name}"'


@dataclass(frozen=True)
class Collection:
    id: str
    title: str
    description: str
    source: str  # table/view name, or "(SELECT ...)" written in this package
    geometry_type: str  # GeoJSON type name of the stored geometry (or "Geometry")
    properties: tuple[Prop, ...]
    id_column: str = "id"
    id_type: Literal["integer", "string"] = "integer"
    geometry_column: str = "geom"
    # an indexed 2D column to filter and tile by, when the output geometry has no index
    filter_geometry_column: str | None = None
    # a stored EPSG:3857 copy of the 2D filter geometry (a generated column), which vector
    # tiles read instead of reprojecting every row of a tile on each request
    tile_geometry_column: str | None = None
    has_z: bool = False
    # temporal extent of a feature: (start column, end column or None for an instant)
    temporal: tuple[str, str | None] | None = None
    # applied when the request has no datetime (e.g. only current rows of a living map)
    current_only: str | None = None
    default_sort: tuple[str, ...] = ()  # property names, "-name" for descending
    keywords: tuple[str, ...] = ()
    props_by_name: dict[str, Prop] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for ident in (self.id, self.id_column, self.geometry_column,
                      self.filter_geometry_column or "x", self.tile_geometry_column or "x"):
            if not _IDENT.match(ident):
                raise ValueError(f"bad identifier in collection {self.id}: {ident!r}")
        object.__setattr__(self, "props_by_name", {p.name: p for p in self.properties})

    @property
    def from_sql(self) -> str:
        return f"{self.source} AS t" if self.source.startswith("(") else f'"{self.source}" AS t'

    @property
    def geom(self) -> str:
        return f't."{self.geometry_column}"'

    @property
    def filter_geom(self) -> str:
        return f't."{self.filter_geometry_column or self.geometry_column}"'

    @property
    def tile_geom(self) -> str:
        """SQL for the 2D EPSG:3857 geometry a vector tile is cut from."""
        if self.tile_geometry_column:
            return f't."{self.tile_geometry_column}"'
        return f"ST_Transform(ST_Force2D({self.filter_geom}), 3857)"

    @property
    def fid(self) -> str:
        return f't."{self.id_column}"'

    @property
    def interval_sql(self) -> tuple[str, str] | None:
        """SQL for the start and end of each feature's time (open ends are infinite)."""
        if self.temporal is None:
            return None
        start, end = self.temporal
        if end is None:
            return f't."{start}"', f't."{start}"'
        return (f"coalesce(t.\"{start}\", '-infinity'::timestamptz)",
                f"coalesce(t.\"{end}\", 'infinity'::timestamptz)")


_REGISTRY: dict[str, Collection] = {}


def register(collection: Collection) -> Collection:
    if collection.id in _REGISTRY:
        raise ValueError(f"collection {collection.id} is registered already")
    _REGISTRY[collection.id] = collection
    return collection


def collections() -> list[Collection]:
    _load_builtin()
    return list(_REGISTRY.values())


def get(collection_id: str) -> Collection | None:
    _load_builtin()
    return _REGISTRY.get(collection_id)


def _load_builtin() -> None:
    # the layer definitions import this module; importing them lazily avoids a cycle
    from service.features import layers  # noqa: F401
