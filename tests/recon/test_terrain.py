"""The DTM: measured cells, TIN-filled gaps and its georeference, against the true terrain."""

from __future__ import annotations

import numpy as np
import pytest

from recon.errors import NoGroundError
from recon.terrain import build_dtm, fill_gaps


def test_dtm_from_true_ground_matches_the_terrain(district):
    g = district.truth_class == 2
    dtm = build_dtm(district.xyz[g], cell=0.5, bounds=district.bounds, crs=district.crs)
    xmin, ymin, xmax, ymax = district.bounds
    assert dtm.bounds[0] <= xmin and dtm.bounds[2] >= xmax and dtm.crs == "EPSG:4547"
    rows, cols = dtm.shape
    jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
    cx, cy = dtm.x0 + (jj + 0.5) * dtm.cell, dtm.y0 + (ii + 0.5) * dtm.cell
    err = dtm.z - district.ground(cx, cy)
    # under buildings the ground is a TIN over 10-25 m of gentle slope
    assert dtm.filled.mean() > 0.1
    assert np.sqrt(np.mean(err[~dtm.filled] ** 2)) < 0.04
    assert np.sqrt(np.mean(err[dtm.filled] ** 2)) < 0.06
    # ground height at arbitrary points
    x = np.random.default_rng(0).uniform(xmin + 1, xmax - 1, 500)
    y = np.random.default_rng(1).uniform(ymin + 1, ymax - 1, 500)
    assert np.abs(dtm.height(x, y) - district.ground(x, y)).max() < 0.2
    gt = dtm.geotransform()
    assert gt[1] == 0.5 and gt[5] == -0.5 and gt[3] == dtm.bounds[3]


def test_tin_fill_reproduces_a_plane_inside_the_hull():
    yy, xx = np.mgrid[0:60, 0:80].astype(float)
    z = 0.3 * xx - 0.2 * yy + 5
    measured = np.ones_like(z, dtype=bool)
    measured[10:30, 20:50] = False
    measured[3, 3] = False
    measured[40:55, 5:12] = False
    filled = fill_gaps(np.where(measured, z, np.nan), measured)
    assert not np.isnan(filled).any()
    assert np.abs(filled - z).max() < 0.01


def test_too_few_ground_points():
    with pytest.raises(NoGroundError):
        build_dtm(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]))
    with pytest.raises(NoGroundError):
        build_dtm(np.full((10, 3), np.nan))
