"""Every package's Table definitions say what the migrations made: the same columns, types,
nullability and defaults. The code reads and writes through these definitions, and the
migrations are the only way the schema changes, so a drift between them is a bug waiting
for the first query that touches the column."""

from __future__ import annotations

import importlib

import pytest
from sqlalchemy import Table, create_engine, text

TABLE_MODULES = ("service.core.tables", "service.cim.tables", "service.bim.tables",
                 "service.layers.tables", "service.lowalt.tables",
                 "service.lowalt.dispatch_tables", "service.terrain.tables",
                 "service.lidar.tables")
# format_type() spellings of what SQLAlchemy compiles differently
SAME_TYPE = {"float": "double precision", "varchar": "character varying",
             "timestamp": "timestamp without time zone"}


def _tables() -> list[Table]:
    found: dict[str, Table] = {}
    for name in TABLE_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, Table):
                found[value.name] = value
    return sorted(found.values(), key=lambda t: t.name)


def _columns(conn, table: str) -> dict[str, object]:
    rows = conn.execute(text(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,"
        "       pg_get_expr(d.adbin, d.adrelid) AS dflt"
        " FROM pg_attribute a LEFT JOIN pg_attrdef d"
        "   ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"),
        {"t": table}).all()
    return {r.attname: r for r in rows}


def test_every_package_declares_its_tables():
    names = {t.name for t in _tables()}
    for expected in ("datasets", "jobs", "tilesets", "uploads", "api_keys", "city_objects",
                     "bim_elements", "bim_spaces", "road_segments", "water_observations",
                     "drones", "drone_routes", "airspace_zones", "drone_state", "city_changes",
                     "fleet_plans", "survey_terrain"):
        assert expected in names


@pytest.mark.parametrize("table", _tables(), ids=lambda t: t.name)
def test_table_matches_the_migrated_schema(db_url, table: Table):
    from service.core.db import sync_url

    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            db = _columns(conn, table.name)
    finally:
        engine.dispose()
    assert db, f"{table.name} is not in the migrated database"
    assert set(table.c.keys()) == set(db), (
        f"{table.name}: only in the database {sorted(set(db) - set(table.c.keys()))}, "
        f"only in the code {sorted(set(table.c.keys()) - set(db))}")
    problems = []
    for column in table.c:
        row = db[column.name]
        code = column.type.compile(dialect=engine.dialect).lower()
        code = SAME_TYPE.get(code, code).replace("varchar(", "character varying(")
        if code != row.type.lower():
            problems.append(f"{column.name}: type {code!r} in the code, {row.type!r} in the db")
        if (not column.nullable) != row.attnotnull:
            problems.append(f"{column.name}: NOT NULL {not column.nullable} in the code, "
                            f"{row.attnotnull} in the db")
        declared = (column.server_default is not None or column.computed is not None
                    or (column.primary_key and "nextval" in (row.dflt or "")))
        if declared != bool(row.dflt):
            problems.append(f"{column.name}: default {column.server_default} in the code, "
                            f"{row.dflt} in the db")
    assert not problems, f"{table.name}: " + "; ".join(problems)
