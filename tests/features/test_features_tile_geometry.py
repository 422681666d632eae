"""Road tiles are cut from the stored Web Mercator geometry (migration 0006): the same
bytes as reprojecting every row on the fly, and the copy follows every write."""

from __future__ import annotations

import dataclasses

import psycopg
from sqlalchemy.dialects import postgresql

from service import domains
from service.features.binds import Binds
from service.features.registry import Catalog
from service.features.tiles import tile_sql

TILE = (14, 13391, 7129)  # over the test grid


def _tile(db_url: str, collection) -> bytes:
    binds = Binds()
    sql = tile_sql(collection, *TILE, binds, [])
    from sqlalchemy import text

    compiled = text(sql).bindparams(**binds.values).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    with psycopg.connect(db_url) as conn:
        return bytes(conn.execute(str(compiled)).fetchone()[0] or b"")


def test_the_stored_geometry_gives_the_same_tile(db_url, layer_data):
    roads = Catalog(domains.collections()).get("road_segments")
    assert roads.tile_geometry_column == "geom_3857"
    reprojected = dataclasses.replace(roads, tile_geometry_column=None)
    assert "geom_3857" not in tile_sql(reprojected, *TILE, Binds(), [])
    stored = _tile(db_url, roads)
    assert stored and b"road_class" in stored
    assert stored == _tile(db_url, reprojected)


def test_the_stored_geometry_follows_every_write(db_url, layer_data):
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO road_segments (code, name, road_class, lanes, speed_limit_kmh,"
            " free_flow_kmh, length_m, geom) VALUES ('FT-3857', 'x', 'branch', 1, 30, 30, 1,"
            " ST_GeomFromText('LINESTRING(114.25 22.72, 114.251 22.721)', 4326))"
            " RETURNING id").fetchone()
        same = "SELECT ST_Equals(geom_3857, ST_Transform(geom, 3857)) FROM road_segments" \
               " WHERE id = %s"
        assert conn.execute(same, row).fetchone()[0]
        conn.execute("UPDATE road_segments SET geom = ST_GeomFromText("
                     "'LINESTRING(114.26 22.73, 114.262 22.731)', 4326) WHERE id = %s", row)
        assert conn.execute(same, row).fetchone()[0]
        assert conn.execute("SELECT ST_SRID(geom_3857) FROM road_segments WHERE id = %s",
                            row).fetchone()[0] == 3857
        conn.rollback()
