"""The Core tables of service/lowalt/tables.py are the ones the migrations create.

Every statement of the low-altitude store is built on them, so a column declared with the
wrong type, nullability, default or geometry would compile into wrong SQL (a NULL check
that never holds, a cast to the wrong range type) without any migration noticing.
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from geoalchemy2 import Geometry
from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql

from service.core.db import sync_engine
from service.lowalt import tables

DIALECT = postgresql.dialect()
# The migrations own the indexes, and column comments are their documentation.
IGNORED = {"remove_index", "add_index", "modify_comment"}


def _type(t) -> str:
    if isinstance(t, Geometry):
        return f"geometry({t.geometry_type},{t.srid})"
    name = t.compile(dialect=DIALECT)
    # PostgreSQL's float without a precision is double precision
    return "DOUBLE PRECISION" if name == "FLOAT" else name


def _ours(name: str, type_: str, parent) -> bool:
    return type_ != "table" or name in tables.metadata.tables


@pytest.fixture(scope="module")
def engine(db_url):
    eng = sync_engine(db_url)
    yield eng
    eng.dispose()


def test_columns_keys_and_defaults_match_the_migrations(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True,
                         "include_name": _ours})
        diffs = compare_metadata(context, tables.metadata)
    flat = [d for group in diffs for d in (group if isinstance(group, list) else [group])]
    assert [d for d in flat if d[0] not in IGNORED] == []


def test_column_types_match_the_migrations(engine):
    db = inspect(engine)
    for table in tables.metadata.sorted_tables:
        reflected = {c["name"]: c for c in db.get_columns(table.name)}
        assert set(reflected) == set(table.c.keys()), table.name
        for col in table.c:
            got = reflected[col.name]
            assert (_type(col.type), col.nullable) == (_type(got["type"]), got["nullable"]), \
                f"{table.name}.{col.name}"


def test_city_object_columns_read_are_cims_and_the_databases(engine):
    from service.cim.tables import city_objects as owned

    reflected = {c["name"]: c for c in inspect(engine).get_columns("city_objects")}
    for col in tables.city_objects.c:
        assert _type(col.type) == _type(owned.c[col.name].type) == _type(
            reflected[col.name]["type"]), col.name
