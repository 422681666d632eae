"""Mapbox Vector Tiles per collection in the WebMercatorQuad tile matrix set, built by
PostGIS (ST_TileEnvelope, ST_AsMVTGeom, ST_AsMVT) in one statement per tile."""

from __future__ import annotations

from service.core.errors import BadRequest
from service.features.binds import Binds
from service.features.registry import Collection

EXTENT = 4096
BUFFER = 64
MAX_ZOOM = 22
MAX_FEATURES = 20_000  # a dashboard tile beyond this is unreadable anyway; says so in a header


def check_tile(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise BadRequest(f"zoom {z} is outside 0..{MAX_ZOOM}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise BadRequest(f"tile {z}/{x}/{y} does not exist: x and y run 0..{n - 1} at zoom {z}")


def tile_sql(c: Collection, z: int, x: int, y: int, binds: Binds,
             extra_where: list[str]) -> str:
    env = (f"ST_TileEnvelope({binds.add(z, 'integer')}, {binds.add(x, 'integer')}, "
           f"{binds.add(y, 'integer')})")
    props = [p for p in c.properties if p.type not in ("object", "array")]
    columns = "".join(
        f", ({p.expr})::text AS \"{p.name}\"" if p.type in ("datetime", "date")
        else f", {p.expr} AS \"{p.name}\"" for p in props)
    where = [f"{c.filter_geom} && ST_Transform(e.env, 4326)"]
    if c.current_only:
        where.append(c.current_only)
    where += extra_where
    return (
        f"WITH e AS (SELECT {env} AS env)"
        f" SELECT ST_AsMVT(m, {binds.add(c.id, 'text')}, {EXTENT}, 'geom', 'id') FROM ("
        f"SELECT {c.fid} AS id{columns},"
        f" ST_AsMVTGeom({c.tile_geom}, e.env, {EXTENT}, {BUFFER}, true) AS geom"
        f" FROM {c.from_sql}, e WHERE {' AND '.join(where)}"
        f" LIMIT {MAX_FEATURES}) m WHERE m.geom IS NOT NULL"
    )
