"""The store's write path: a footprint given by the caller is the one stored; without one,
the footprint is made from the ground surfaces, as before; the LoD1.2 kept as GeoJSON is
the same rings, closed."""

from __future__ import annotations

import json

import numpy as np
import shapely
from shapely.geometry import Polygon
from sqlalchemy import func, select

from readers.cim import CityObject, Problem, Surface
from service.cim.store import _geojson, load_objects
from service.cim.tables import city_objects
from service.core.db import sync_engine
from service.core.tables import datasets
from service.datasets.store import new_dataset


def _box(x0: float, y0: float, x1: float, y1: float, z0: float, z1: float) -> list[Surface]:
    """A closed box: ground (facing down), roof, four walls (lon/lat/h)."""
    c = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    ground = np.array([(x, y, z0) for x, y in reversed(c)])
    roof = np.array([(x, y, z1) for x, y in c])
    walls = [np.array([(*c[i], z0), (*c[(i + 1) % 4], z0), (*c[(i + 1) % 4], z1), (*c[i], z1)])
             for i in range(4)]
    return ([Surface(rings=[ground], semantic="GroundSurface", source_rings=[ground]),
             Surface(rings=[roof], semantic="RoofSurface", source_rings=[roof])]
            + [Surface(rings=[w], semantic="WallSurface", source_rings=[w]) for w in walls])


def _dataset(conn) -> int:
    ds = conn.execute(new_dataset("cim", "store test", source_path="-", sha256=None,
                                  size_bytes=0, options={}, uploaded_by="test")).scalar_one()
    return int(ds)


def _footprints(conn) -> dict[str, Polygon]:
    c = city_objects.c
    rows = conn.execute(select(c.object_id, func.ST_AsBinary(c.footprint))
                        .where(c.valid_to.is_(None))).all()
    return {oid: shapely.from_wkb(wkb) for oid, wkb in rows}


def test_a_given_footprint_is_stored_and_the_ground_surfaces_are_the_default(db_url):
    a = CityObject(id="a", type="Building", lod="2.2",
                   surfaces=_box(114.0, 22.0, 114.0001, 22.0001, 10.0, 20.0))
    b = CityObject(id="b", type="Building", lod="2.2",
                   surfaces=_box(114.001, 22.0, 114.0011, 22.0001, 10.0, 20.0))
    # the footprint the building was reconstructed over (here a little larger than its ground
    # face, so the test can tell which one was stored)
    given = shapely.box(113.99995, 21.99995, 114.00015, 22.00015)
    problems: list[Problem] = []
    with sync_engine(db_url).begin() as conn:
        ds = _dataset(conn)
        res = load_objects(conn, [a, b], ds, problems,
                           footprint_of=lambda o: given if o.id == "a" else None)
        assert res.inserted == 2 and not problems
        fps = _footprints(conn)
        conn.execute(datasets.delete().where(datasets.c.id == ds))
    assert fps["a"].equals(shapely.MultiPolygon([given]))
    assert fps["b"].equals(shapely.MultiPolygon([shapely.box(114.001, 22.0, 114.0011, 22.0001)]))


def test_the_lod12_geojson_is_every_ring_closed_in_order():
    sf = _box(1.0, 2.0, 3.0, 4.0, 0.0, 5.0)
    sf[0] = Surface(rings=[sf[0].rings[0], np.array([[1.5, 2.5, 0.0], [1.6, 2.5, 0.0],
                                                      [1.6, 2.6, 0.0]])],
                    semantic="GroundSurface", source_rings=sf[0].source_rings)
    doc = _geojson(sf)
    assert doc["type"] == "MultiPolygon"
    assert len(doc["coordinates"]) == len(sf)
    for poly, s in zip(doc["coordinates"], sf, strict=True):
        assert len(poly) == len(s.rings)
        for ring, r in zip(poly, s.rings, strict=True):
            assert ring == np.vstack([r, r[:1]]).round(9).tolist()
    json.dumps(doc)  # plain JSON types
