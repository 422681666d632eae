"""What a feature collection is, and the catalogue of those an application serves.

A collection is data: where its rows come from (a table, a view, or a fixed SELECT written
by the domain that owns the table), its id and geometry columns, its temporal columns and
its queryable properties. Each domain exports its collections (``COLLECTIONS`` in its
``collections`` module) and the app lists them in one :class:`Catalog`; routers, query
compilation, queryables, OpenAPI and tiles all read from there. Every SQL identifier the API
ever emits comes from a ``Collection``; nothing a client sends becomes an identifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import HTTPConnection

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
    # a column that is never NULL sorts without a NULLS clause, so a btree index on it
    # can deliver the order (and a page stops after its rows instead of sorting them all)
    nullable: bool = True

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


class Catalog:
    """The collections one application serves, in the order they are listed. The app
    builds it at start-up from the collections its domains export (tipg builds its
    catalog the same way); requests look it up through :func:`catalog`."""

    def __init__(self, collections: Iterable[Collection]) -> None:
        self._by_id: dict[str, Collection] = {}
        for collection in collections:
            if collection.id in self._by_id:
                raise ValueError(f"collection {collection.id} is listed twice")
            self._by_id[collection.id] = collection

    def collections(self) -> list[Collection]:
        return list(self._by_id.values())

    def get(self, collection_id: str) -> Collection | None:
        return self._by_id.get(collection_id)


def catalog(request: HTTPConnection) -> Catalog:
    """The application's catalogue (a dependency, and a plain call in Starlette routes)."""
    return request.app.state.catalog
