"""The job's survey reader: the points read in chunks equal laspy's whole read, whatever the
chunk size; a file it cannot read fails the job with its name. The footprint join in pieces
finds the same points as one join."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
import pytest
from pyproj import CRS
from shapely.geometry import box

from recon import buildings
from recon.buildings import points_in_footprints
from recon.simulate import simulate_district, write_las
from service.cim import fly
from service.jobs.context import JobFailed


@pytest.fixture(scope="module")
def laz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = simulate_district(n_buildings=3, area_m=60.0, density=6.0, seed=31)
    return write_las(s, tmp_path_factory.mktemp("read") / "small.laz")


@pytest.mark.parametrize("chunk", [997, 10_000_000])
def test_chunked_read_equals_whole_read(laz: Path, chunk: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fly, "READ_CHUNK", chunk)
    xyz, rn, nr, cls = fly._read_points(laz)
    whole = laspy.read(laz)
    assert len(whole.points) > 3 * 997  # several chunks in the small-chunk case
    assert xyz.shape == (len(whole.points), 3) and xyz.dtype == np.float64
    np.testing.assert_array_equal(xyz[:, 0], np.asarray(whole.x))
    np.testing.assert_array_equal(xyz[:, 1], np.asarray(whole.y))
    np.testing.assert_array_equal(xyz[:, 2], np.asarray(whole.z))
    np.testing.assert_array_equal(rn, np.asarray(whole.return_number))
    np.testing.assert_array_equal(nr, np.asarray(whole.number_of_returns))
    np.testing.assert_array_equal(cls, np.asarray(whole.classification))


def test_frame_takes_the_points_without_a_copy(laz: Path) -> None:
    xyz, *_ = fly._read_points(laz)
    before = xyz.copy()
    frame = fly.MetricFrame(CRS("EPSG:4547"), None, xyz)
    assert frame.xyz is xyz
    np.testing.assert_array_equal(frame.xyz, before)  # metres already: heights unscaled


def test_unreadable_file_fails_the_job_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "broken.laz"
    bad.write_bytes(b"LASF" + b"\0" * 50)
    with pytest.raises(JobFailed, match=r"broken\.laz"):
        fly._read_points(bad)


def test_join_in_pieces_equals_one_join(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 100, (20_000, 2))
    polys = [box(10, 10, 30, 40), box(25, 35, 60, 70), box(80, 0, 100, 20)]
    one = points_in_footprints(polys, xy)
    monkeypatch.setattr(buildings, "JOIN_PIECE", 777)
    pieces = points_in_footprints(polys, xy)
    for p, a, b in zip(polys, one, pieces, strict=True):
        np.testing.assert_array_equal(np.sort(a), np.sort(b))
        inside = (xy[:, 0] >= p.bounds[0]) & (xy[:, 0] <= p.bounds[2]) \
            & (xy[:, 1] >= p.bounds[1]) & (xy[:, 1] <= p.bounds[3])
        np.testing.assert_array_equal(np.sort(b), np.flatnonzero(inside))
