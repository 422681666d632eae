"""The solid checker accepts closed, 2-manifold, outward shells and refuses broken ones."""

from __future__ import annotations

import numpy as np
import pytest

from recon.solids import GROUND, ROOF, WALL, Solid, SolidBuilder, check_solid, distance_to_surface


def box(x0=0.0, y0=0.0, z0=0.0, dx=2.0, dy=3.0, dz=4.0, *, top_hole: bool = False) -> Solid:
    sb = SolidBuilder()
    c = [(x0, y0), (x0 + dx, y0), (x0 + dx, y0 + dy), (x0, y0 + dy)]
    z1 = z0 + dz
    sb.add([[(x, y, z1) for x, y in c]], ROOF)
    for i in range(4):
        (xa, ya), (xb, yb) = c[i], c[(i + 1) % 4]
        sb.add([[(xa, ya, z0), (xb, yb, z0), (xb, yb, z1), (xa, ya, z1)]], WALL)
    sb.add([[(x, y, z0) for x, y in reversed(c)]], GROUND)
    return sb.build()


def test_a_box_is_valid_with_its_volume():
    s = box()
    chk = check_solid(s)
    assert chk.valid, chk.problems
    assert chk.volume == pytest.approx(24.0)
    assert s.area(ROOF) == pytest.approx(6.0)
    assert s.semantics.count(WALL) == 4


def test_an_open_shell_is_refused():
    s = box()
    s.faces.pop(0)
    s.semantics.pop(0)
    chk = check_solid(s)
    assert not chk.valid
    assert any("not closed" in p for p in chk.problems)


def test_a_flipped_face_is_refused():
    s = box()
    s.faces[2] = [list(reversed(s.faces[2][0]))]
    chk = check_solid(s)
    assert not chk.valid
    assert any("same direction" in p for p in chk.problems)


def test_an_inside_out_solid_is_refused():
    s = box()
    s.faces = [[list(reversed(r)) for r in f] for f in s.faces]
    chk = check_solid(s)
    assert not chk.valid
    assert any("not positive" in p for p in chk.problems)


def test_a_non_planar_face_is_refused():
    s = box()
    top = s.faces[0][0][0]
    s.vertices[top, 2] += 0.2  # one roof corner lifted: roof and two walls warp
    chk = check_solid(s)
    assert not chk.valid
    assert any("not planar" in p for p in chk.problems)


def test_two_boxes_sharing_an_edge_are_not_2_manifold():
    a, b = box(), box(x0=2.0, y0=3.0)
    verts = np.vstack([a.vertices, b.vertices])
    # merge equal vertices so the two boxes really share the edge x=2, y=3
    uniq, inv = np.unique(np.round(verts, 6), axis=0, return_inverse=True)
    inv = inv.ravel()
    off = len(a.vertices)
    faces = [[[int(inv[v]) for v in r] for r in f] for f in a.faces]
    faces += [[[int(inv[v + off]) for v in r] for r in f] for f in b.faces]
    s = Solid(uniq, faces, a.semantics + b.semantics)
    chk = check_solid(s)
    assert not chk.valid
    assert any("2-manifold" in p for p in chk.problems)


def test_two_separate_boxes_are_two_shells():
    a, b = box(), box(x0=10.0)
    off = len(a.vertices)
    faces = a.faces + [[[v + off for v in r] for r in f] for f in b.faces]
    s = Solid(np.vstack([a.vertices, b.vertices]), faces, a.semantics + b.semantics)
    chk = check_solid(s)
    assert not chk.valid
    assert any("shells" in p for p in chk.problems)


def test_degenerate_rings_are_refused():
    s = box()
    s.faces[1] = [[s.faces[1][0][0], s.faces[1][0][1]]]
    assert not check_solid(s).valid


def test_distance_to_surface_measures_to_the_nearest_face():
    s = box()  # 0..2 x 0..3 x 0..4
    pts = np.array([[1.0, 1.5, 5.0], [1.0, 1.5, 3.5], [-1.0, 1.5, 2.0], [3.0, 4.0, 4.0]])
    d = distance_to_surface(s, pts)
    assert d == pytest.approx([1.0, 0.5, 1.0, np.sqrt(2.0)])


def test_partition_with_steps_and_an_enclosed_region_closes():
    from shapely.geometry import Polygon

    from recon.roofs import Plane, RoofRegion, solid_from_partition

    outer = Polygon([(0, 0), (20, 0), (20, 10), (0, 10)], [[(4, 4), (4, 6), (6, 6), (6, 4)]])
    regions = [
        RoofRegion(outer.intersection(Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])),
                   Plane(0.0, 0.0, 12.0)),
        RoofRegion(Polygon([(10, 0), (20, 0), (20, 10), (10, 10)]), Plane(0.0, 0.1, 7.0)),
        RoofRegion(Polygon([(4, 4), (6, 4), (6, 6), (4, 6)]), Plane(0.0, 0.0, 14.0)),  # chimney
    ]
    s = solid_from_partition(regions, 2.0)
    chk = check_solid(s)
    assert chk.valid, chk.problems
    expected = 96 * 10 + 4 * 12 + 100 * (5.0 + 0.5)  # heights above the base of 2 m
    assert chk.volume == pytest.approx(expected, rel=1e-6)
    assert s.semantics.count(GROUND) == 1


def test_partition_touching_itself_at_a_corner_is_refused():
    from shapely.geometry import Polygon

    from recon.roofs import PartitionError, Plane, RoofRegion, solid_from_partition

    a = Polygon([(0, 0), (5, 0), (5, 5), (0, 5)])
    b = Polygon([(5, 5), (10, 5), (10, 10), (5, 10)])  # meets a only at (5, 5)
    with pytest.raises(PartitionError):
        solid_from_partition([RoofRegion(a, Plane(0, 0, 5)), RoofRegion(b, Plane(0, 0, 6))], 0.0)
    with pytest.raises(PartitionError, match="above the base"):
        solid_from_partition([RoofRegion(a, Plane(0, 0, 0.1))], 0.0)
