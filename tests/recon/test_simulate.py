"""The survey simulator: its truth agrees with its points, and it is reproducible."""

from __future__ import annotations

import laspy
import numpy as np
import pytest

from recon.simulate import simulate_district, write_las


@pytest.fixture(scope="module")
def survey():
    return simulate_district(n_buildings=12, area_m=120.0, density=10.0, noise_m=0.03, seed=3)


def test_points_carry_true_classes_and_returns(survey):
    assert len(survey) > 120 * 120 * 10 * 0.9
    assert set(np.unique(survey.truth_class)) == {2, 5, 6}
    assert (survey.classification == 1).all()
    assert (survey.return_number >= 1).all()
    assert (survey.return_number <= survey.number_of_returns).all()
    # only vegetation pulses have several returns
    multi = survey.number_of_returns > 1
    assert multi.any() and set(np.unique(survey.truth_class[multi])) <= {2, 5}
    xmin, _, _, ymax = survey.bounds
    assert (survey.xyz[:, 0] >= xmin).all() and (survey.xyz[:, 1] < ymax).all()


def test_roof_and_ground_points_lie_on_the_true_model(survey):
    g = survey.truth_class == 2
    err = survey.xyz[g, 2] - survey.ground(survey.xyz[g, 0], survey.xyz[g, 1])
    assert abs(err.mean()) < 0.01 and 0.02 < err.std() < 0.04
    for b in survey.buildings:
        sel = survey.building_id == b.id
        z = b.roof_z(survey.xyz[sel, 0], survey.xyz[sel, 1])
        on_roof = ~np.isnan(z)
        assert on_roof.sum() > 0.5 * sel.sum()  # the rest are wall returns, just outside
        assert np.abs(survey.xyz[sel, 2][on_roof] - z[on_roof]).max() < 0.2
        walls = survey.xyz[sel][~on_roof]
        assert (walls[:, 2] <= b.base_z + b.max_height + 0.2).all()


def test_roof_types_and_heights():
    s = simulate_district(n_buildings=40, area_m=300.0, density=1.0, seed=5)
    kinds = {b.roof_type for b in s.buildings}
    assert kinds == {"flat", "gable", "hip", "shed", "multi"}
    for b in s.buildings:
        assert b.footprint.is_valid and b.footprint.area > 20
        c = b.footprint.representative_point()
        h = float(b.height(c.x, c.y))
        assert 2.5 < h <= b.max_height + 1e-9
        assert np.isnan(b.height(b.footprint.bounds[0] - 1.0, c.y))
    gable = next(b for b in s.buildings if b.roof_type == "gable")
    part = gable.parts[0]
    # the ridge is on the part's axis, the eaves on its long sides
    assert float(gable.height(part.cx, part.cy)) == pytest.approx(part.ridge)


def test_same_seed_same_survey():
    a = simulate_district(n_buildings=3, area_m=60.0, density=4.0, seed=9)
    b = simulate_district(n_buildings=3, area_m=60.0, density=4.0, seed=9)
    c = simulate_district(n_buildings=3, area_m=60.0, density=4.0, seed=10)
    assert np.array_equal(a.xyz, b.xyz)
    assert len(a) != len(c) or not np.array_equal(a.xyz, c.xyz)


def test_a_field_without_buildings():
    s = simulate_district(n_buildings=0, area_m=50.0, density=5.0, seed=1)
    assert s.buildings == [] and not (s.truth_class == 6).any()


def test_write_las_unclassified_with_crs(survey, tmp_path):
    path = write_las(survey, tmp_path / "d.laz")
    las = laspy.read(path)
    assert las.header.parse_crs().to_epsg() == 4547
    assert len(las.points) == len(survey)
    assert (np.asarray(las.classification) == 1).all()
    assert np.allclose(las.z, survey.xyz[:, 2], atol=0.001)
    assert np.array_equal(np.asarray(las.number_of_returns), survey.number_of_returns)


def test_bad_parameters():
    with pytest.raises(ValueError):
        simulate_district(n_buildings=500, area_m=50.0)
    with pytest.raises(ValueError):
        simulate_district(density=0)
