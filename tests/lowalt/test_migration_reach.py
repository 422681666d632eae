"""Routes filed before the corridor's reach was measured get their half-width raised."""

from __future__ import annotations

import json

import numpy as np
from helpers_lowalt import Local
from sqlalchemy import text

from service.core import db
from service.core.db import sync_engine
from service.lowalt.geo import corridor_polygon


def test_upgrade_widens_routes_filed_with_a_narrow_half_width(fresh_database):
    url = fresh_database()
    db.upgrade(url, "0008")
    here = Local(0)
    vee = [(0, 0), (300, -300), (600, 0)]
    tri = ", ".join(f"{lon} {lat}" for lon, lat in (
        here.ll(-20, 10), here.ll(300, -330), here.ll(620, 10), here.ll(-20, 10)))
    # the corridor filing makes by default: the line buffered by its half-width
    xyz = np.array([[here.ox + x, here.oy + y, 0.0] for x, y in vee])
    plain = here.fr.geom_to_lonlat(corridor_polygon(xyz, 10.0)).wkt
    engine = sync_engine(url)
    with engine.begin() as conn:
        d = conn.execute(text("INSERT INTO drones (serial, operator, class) VALUES"
                              " ('M-1', 'ops', 'light') RETURNING id")).scalar_one()
        ids = [conn.execute(text(
            "INSERT INTO drone_routes (drone_id, status, priority, geom, corridor,"
            " half_width_m, vertical_half_m, alt_band, time_window, length_m, verdict,"
            " validation) VALUES (:d, :status, 0, ST_GeomFromGeoJSON(:line),"
            " ST_GeomFromText(:corridor, 4326), :hw, 5, numrange(50, 70),"
            " tstzrange(now(), now() + interval '1 hour'), 850, 'accepted', '{}')"
            " RETURNING id"), {"d": d, "line": json.dumps(here.line([(x, y, 60) for x, y in vee])),
                               "corridor": c, "hw": hw,
                               "status": status}).scalar_one()
            for c, hw, status in ((f"POLYGON (({tri}))", 30.0, "approved"),
                                  (plain, 10.0, "retired"))]
    db.upgrade(url)
    with engine.connect() as conn:
        hw = dict(conn.execute(text("SELECT id, half_width_m FROM drone_routes")).all())
    engine.dispose()
    assert 219 <= hw[ids[0]] < 221, hw
    # a corridor within its half-width keeps it
    assert hw[ids[1]] == 10.0
