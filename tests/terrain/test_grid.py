"""The pure parts of survey terrain: packing, heights made ellipsoidal, coverage, the
newest-first stack, and the tiling arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import CRS

from recon.terrain import Dtm
from service.terrain.store import prepare_dtm
from tiler.crs import ToWgs84, cached_transformer, geoid_undulation
from tiler.terrain import tiles as qm
from tiler.terrain.grid import (
    GridStack,
    HeightGrid,
    coverage,
    ellipsoidal_offset,
    pack_heights,
    unpack_heights,
)

X0, Y0 = 525300.0, 2513500.0  # EPSG:4547, Longgang


def test_heights_pack_and_unpack_exactly_with_their_gaps():
    rng = np.random.default_rng(1)
    z = (50 + rng.normal(0, 3, (120, 90))).astype(np.float32)
    z[10:20, 5:40] = np.nan
    back = unpack_heights(pack_heights(z), 120, 90)
    assert np.array_equal(np.isnan(back), np.isnan(z))
    assert np.array_equal(back[~np.isnan(z)], z[~np.isnan(z)])
    with pytest.raises(ValueError):
        unpack_heights(pack_heights(z), 120, 91)


def test_orthometric_heights_become_ellipsoidal_as_the_tiles_make_them():
    # a survey whose heights are orthometric (EGM96): every cell gets the geoid added, the
    # same as ToWgs84 gives point by point
    to_wgs84 = ToWgs84("EPSG:4547", "orthometric")
    shape, cell = (300, 500), 0.5
    off = ellipsoidal_offset(shape, X0, Y0, cell, to_wgs84, step=16)
    jj, ii = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]))
    x, y = X0 + (jj + 0.5) * cell, Y0 + (ii + 0.5) * cell
    _, _, exact = to_wgs84(x.ravel(), y.ravel(), np.zeros(x.size))
    assert np.abs(off.ravel() - exact).max() < 1e-4
    assert -3.5 < off.mean() < -1.5  # EGM96 in Longgang: about -2.5 m
    # ellipsoidal heights stay as they are
    assert np.abs(ellipsoidal_offset(shape, X0, Y0, cell, ToWgs84("EPSG:4547"))).max() == 0


def test_prepared_dtm_is_cut_to_the_survey_and_ellipsoidal():
    rows, cols, cell = 160, 160, 0.5
    z = np.full((rows, cols), 30.0, np.float32)
    dtm = Dtm(z, X0, Y0, cell, np.zeros((rows, cols), bool), "EPSG:4547")
    # points only in the south-west 60 x 60 m and a strip to the east: an L
    rng = np.random.default_rng(3)
    a = np.column_stack([rng.uniform(X0, X0 + 60, 20000), rng.uniform(Y0, Y0 + 60, 20000)])
    b = np.column_stack([rng.uniform(X0, X0 + 80, 8000), rng.uniform(Y0, Y0 + 10, 8000)])
    xy = np.vstack([a, b])
    mask, outline = coverage((rows, cols), X0, Y0, cell, xy)
    assert mask[:100, :100].all()  # 0..50 m: covered
    assert not mask[150:, 150:].any()  # the empty north-east corner
    assert 60 * 60 + 20 * 10 <= outline.area <= 66 * 66 + 26 * 16
    prepared = prepare_dtm(dtm, CRS.from_epsg(4547), ToWgs84("EPSG:4547", "orthometric"), xy)
    assert prepared.crs == "EPSG:4547" and prepared.rows == rows
    grid = unpack_heights(prepared.heights, rows, cols)
    assert np.array_equal(np.isnan(grid), ~mask)
    to_ll = cached_transformer("EPSG:4547", "EPSG:4326")
    lon, lat = to_ll.transform(X0 + 10.25, Y0 + 10.25)
    n = geoid_undulation(np.array([lon, lon]), np.array([lat, lat]))[0]
    assert grid[20, 20] == pytest.approx(30.0 + n, abs=1e-3)
    foot = shapely.from_wkt(prepared.footprint_wkt)
    assert foot.geom_type == "MultiPolygon" and foot.contains(shapely.Point(lon, lat))


def test_the_newest_grid_wins_where_it_has_data():
    old = HeightGrid("EPSG:4547", X0, Y0, 1.0, np.full((50, 50), 10.0, np.float32))
    z = np.full((50, 50), 20.0, np.float32)
    z[:, 25:] = np.nan  # the new survey covers the western half only
    new = HeightGrid("EPSG:4547", X0, Y0, 1.0, z)
    to_ll = cached_transformer("EPSG:4547", "EPSG:4326")
    lon, lat = to_ll.transform(np.array([X0 + 10, X0 + 40, X0 + 80]),
                               np.array([Y0 + 10, Y0 + 10, Y0 + 10]))
    h, which = GridStack([new, old], ids=[2, 1]).sample(np.asarray(lon), np.asarray(lat))
    assert h[0] == pytest.approx(20.0) and h[1] == pytest.approx(10.0) and np.isnan(h[2])
    assert list(which) == [0, 1, -1]


def test_tile_arithmetic():
    assert qm.Tile(0, 0, 0).bounds == (-180.0, -90.0, 0.0, 90.0)
    assert qm.Tile(1, 3, 1).bounds == (90.0, 0.0, 180.0, 90.0)
    assert qm.bad_tile(2, 7, 3) is None
    assert "x 8" in qm.bad_tile(2, 8, 0) and "y 4" in qm.bad_tile(2, 0, 4)
    assert "level 21" in qm.bad_tile(21, 0, 0)
    assert qm.level_for_cell(0.5) == 18 and qm.level_for_cell(1.0) == 17
    box = (114.2470, 22.7200, 114.2480, 22.7210)
    levels = qm.available([(box, 0.5)])
    assert len(levels) == 19 and levels[0] == [qm.TileRange(0, 0, 1, 0)]
    for z, ranges in enumerate(levels[1:], start=1):
        [r] = ranges
        for lon in (box[0], box[2]):
            for lat in (box[1], box[3]):
                w, s, e, n = qm.Tile(z, r.start_x, r.start_y).bounds
                size = e - w
                assert r.start_x * size - 180 <= lon <= (r.end_x + 1) * size - 180
                assert r.start_y * size - 90 <= lat <= (r.end_y + 1) * size - 90
        assert s <= n
    assert qm.available([]) == [[qm.TileRange(0, 0, 1, 0)]]
