"""LoD1.2 and LoD2.2 of synthetic buildings with known roofs, and the answers to bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from helpers_buildings import KINDS, flat_ground, make_building, raster_rmse, sample
from shapely.geometry import Polygon

from recon.buildings import ReconParams, reconstruct_building, reconstruct_buildings
from recon.errors import ReconInputError
from recon.footprints import Footprint
from recon.roofs import detect_planes
from recon.solids import GROUND, ROOF, WALL, check_solid


def _raster(b, cell=0.5):
    x0, y0, x1, y1 = b.footprint.bounds
    gx, gy = np.meshgrid(np.arange(x0, x1, cell) + cell / 2, np.arange(y0, y1, cell) + cell / 2)
    return gx.ravel(), gy.ravel()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("angle", [0.0, 0.5])
def test_known_roofs_are_rebuilt_within_the_goals(kind, angle):
    rng = np.random.default_rng(KINDS.index(kind) * 10 + int(angle * 10))
    # sloping terrain: the base is where the ground meets the building
    ground = flat_ground(3.0, 0.01, -0.02)
    cx, cy = 120.0, 80.0
    b = make_building(kind, cx, cy, angle, base_z=float(ground(cx, cy)))
    pts = sample(b, rng, density=10.0, noise=0.03)
    bm = reconstruct_building(Footprint("b1", b.footprint, "given"), pts, ground)
    assert bm.lod == "2.2", bm.reasons
    for solid in (bm.lod12, bm.lod22):
        chk = check_solid(solid)
        assert chk.valid, chk.problems
        assert {ROOF, WALL, GROUND} <= set(solid.semantics)
    rmse22, cover22 = raster_rmse(b, lambda x, y: bm.roof_z(x, y, "2.2"))
    rmse12, _ = raster_rmse(b, lambda x, y: bm.roof_z(x, y, "1.2"))
    assert cover22 > 0.98
    assert rmse22 <= 0.3, (kind, rmse22)
    # LoD1.2 is one height per footprint: on a flat roof it meets the 0.8 m goal; on a pitched
    # or stepped roof no box can, so it is held to the box at the same percentile of the
    # true roof (the 0.8 m goal is for a district's mix of roofs: benchmarks/buildings.py)
    truth12 = np.nanpercentile(b.roof(*_raster(b)), 70.0)
    best12, _ = raster_rmse(b, lambda x, y: np.full(np.shape(x), truth12))
    assert rmse12 <= (0.8 if kind == "flat" else best12 + 0.15), (kind, rmse12, best12)
    # the model's base is the ground at the building, within the terrain's slope over 1 m
    assert bm.base_z == pytest.approx(b.base_z, abs=0.15)
    # LoD2.2's volume is the true volume within 3%; RMSE to the points near the noise
    cell = 0.25
    x0, y0, x1, y1 = b.footprint.bounds
    gx, gy = np.meshgrid(np.arange(x0, x1, cell) + cell / 2, np.arange(y0, y1, cell) + cell / 2)
    h = b.roof(gx.ravel(), gy.ravel()) - b.base_z
    true_volume = float(np.nansum(h) * cell * cell)
    assert bm.volume_lod22 == pytest.approx(true_volume, rel=0.03)
    assert bm.rmse_lod22 < 0.1
    assert bm.rmse_lod22 < bm.rmse_lod12 or kind == "flat"
    assert bm.n_points == len(pts)


def test_lod12_height_is_the_roof_percentile():
    rng = np.random.default_rng(1)
    b = make_building("gable", rise=4.0)
    pts = sample(b, rng, wall_density=0.0)
    core = shapely.contains_xy(b.footprint.buffer(-0.3), pts[:, 0], pts[:, 1])
    for pct in (50.0, 90.0):
        bm = reconstruct_building(b.footprint, pts, flat_ground(),
                                  ReconParams(lod12_percentile=pct))
        assert bm.lod12_roof_z == pytest.approx(np.percentile(pts[core, 2], pct), abs=1e-9)
    # a gable of 4 m rise: eave 8, ridge 12; the 90th percentile is 11.6
    assert bm.height == pytest.approx(11.6, abs=0.1)


def test_planes_of_a_hip_roof():
    rng = np.random.default_rng(2)
    b = make_building("hip", length=20, width=12, rise=3.0)
    pts = sample(b, rng, wall_density=0.0)
    planes, labels = detect_planes(pts - pts.mean(axis=0))
    assert len(planes) == 4
    assert (labels >= 0).mean() > 0.95
    slopes = sorted(p.slope_deg for p in planes)
    assert slopes == pytest.approx([math.degrees(math.atan(3 / 6))] * 4, abs=1.5)


def test_no_points_gives_no_model_with_the_reason():
    b = make_building("flat")
    bm = reconstruct_building(b.footprint, np.empty((0, 3)), flat_ground())
    assert bm.lod is None and bm.lod12 is None
    assert "0 building points" in bm.reasons[0]


def test_too_few_points_gives_lod12_only_with_the_reason():
    rng = np.random.default_rng(3)
    b = make_building("gable")
    pts = sample(b, rng, wall_density=0.0)[:20]
    bm = reconstruct_building(b.footprint, pts, flat_ground(), ReconParams(min_density=0.0))
    assert bm.lod == "1.2" and bm.lod22 is None
    assert check_solid(bm.lod12).valid
    assert any("fewer than" in r for r in bm.reasons)


def test_sparse_survey_gives_lod12_with_a_warning():
    rng = np.random.default_rng(4)
    b = make_building("hip")
    pts = sample(b, rng, density=1.5, wall_density=0.0)
    bm = reconstruct_building(b.footprint, pts, flat_ground())
    assert bm.lod == "1.2"
    assert any("sparse" in w for w in bm.warnings)
    assert bm.density < 2.0


def test_outside_the_dtm_gives_no_model_with_the_reason():
    rng = np.random.default_rng(5)
    b = make_building("flat")
    pts = sample(b, rng)
    bm = reconstruct_building(b.footprint, pts, lambda x, y: np.full(np.shape(x), np.nan))
    assert bm.lod is None
    assert "ground" in bm.reasons[0]


def test_malformed_input_raises_typed_errors():
    b = make_building("flat")
    with pytest.raises(ReconInputError):
        reconstruct_building(b.footprint, np.zeros((5, 2)), flat_ground())
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    with pytest.raises(ReconInputError, match="valid polygon"):
        reconstruct_building(bowtie, np.zeros((5, 3)), flat_ground())
    with pytest.raises(ReconInputError):
        reconstruct_buildings([], np.zeros((5, 3)), flat_ground(), classification=np.zeros(4))


def test_a_survey_of_several_buildings_picks_each_ones_points():
    rng = np.random.default_rng(6)
    ground = flat_ground(1.0)
    bs = [make_building(k, 30.0 * i, 0.0, 0.2 * i, base_z=1.0) for i, k in enumerate(KINDS)]
    pts = [sample(b, rng) for b in bs]
    noise = np.column_stack([rng.uniform(-10, 140, 3000), rng.uniform(-20, 20, 3000),
                             np.full(3000, 1.0)])
    xyz = np.concatenate([*pts, noise])
    cls = np.concatenate([np.full(sum(map(len, pts)), 6), np.full(3000, 2)])
    fps = [Footprint(f"b{i}", b.footprint, "given") for i, b in enumerate(bs)]
    done = []
    models = reconstruct_buildings(fps, xyz, ground, classification=cls,
                                   progress=lambda i, n: done.append((i, n)))
    assert [m.id for m in models] == [f.id for f in fps]
    assert done[-1] == (len(fps), len(fps))
    for m, p in zip(models, pts, strict=True):
        assert m.lod == "2.2", m.reasons
        assert abs(m.n_points - len(p)) <= 0.03 * len(p)
        s = m.summary()
        assert s["lod"] == "2.2" and s["rmse_lod22_m"] < 0.1 and s["volume_lod22_m3"] > 0


def test_workers_give_the_same_buildings_as_one_process():
    # a simulated district (every roof type, trees, sloping terrain) and a ground function
    # that is a closure: it cannot be sent to a worker, and need not be
    from recon.simulate import simulate_district

    s = simulate_district(n_buildings=26, area_m=170.0, density=8.0, seed=3)
    terrain = s.terrain
    fps = [Footprint(f"b{b.id}", b.footprint, "given") for b in s.buildings]
    fps.append(Footprint("nowhere", shapely.box(-50, -50, -40, -40), "given"))
    done = []

    def run(processes):
        return reconstruct_buildings(fps, s.xyz, lambda x, y: terrain(x, y),
                                     classification=s.truth_class, processes=processes,
                                     progress=lambda i, n: done.append((i, n)))

    serial = run(1)
    parallel = run(2)
    assert done[-1] == (len(fps), len(fps))
    assert [m.id for m in parallel] == [f.id for f in fps]
    assert {m.lod for m in serial} >= {"2.2", None}  # "nowhere" has no points
    for a, b in zip(serial, parallel, strict=True):
        assert a.summary() == b.summary()
        for sa, sb in ((a.lod12, b.lod12), (a.lod22, b.lod22)):
            assert (sa is None) == (sb is None)
            if sa is not None:
                assert np.array_equal(sa.vertices, sb.vertices)
                assert sa.faces == sb.faces and sa.semantics == sb.semantics


def test_lod12_height_is_the_flat_top_of_least_raster_error():
    # a gable of 4 m rise (eave 8, ridge 12) sampled three times as densely along its ridge:
    # the flat top that fits best over the area is the mean roof height, 10 m, however
    # the points fall
    rng = np.random.default_rng(11)
    b = make_building("gable", angle=0.3, rise=4.0)
    pts = sample(b, rng, density=12.0, wall_density=0.5)
    extra = sample(b, rng, density=24.0, wall_density=0.0)
    across = -extra[:, 0] * math.sin(0.3) + extra[:, 1] * math.cos(0.3)
    pts = np.concatenate([pts, extra[np.abs(across) < 2.5]])
    bm = reconstruct_building(b.footprint, pts, flat_ground())
    # 10 m, but for the 0.3 m eave bands that are not roof points (ReconParams.edge_m):
    # the mean over the 4.7 m of each slope left, 8 + 0.8 * (0.3 + 4.7 / 2)
    assert bm.height == pytest.approx(10.12, abs=0.05)
    gx, gy = _raster(b)
    inside = shapely.contains_xy(b.footprint, gx, gy)
    gx, gy = gx[inside], gy[inside]
    truth = b.roof(gx, gy)

    def rmse(m):
        return float(np.sqrt(np.mean((m.roof_z(gx, gy, "1.2") - truth) ** 2)))

    # the best any flat top can do on this roof is its spread: rise / sqrt(12)
    assert rmse(bm) == pytest.approx(4.0 / math.sqrt(12), abs=0.05)
    for pct in (50.0, 70.0, 90.0):
        other = reconstruct_building(b.footprint, pts, flat_ground(),
                                     ReconParams(lod12_percentile=pct))
        assert rmse(bm) < rmse(other)
