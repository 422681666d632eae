"""The city tileset, built from the current rows of ``city_objects``.

Tiles are made from what the database holds (not from the file just read), so the tileset
always shows the whole living map: every current object of every ingest. The previous
version's manifest and directory are handed to the tiler, which keeps its frame and grid and
hard-links every tile that comes out identical; only tiles touched by changed objects are
written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from service.cim.mesh import properties_of
from service.cim.tables import CITY_TILESET, city_objects
from service.cim.wkb import polygons_from_wkb
from service.core.tables import tilesets
from service.tilesets.storage import TileStore
from service.tilesets.store import as_store
from tiler.mesh import MeshFeature, MeshPolygon, MeshTilesetResult, tile_features
from tiler.mesh.manifest import MANIFEST_NAME

Progress = Callable[[str, int, int], None]
FETCH_ROWS = 5000


def current_features(conn: Connection) -> Iterator[MeshFeature]:
    """Every current object with geometry, in object id order (stable tiles)."""
    c = city_objects.c
    query = (select(c.object_id, c.type, c.lod, c.height, c.name, c.parent_object_id,
                    c.attributes, c.semantics, func.ST_AsBinary(c.geom, "NDR").label("wkb"))
             .where(c.valid_to.is_(None), c.geom.is_not(None)).order_by(c.object_id)
             .execution_options(stream_results=True, yield_per=FETCH_ROWS))
    rows = conn.execute(query)
    for row in rows:
        classes = (row.semantics or {}).get("surfaces") or []
        faces = polygons_from_wkb(bytes(row.wkb))
        polygons = [MeshPolygon(rings, classes[i] if i < len(classes) else None)
                    for i, rings in enumerate(faces)]
        props = properties_of(row.type, row.lod, row.height, row.name, row.parent_object_id,
                              row.attributes or {})
        yield MeshFeature(id=row.object_id, properties=props, polygons=polygons)


def previous_version(conn: Connection, where: TileStore | Path
                     ) -> tuple[dict[str, Any] | None, Path | None]:
    """Manifest of the current city tileset, and its directory when the store is a local
    folder (unchanged tiles are then linked, not written again; from an object store the
    manifest alone keeps them byte-identical)."""
    path = conn.execute(select(tilesets.c.path).where(
        tilesets.c.name == CITY_TILESET, tilesets.c.is_current,
        tilesets.c.status == "published")).scalar()
    if path is None:
        return None, None
    tile_store = as_store(where)
    try:
        raw = tile_store.read_bytes(f"{path}/{MANIFEST_NAME}")
        manifest = json.loads(raw) if raw is not None else None
    except ValueError:
        manifest = None
    if manifest is None:
        return None, None  # lost or unreadable: a full rebuild is still correct
    return manifest, tile_store.local_dir(path)


def build_city_tileset(conn: Connection, out_dir: Path, where: TileStore | Path, *,
                       max_triangles_per_tile: int, progress: Progress | None = None
                       ) -> MeshTilesetResult:
    manifest, folder = previous_version(conn, where)
    return tile_features(current_features(conn), out_dir,
                         max_triangles_per_tile=max_triangles_per_tile,
                         previous_manifest=manifest, previous_dir=folder, progress=progress)
