"""The grid roof partition with its staircase taken out: ridges and hips on the planes'
intersection lines, a closed valid solid of tens of triangles, and no loss of fit."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from helpers_buildings import make_building, raster_rmse, sample

from recon.roofs import _grid_partition, detect_planes, model_z, solid_from_partition
from recon.solids import check_solid, triangles


def _grid(kind: str, angle: float, simplify: float, seed: int = 3):
    rng = np.random.default_rng(seed)
    b = make_building(kind, angle=angle, length=20, width=12, rise=3.0)
    pts = sample(b, rng, density=12.0, wall_density=0.0)
    origin = np.array([*b.footprint.centroid.coords[0], 0.0])
    local = pts - origin
    planes, labels = detect_planes(local)
    fp = shapely.transform(b.footprint, lambda c: c - origin[:2])
    regions = _grid_partition(fp, local, planes, labels, 0.125, 1.0, simplify=simplify)
    return b, origin, fp, regions


@pytest.mark.parametrize(("kind", "angle"), [("hip", 0.0), ("hip", 0.5), ("multi", 0.3)])
def test_regularised_grid_partition_is_small_closed_and_fits_as_well(kind, angle):
    b, origin, fp, raw = _grid(kind, angle, 0.0)
    _, _, _, reg = _grid(kind, angle, 0.5)
    # the regions still tile the footprint (to the millimetre the regions are cleaned to)
    assert sum(r.polygon.area for r in reg) == pytest.approx(fp.area, abs=0.01)
    assert shapely.union_all([r.polygon for r in reg]).symmetric_difference(fp).area < 0.01
    solids = {}
    for name, regions in (("raw", raw), ("regularised", reg)):
        s = solid_from_partition(regions, -origin[2] + b.base_z)
        chk = check_solid(s)
        assert chk.valid, (name, chk.problems)
        solids[name] = s
    n_raw, n_reg = len(triangles(solids["raw"])), len(triangles(solids["regularised"]))
    # a hip's boundaries cross the grid at an angle: a staircase of hundreds of triangles
    # before, tens after
    assert n_reg <= 60, n_reg
    assert n_reg * 3 <= n_raw, (n_reg, n_raw)

    def err(regions):
        return raster_rmse(b, lambda x, y: model_z(regions, x - origin[0], y - origin[1])
                           + origin[2])

    e_raw, _ = err(raw)
    e_reg, cover_reg = err(reg)
    assert cover_reg == pytest.approx(1.0, abs=0.01)
    assert e_reg <= e_raw + 0.01, (e_reg, e_raw)


def test_hip_lines_lie_on_the_planes_intersections():
    _, _, fp, reg = _grid("hip", 0.5, 0.5)
    # along every boundary between two regions away from the outline, the two planes meet:
    # no step wall of a few centimetres where a ridge or a hip should be (within a metre of
    # the outline a hip may end a little off its line, where the grid's frame was kept)
    gaps = []
    for i, a in enumerate(reg):
        for c in reg[i + 1:]:
            if a.plane is c.plane:
                continue
            shared = shapely.intersection(a.polygon.boundary, c.polygon.boundary)
            shared = shapely.difference(shared, fp.exterior.buffer(1.0))
            xy = shapely.get_coordinates(shapely.segmentize(shared, 0.2))
            if len(xy):
                gaps.append(np.abs(a.plane.z(xy[:, 0], xy[:, 1]) - c.plane.z(xy[:, 0], xy[:, 1])))
    assert gaps, "a hip roof has boundaries between its faces"
    assert np.concatenate(gaps).max() < 0.1
