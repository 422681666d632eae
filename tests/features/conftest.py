"""Small real layer data on the session's PostGIS, and a live server to read it.

The road grid sits where the independent client checker looks by default
(lon 114.2446-114.2494, lat 22.7177-22.7223), so the same bbox works in both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import text

from service.core.partitions import ensure
from service.layers.tables import WATER_PARTITIONS

ROAD_CLASSES = ("expressway", "primary", "secondary", "branch")
ORIGIN = (114.2440, 22.7170)
STEP = 0.0006  # ~60 m
GRID = 12  # 12 x 12 = 144 segments
DATASET_NAME = "features-test-city"


def _segments() -> list[dict[str, object]]:
    rows = []
    for i in range(GRID):
        for j in range(GRID):
            x, y = ORIGIN[0] + i * STEP, ORIGIN[1] + j * STEP
            n = i * GRID + j
            rows.append({
                "code": f"FT-{n:03d}", "name": f"测试路{i:02d}", "road_class": ROAD_CLASSES[n % 4],
                "lanes": 1 + (i + j) % 6, "limit": (80, 60, 50, 40)[n % 4],
                "wkt": f"LINESTRING({x:.7f} {y:.7f}, {x + STEP * 0.8:.7f} {y + STEP * 0.3:.7f})",
            })
    return rows


@pytest.fixture(scope="session")
def layer_data(db_url: str) -> dict[str, object]:
    from service.core.db import sync_engine
    from service.layers import gb3838

    engine = sync_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM road_segments WHERE code LIKE 'FT-%'"))
        conn.execute(text("DELETE FROM water_stations WHERE code LIKE 'FTW-%'"))
        conn.execute(text("DELETE FROM datasets WHERE name = :n"), {"n": DATASET_NAME})
        for s in _segments():
            conn.execute(text(
                "INSERT INTO road_segments (code, name, road_class, lanes, speed_limit_kmh,"
                " free_flow_kmh, length_m, geom, updated_at) VALUES (:code, :name, :road_class,"
                " :lanes, :limit, :limit, ST_Length(ST_GeomFromText(:wkt, 4326)::geography),"
                " ST_GeomFromText(:wkt, 4326), '2026-01-01T00:00:00Z')"), s)
        stations = {}
        for k, body in enumerate(("river", "river", "lake")):
            stations[body + str(k)] = conn.execute(text(
                "INSERT INTO water_stations (code, name, water_body, body_type, geom) VALUES"
                " (:code, :name, :wb, :bt, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) RETURNING id"),
                {"code": f"FTW-{k}", "name": f"站{k}",
                 "wb": "龙岗河" if body == "river" else "清林径水库",
                 "bt": body, "x": 114.246 + k * 0.001, "y": 22.719}).scalar()
        samples = [  # (station, time, values)
            ("river0", "2026-05-01T00:00:00Z", {"ph": 7.1, "dissolved_oxygen": 6.5, "nh3_n": 0.4,
                                                 "tp": 0.08, "codmn": 3.0}),
            ("river0", "2026-06-01T00:00:00Z", {"ph": 7.0, "dissolved_oxygen": 4.0, "nh3_n": 2.6,
                                                 "tp": 0.25, "codmn": 5.0}),
            ("lake2", "2026-06-01T00:00:00Z", {"ph": 7.5, "dissolved_oxygen": 7.8, "nh3_n": 0.1,
                                                "tp": 0.08, "tn": 0.4}),
        ]
        # observations are partitioned by month: the samples' months are made first
        ensure(conn, WATER_PARTITIONS, [datetime.fromisoformat(w) for _, w, _ in samples], None)
        for key, when, values in samples:
            body = "lake" if key.startswith("lake") else "river"
            result = gb3838.assess(values, body)
            cols = ", ".join(values)
            conn.execute(text(
                f"INSERT INTO water_observations (station_id, observed_at, {cols}, grade,"
                f" deciding, exceedance) VALUES (:sid, :t, {', '.join(':' + c for c in values)},"
                " :g, :d, CAST(:e AS jsonb))"),
                {"sid": stations[key], "t": when, **values, "g": result.grade,
                 "d": list(result.deciding), "e": json.dumps(result.exceedance)})
        dataset_id = conn.execute(text(
            "INSERT INTO datasets (kind, name, status, stats, footprint, acquired_at) VALUES"
            " ('lidar', :n, 'ready', CAST(:stats AS jsonb), ST_Multi(ST_MakeEnvelope("
            "114.245, 22.718, 114.249, 22.722, 4326)), '2026-03-01T02:00:00Z') RETURNING id"),
            {"n": DATASET_NAME, "stats": json.dumps({"points": 123456, "density_per_m2": 42.5,
                                                     "tileset": "/tiles/x/tileset.json"})}
        ).scalar()
        objects = {}
        for oid, z, valid_to in (("FT-BLD-1", 40.0, None), ("FT-BLD-2", 55.0, None),
                                 ("FT-BLD-1", 30.0, "2026-02-01T00:00:00Z")):
            x = 114.2460 if oid.endswith("1") else 114.2470
            poly = (f"POLYGON(({x} 22.7190, {x + 0.0003} 22.7190, {x + 0.0003} 22.7193,"
                    f" {x} 22.7193, {x} 22.7190))")
            objects[(oid, valid_to)] = conn.execute(text(
                "INSERT INTO city_objects (object_id, dataset_id, type, lod, name, geom,"
                " footprint, height, min_z, max_z, valid_from, valid_to) VALUES (:oid, :ds,"
                " 'Building', '1', :oid, ST_Translate(ST_Force3D(ST_Multi(ST_GeomFromText("
                ":poly, 4326))), 0, 0, :z), ST_Multi(ST_GeomFromText(:poly, 4326)), 20, :z, :z,"
                " CAST(:vf AS timestamptz), CAST(:vt AS timestamptz)) RETURNING id"),
                {"oid": oid, "ds": dataset_id, "poly": poly, "z": z,
                 "vf": "2025-01-01T00:00:00Z" if valid_to else "2026-02-01T00:00:00Z",
                 "vt": valid_to}).scalar()
    from service.features import metadata
    metadata._extents.clear()  # extents are cached per process
    return {"stations": stations, "dataset_id": dataset_id, "objects": objects,
            "segments": GRID * GRID}


@pytest.fixture(scope="module")
def server(db_url, layer_data, tmp_path_factory, live_server_factory) -> Iterator[object]:
    from service.app import create_app
    from service.core.settings import Settings

    settings = Settings(database_url=db_url, data_dir=tmp_path_factory.mktemp("var"),
                        in_process_worker=False, load_samples=False)
    # one real server for the whole module: its tests only read
    with live_server_factory(create_app(settings, db_url, in_process_worker=False)) as live:
        yield live
