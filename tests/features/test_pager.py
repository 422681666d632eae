"""The pieces the features pager lends to the domains' lists: a Core statement as the source
of a page, with its values bound the way SQLAlchemy would bind them, and an order that a
btree index can give."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import literal_column, select

from service.cim.tables import city_objects
from service.features.binds import Binds
from service.features.engine import ReadPool
from service.features.pager import read_page, restricted
from service.features.query import ItemsQuery, order_sql
from service.features.registry import Collection, Prop
from service.layers.tables import road_segments

c = city_objects.c


def test_a_core_statement_becomes_text_with_the_values_bound_here():
    binds = Binds()
    first = binds.add(7, "bigint")
    sql = binds.statement(select(literal_column("*")).select_from(city_objects).where(
        c.attributes.contains({"roofType": 1030}), c.type.in_(["Building", "Road"]),
        c.dataset_id == 3, c.object_id == "it's $1"))
    assert first == "CAST(:p0 AS bigint)"
    assert "$" not in sql  # no positional marker is left, and values never enter the text
    # SQLAlchemy's own conversion: a dict for a JSONB column is sent as its JSON text
    jsonb = next(v for v in binds.values.values() if isinstance(v, str) and "roofType" in v)
    assert json.loads(jsonb) == {"roofType": 1030}
    assert sorted(v for v in binds.values.values() if v in ("Building", "Road")) == \
        ["Building", "Road"]
    assert 3 in binds.values.values() and "it's $1" in binds.values.values()
    # every bound name in the text is one of the values, each placeholder a plain :name
    for name in binds.values:
        assert name == "p0" or f"(:{name})" in sql


def test_columns_that_are_never_null_sort_without_a_nulls_clause():
    view = Collection(id="v", title="v", description="v", source="city_objects",
                      geometry_type="Geometry",
                      properties=(Prop("object_id", "string", nullable=False),
                                  Prop("name", "string")))
    assert order_sql(view, [("object_id", False)]) == 't."object_id" ASC, t."id" ASC'
    assert order_sql(view, [("object_id", True)]) == 't."object_id" DESC, t."id" ASC'
    assert order_sql(view, [("name", False)]) == 't."name" ASC NULLS FIRST, t."id" ASC'


def test_a_page_read_from_a_statement_tells_whether_more_follow(layer_data, db_url):
    """Against the session's PostGIS: the page without a count reads one row past the page,
    so ``more`` is exact at the last page too."""
    import asyncpg

    from service.core.db import libpq_url
    from service.features.engine import POOL_SIZE

    view = Collection(id="roads", title="roads", description="roads",
                      source="road_segments", geometry_type="LineString",
                      properties=(Prop("code", "string", nullable=False),))

    async def pages() -> list[tuple[int, bool, list[str]]]:
        pool = await asyncpg.create_pool(libpq_url(db_url), min_size=0, max_size=POOL_SIZE)
        reads = ReadPool(pool, asyncio.Semaphore(POOL_SIZE))

        async def page(limit: int, offset: int) -> tuple[int, bool, list[str]]:
            binds = Binds()
            statement = select(literal_column("*")).select_from(road_segments).where(
                road_segments.c.code.like("FT-%"))
            q = ItemsQuery(limit=limit, offset=offset, sortby=[("code", False)],
                           count=False, skip_geometry=True)
            got = await read_page(reads, restricted(view, statement, binds), q, binds)
            features = got.features()
            assert all(f["geometry"] is None for f in features)
            return got.returned, got.more, [f["properties"]["code"] for f in features]

        try:
            everything = await page(1000, 0)
            total = everything[0]
            return [everything, await page(5, 0), await page(5, 5),
                    await page(total - 3, 3), await page(total - 4, 3)]
        finally:
            await pool.close()

    everything, first, second, rest, short = asyncio.run(pages())
    codes = everything[2]
    assert everything[0] == len(codes) > 10 and everything[1] is False and codes == sorted(codes)
    assert first == (5, True, codes[:5]) and second == (5, True, codes[5:10])
    assert rest == (len(codes) - 3, False, codes[3:])  # exactly the rest: nothing more
    assert short == (len(codes) - 4, True, codes[3:-1])
