"""Drone LiDAR -> 3D Tiles 1.1: real sample files and synthetic surveys, read back point by
point (count, position within 1 cm, colour, intensity, class), every glb through the Khronos
glTF validator and every tileset through the 3D Tiles rule checker."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import laspy
import numpy as np
import pytest
from helpers_gltf import errors_of, node_available, validate_glbs
from helpers_lidar import (
    match_to_source,
    read_tileset_points,
    source_points,
    to_source,
    write_survey,
    write_variable_chunk_laz,
)
from helpers_tileset import check_tileset
from pyproj import CRS, Transformer

from tiler.crs import egm96_grid, geoid_undulation
from tiler.frames import ecef_to_geodetic
from tiler.pointcloud import PointCloudResult, Settings, tile_point_cloud
from tiler.pointcloud.pipeline import _sample_ranges
from tiler.pointcloud.source import inspect_source, read_range, resolve_crs, z_to_metres

DATA = Path(__file__).resolve().parents[1] / "data" / "lidar"
AUTZEN_WKT = CRS.from_user_input(
    laspy.open(DATA / "pdal_autzen_trim.laz").header.parse_crs()).to_wkt()
# a local metric CRS for files whose coordinates are in no real CRS (a few metres around 0)
LOCAL_TM = "+proj=tmerc +lat_0=22.7 +lon_0=114 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs"
# small sample so that small files go through every stage (preview + cells), in this process
SMALL = Settings(sample_points=2000, inprocess_max_points=10**9, cell_target=20_000)


def check_output(src: Path, out: Path, result: PointCloudResult, crs: str | None = None,
                 snap: bool = True, vertical: str | None = None) -> dict[str, np.ndarray]:
    """The shared read-back: rules, validator, every point in place with its attributes."""
    issues = check_tileset(out / "tileset.json")
    assert not issues, issues[:10]
    glbs = sorted(out.glob("content/**/*.glb"))
    assert len(glbs) == result.tiles
    if node_available():
        reports = validate_glbs(glbs)
        bad = {p: errors_of(r) for p, r in reports.items() if r["errors"]}
        assert not bad, list(bad.items())[:3]
    pts = read_tileset_points(out / "tileset.json")
    info = inspect_source(src)
    the_crs = resolve_crs(info, crs)
    zf = z_to_metres(the_crs)
    back = to_source(pts["ecef"], the_crs, zf, vertical=vertical)
    s = source_points(src)
    assert result.points == len(s["xyz"]) == len(back)
    tol = np.full(3, 0.01 / zf)  # 1 cm, in the file's unit
    if the_crs.is_geographic:  # 1 cm in degrees of latitude (and longitude, more than enough)
        tol[:2] = 0.01 / 111_320
    m = match_to_source(s, back, tol, snap=snap, got=pts)
    assert (pts["classification"] == s["classification"][m]).all()
    assert (pts["intensity"] == s["intensity"][m]).all()
    if "rgb" in s and result.colour != "none":
        assert (pts["color"].astype(np.int64) == s["rgb"][m]).all()
    counts = np.bincount(s["classification"], minlength=256)
    assert result.class_counts == {int(c): int(k) for c, k in enumerate(counts) if k}
    # bounds hold every point
    g = ecef_to_geodetic(pts["ecef"])
    lo_lon, lo_lat, lo_h, hi_lon, hi_lat, hi_h = result.bounds
    cell = 1e-4  # footprint cells are a few metres: bounds are cell-accurate
    assert lo_lon - cell <= g[:, 0].min() and g[:, 0].max() <= hi_lon + cell
    assert lo_lat - cell <= g[:, 1].min() and g[:, 1].max() <= hi_lat + cell
    assert lo_h - 0.01 <= g[:, 2].min() and g[:, 2].max() <= hi_h + 0.01
    assert result.footprint.is_valid and result.footprint.area > 0
    return pts


SAMPLES = [
    ("pdal_autzen_trim.laz", None, True),
    ("pdal_1.2-with-color.las", AUTZEN_WKT, True),
    ("pdal_simple.laz", AUTZEN_WKT, True),
    ("laspy_1_4_w_evlr.laz", None, False),  # micro-feet scale: nearest-neighbour matching
    ("laspy_simple1_4.las", LOCAL_TM, False),  # its EPSG:4326 label is false: we give one
    ("py3dtiles_stacked_points.las", LOCAL_TM, True),
    ("py3dtiles_with_srs_3950.las", "EPSG:3857", True),  # its EPSG:3950 is impossible
]


@pytest.mark.parametrize(("name", "crs", "snap"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_sample_files_read_back(tmp_path: Path, name: str, crs: str | None, snap: bool) -> None:
    src = DATA / name
    result = tile_point_cloud(src, tmp_path / "out", crs=crs, settings=SMALL)
    check_output(src, tmp_path / "out", result, crs=crs, snap=snap)
    assert result.tiles >= 1 and result.bytes > 0
    assert not list((tmp_path / "out").glob(".spill-*")), "temporary files left behind"


def _xyz_multiset(xyz: np.ndarray) -> dict[tuple[int, int, int], int]:
    rows, counts = np.unique(np.asarray(xyz, np.int64), axis=0, return_counts=True)
    return {tuple(int(v) for v in r): int(c) for r, c in zip(rows, counts, strict=True)}


def test_copc_every_point_exactly_once(tmp_path: Path) -> None:
    """COPC stores one LAZ chunk per octree node, so its chunks vary in size. The (X, Y, Z)
    records in the tiles are the records laspy reads sequentially: none lost, none twice.
    (Seeking by point index lost 62,037 of them and doubled as many.)"""
    src = DATA / "pdal_lone-star.copc.laz"
    crs = "EPSG:26912"  # its EPSG:4978 label is false (see test_pointcloud_errors)
    events: list[tuple[str, int, int]] = []
    r = tile_point_cloud(src, tmp_path / "out", crs=crs, workers=2,
                         progress=lambda *a: events.append(a),
                         settings=Settings(task_points=100_000, chunk_points=60_000,
                                           cell_target=150_000))
    pts = check_output(src, tmp_path / "out", r, crs=crs)
    s = source_points(src)
    back = to_source(pts["ecef"], crs)
    tiled = np.rint((back - s["offsets"]) / s["scales"]).astype(np.int64)
    assert _xyz_multiset(tiled) == _xyz_multiset(s["XYZ"])
    assert r.points == 518_862 and ("reading", r.points, r.points) in events


def test_copc_preview_comes_from_the_top_of_its_hierarchy() -> None:
    info = inspect_source(DATA / "pdal_lone-star.copc.laz")
    assert info.chunks is not None and info.chunk_levels is not None
    levels = np.asarray(info.chunk_levels)
    first = info.chunk_starts()
    top = int((levels <= 1).nonzero()[0].size)
    want = int(sum(info.chunks[i][0] for i in np.flatnonzero(levels <= 1)))
    ranges = _sample_ranges(info, want)
    # whole nodes of levels 0 and 1, nothing deeper
    assert len(ranges) == top
    assert {(int(first[i]), info.chunks[i][0]) for i in np.flatnonzero(levels <= 1)} == set(ranges)


def test_laz_with_variable_chunks_reads_every_range(tmp_path: Path) -> None:
    """Not COPC only: any LAZ whose chunks vary in size. laspy's seek lands on the wrong
    points there (lazrs takes index % points-of-that-chunk as the place inside the chunk)."""
    src = write_variable_chunk_laz(DATA / "pdal_autzen_trim.laz", tmp_path / "var.laz",
                                   [7000, 23000, 1500, 40000])
    info = inspect_source(src)
    assert info.laz_chunk_size is None and info.chunks is not None
    assert info.chunk_levels is None  # not COPC
    every = laspy.read(src)
    for a, b in [(0, 110_000), (30_000, 30_100), (6_999, 31_000), (71_400, 110_000)]:
        blocks = list(read_range(info, a, b, 9_000))
        # contiguous blocks of at most 9,000 points, each saying where it starts
        sizes = [len(blk.x) for blk in blocks]
        assert [blk.start for blk in blocks] == list(a + np.cumsum([0, *sizes[:-1]]))
        assert max(sizes) <= 9_000 and sum(sizes) == b - a
        got = np.concatenate([np.column_stack([blk.x, blk.y, blk.z]) for blk in blocks])
        np.testing.assert_array_equal(
            got, np.column_stack([every.x, every.y, every.z])[a:b])
    # and the whole pipeline: many tasks, a sample spread over the file
    r = tile_point_cloud(src, tmp_path / "out", workers=2,
                         settings=Settings(sample_points=20_000, task_points=25_000,
                                           chunk_points=10_000, cell_target=30_000))
    check_output(src, tmp_path / "out", r)


def test_feet_heights_become_metres(tmp_path: Path) -> None:
    src = DATA / "laspy_1_4_w_evlr.laz"  # New Mexico Central (US survey feet), z in feet
    r = tile_point_cloud(src, tmp_path / "out")
    z = source_points(src)["xyz"][:, 2] * 1200 / 3937
    assert r.bounds[2] == pytest.approx(z.min(), abs=0.05)
    assert r.bounds[5] == pytest.approx(z.max(), abs=0.05)
    assert r.acquired_at is not None  # adjusted standard GPS time in this file


def test_colour_depth_from_value_range(tmp_path: Path) -> None:
    r8 = tile_point_cloud(DATA / "pdal_1.2-with-color.las", tmp_path / "a", crs=AUTZEN_WKT)
    assert r8.colour == "u8"  # 8-bit values in 16-bit fields: not scaled, not black
    r16 = tile_point_cloud(DATA / "laspy_simple1_4.las", tmp_path / "b", crs=LOCAL_TM)
    assert r16.colour == "u16"
    doc = json.loads((tmp_path / "a" / "tileset.json").read_text())
    assert doc["asset"]["version"] == "1.1" and "gltfUpAxis" not in doc["asset"]


def _survey_lonlat(src: Path, crs: str) -> np.ndarray:
    s = source_points(src)["xyz"]
    tf = Transformer.from_crs(crs, "EPSG:4979", always_xy=True)
    lon, lat, h = tf.transform(s[:, 0], s[:, 1], s[:, 2])
    return np.column_stack([lon, lat, h])


def test_4547_survey_lands_in_longgang_multiprocess(tmp_path: Path) -> None:
    """Axis order: EPSG:4547 is northing-first, LAS X is easting. The survey must land at
    about 114.0 E, 22.7 N (and within 1 m of pyproj's answer for every point), through the
    worker processes, with a preview published first."""
    src = write_survey(tmp_path / "survey.laz", 120_000)
    events: list[tuple[str, int, int]] = []
    previews: list[tuple[int, list[str]]] = []

    def on_preview(path: Path) -> None:
        # the preview must be a valid tileset by itself, referencing only finished content
        previews.append((len(events), check_tileset(path)))
        shutil.copy(path, tmp_path / "preview.json")

    settings = Settings(sample_points=20_000, inprocess_max_points=0, cell_target=8_000,
                        task_points=50_000, chunk_points=20_000)
    r = tile_point_cloud(src, tmp_path / "out", progress=lambda *a: events.append(a),
                         on_preview=on_preview, settings=settings, workers=2)
    pts = check_output(src, tmp_path / "out", r)
    assert r.crs == "EPSG:4547"
    lon_lat = ecef_to_geodetic(pts["ecef"])
    assert 113.99 < lon_lat[:, 0].mean() < 114.03 and 22.68 < lon_lat[:, 1].mean() < 22.72
    # every point within 1 m of pyproj's own always_xy transform
    src_pts = source_points(src)
    m = match_to_source(src_pts, to_source(pts["ecef"], "EPSG:4547"), 0.01, got=pts)
    expect = _survey_lonlat(src, "EPSG:4547")[m]
    d_lat = (lon_lat[:, 1] - expect[:, 1]) * 111_000
    d_lon = (lon_lat[:, 0] - expect[:, 0]) * 111_000 * np.cos(np.radians(22.7))
    assert np.hypot(d_lat, d_lon).max() < 1.0
    # preview: before the end, valid, and a subset of the final tileset
    assert len(previews) == 1 and previews[0][1] == []
    assert previews[0][0] < len(events)
    assert r.first_view_s is not None and r.first_view_s < r.elapsed_s
    pre = json.loads((tmp_path / "preview.json").read_text())
    assert pre["asset"]["extras"]["twinbase"]["stage"] == "preview"
    # progress: known stages, counts never above the total, reading reaches every point
    assert {e[0] for e in events} <= {"reading", "tiling", "writing"}
    assert all(0 <= d <= t for _, d, t in events)
    assert ("reading", r.points, r.points) in events
    # the survey facts the service stores
    assert r.acquired_at is not None and r.acquired_at.date() == dt.date(2024, 5, 17)
    assert r.details["cell_level"] > r.details["levels_from_sample"]  # shared nodes used
    area_bbox = 2000 * 2000
    assert 0.5 * area_bbox < r.footprint_area_m2 <= 1.1 * area_bbox
    assert r.density == pytest.approx(r.points / r.footprint_area_m2)
    assert r.height_note.startswith("heights taken as ellipsoidal")


def _reproject_survey(src: Path, dst: Path, crs: str, scale: float) -> Path:
    """Rewrite a 4547 survey in another CRS (same points)."""
    las = laspy.read(src)
    tf = Transformer.from_crs("EPSG:4547", crs, always_xy=True)
    x, y = tf.transform(np.asarray(las.x), np.asarray(las.y))
    header = laspy.LasHeader(point_format=las.header.point_format.id, version="1.4")
    header.scales = np.array([scale, scale, 0.001])
    header.offsets = np.array([np.floor(x.min()), np.floor(y.min()), 0.0])
    header.add_crs(CRS.from_user_input(crs))
    out = laspy.LasData(header)
    out.points = laspy.ScaleAwarePointRecord.zeros(len(x), header=header)
    out.x, out.y, out.z = x, y, np.asarray(las.z)
    for dim in ("intensity", "classification", "red", "green", "blue", "gps_time"):
        out[dim] = las[dim]
    out.write(dst)
    return dst


@pytest.mark.parametrize(("crs", "scale"), [("EPSG:4490", 1e-8), ("EPSG:32650", 0.001)])
def test_chinese_and_utm_crs(tmp_path: Path, crs: str, scale: float) -> None:
    base = write_survey(tmp_path / "base.las", 20_000, size=500.0)
    src = _reproject_survey(base, tmp_path / "survey.las", crs, scale)
    r = tile_point_cloud(src, tmp_path / "out", settings=SMALL)
    # degrees at 1e-8 (~1 mm) are too fine to snap: nearest neighbours instead
    check_output(src, tmp_path / "out", r, snap=crs != "EPSG:4490")
    lon0, lat0 = _survey_lonlat(base, "EPSG:4547")[:, :2].mean(axis=0)
    c = r.footprint.centroid
    assert abs(c.x - lon0) < 0.002 and abs(c.y - lat0) < 0.002


@pytest.mark.skipif(egm96_grid() is None, reason="EGM96 grid (proj-data) not installed")
def test_orthometric_heights_through_geoid(tmp_path: Path) -> None:
    src = write_survey(tmp_path / "s.las", 5_000, size=300.0)
    r = tile_point_cloud(src, tmp_path / "out", vertical="orthometric")
    assert "EGM96" in r.height_note
    pts = check_output(src, tmp_path / "out", r, vertical="orthometric")
    g = ecef_to_geodetic(pts["ecef"])
    s = source_points(src)
    back = to_source(pts["ecef"], "EPSG:4547", vertical="orthometric")
    m = match_to_source(s, back, 0.01, got=pts)
    n = geoid_undulation(g[:, 0], g[:, 1])
    assert np.abs(g[:, 2] - (s["xyz"][m, 2] + n)).max() < 0.01


@pytest.mark.skipif(egm96_grid() is None, reason="EGM96 grid (proj-data) not installed")
def test_vertical_datum_declared_in_las_geokeys_is_honoured(tmp_path: Path) -> None:
    """PDAL's 4_6_crop.las: New Mexico Central (US feet) with NAVD88 heights in US survey feet
    in its GeoTIFF keys. Tiled heights are the orthometric heights made ellipsoidal with
    the geoid PROJ has offline (EGM96 here: PROJ lacks NAVD88's GEOID grids), as an
    independent pyproj transformation of every point says; the note names the geoid.
    (Taken as ellipsoidal before, the points sat 20.66 m too high.)"""
    src = DATA / "pdal_4_6_crop.las"
    r = tile_point_cloud(src, tmp_path / "out", settings=SMALL)
    assert r.crs == "EPSG:2903+EPSG:6360"
    assert "NAVD88" in r.height_note and "EGM96 geoid (egm96_15)" in r.height_note
    assert "us_noaa_g1999u06.tif" in r.height_note  # the national geoid PROJ would use
    pts = check_output(src, tmp_path / "out", r)
    s = source_points(src)
    back = to_source(pts["ecef"], resolve_crs(inspect_source(src), None), 1200 / 3937)
    m = match_to_source(s, back, 0.01, got=pts)
    # expected, from the file's own CRS: PROJ turns NAVD88 feet into metres of a geoid
    # height (EGM96 height: the geoid taken for NAVD88's), then EGM96 makes them ellipsoidal
    compound = CRS.from_user_input("EPSG:2903+6360")
    assert laspy.open(src).header.parse_crs().equals(compound.sub_crs_list[0])
    lon, lat, height = Transformer.from_crs(compound, "EPSG:4326+5773", always_xy=True
                                            ).transform(*s["xyz"].T)
    geoid = Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=vgridshift +grids={egm96_grid()} +multiplier=1 "
        "+step +proj=unitconvert +xy_in=rad +xy_out=deg")
    _, _, h = geoid.transform(lon, lat, height)
    g = ecef_to_geodetic(pts["ecef"])
    assert np.abs(g[:, 2] - np.asarray(h)[m]).max() < 0.01
    assert np.abs(g[:, 0] - np.asarray(lon)[m]).max() < 1e-7
    assert np.abs(g[:, 1] - np.asarray(lat)[m]).max() < 1e-7
    # the geoid lies about 21 m below the ellipsoid there: not the heights as given
    assert 20 < (s["xyz"][m, 2] * 1200 / 3937 - g[:, 2]).mean() < 22


def test_a_geoid_proj_has_offline_is_used_and_named(tmp_path: Path) -> None:
    """Where PROJ has the geoid of the vertical datum offline, its transformation is used and
    the note names its grid. PROJ's own data has no geoid grids, so the EGM96 grid of
    proj-data is put in a PROJ data directory for a fresh process (PROJ knows it as
    us_nga_egm96_15.tif, the grid of EGM96 height, EPSG:5773)."""
    import subprocess
    import sys

    grid = egm96_grid()
    if grid is None:
        pytest.skip("EGM96 grid (proj-data) not installed")
    shutil.copy(grid, tmp_path / grid.name)
    code = f"""
import numpy as np, pyproj
pyproj.datadir.append_data_dir({str(tmp_path)!r})
from tiler.crs import FromWgs84, ToWgs84, geoid_undulation
to = ToWgs84("EPSG:32612+5773")
assert to.policy.proj is not None, to.policy.note
assert "us_nga_egm96_15.tif" in to.policy.note, to.policy.note
x, y, z = np.array([515000.0, 515400.0]), np.array([4918000.0, 4918400.0]), np.array([10., 90.])
lon, lat, h = to(x, y, z)
assert np.abs(h - (z + geoid_undulation(lon, lat))).max() < 0.01, h
back = FromWgs84("EPSG:32612+5773")(lon, lat, h)
assert np.abs(np.column_stack(back) - np.column_stack([x, y, z])).max() < 1e-6
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_acquisition_time_falls_back_to_header_date(tmp_path: Path) -> None:
    # GPS week time (no absolute date) and a header date: the header date
    r = tile_point_cloud(DATA / "pdal_autzen_trim.laz", tmp_path / "a")
    assert r.acquired_at == dt.datetime(2015, 9, 10, tzinfo=dt.UTC)
    # neither: unknown
    r = tile_point_cloud(DATA / "pdal_1.2-with-color.las", tmp_path / "b", crs=AUTZEN_WKT)
    assert r.acquired_at is None


@pytest.mark.parametrize("fmt", list(range(11)))
def test_every_point_format_with_extra_bytes(tmp_path: Path, fmt: int) -> None:
    """LAS 1.2 formats 0-3, 1.3 formats 4-5 (waveform) and 1.4 formats 6-10, with an
    extra-bytes dimension, as LAS (formats 0-5) or LAZ (6-10)."""
    version = "1.4" if fmt >= 6 else "1.3" if fmt >= 4 else "1.2"
    header = laspy.LasHeader(point_format=fmt, version=version)
    header.add_extra_dim(laspy.ExtraBytesParams(name="reflectance", type=np.float32))
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array([500000.0, 2510000.0, 0.0])
    header.add_crs(CRS.from_epsg(4547))
    rng = np.random.default_rng(fmt)
    n = 3000
    las = laspy.LasData(header)
    las.points = laspy.ScaleAwarePointRecord.zeros(n, header=header)
    las.x = 500000 + rng.uniform(0, 300, n)
    las.y = 2510000 + rng.uniform(0, 300, n)
    las.z = rng.uniform(10, 60, n)
    las.intensity = rng.integers(0, 65535, n).astype(np.uint16)
    las.classification = rng.integers(0, 31 if fmt < 6 else 255, n).astype(np.uint8)
    las.reflectance = rng.random(n).astype(np.float32)
    if "red" in las.point_format.dimension_names:
        las.red, las.green, las.blue = (rng.integers(0, 65535, n).astype(np.uint16)
                                        for _ in range(3))
    src = tmp_path / ("p.laz" if fmt >= 6 else "p.las")
    las.write(src)
    r = tile_point_cloud(src, tmp_path / "out", settings=SMALL)
    check_output(src, tmp_path / "out", r)
    assert r.colour == ("u16" if "red" in las.point_format.dimension_names else "none")


def test_crs_transformers_are_made_once_and_give_the_same_coordinates() -> None:
    """PROJ's operation search for CGCS2000 / Gauss-Kruger is made once per process; the
    shared transformer gives what a fresh one gives, both ways."""
    from pyproj import Transformer

    from tiler.crs import FromWgs84, ToWgs84

    a, b = ToWgs84("EPSG:4547"), ToWgs84("EPSG:4547")
    assert a._tf is b._tf
    assert FromWgs84("EPSG:4547")._tf is FromWgs84("EPSG:4547")._tf
    x, y = np.array([500000.0, 512345.6]), np.array([2510000.0, 2498765.4])
    lon, lat, _ = a(x, y, np.zeros(2))
    fresh = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)
    np.testing.assert_allclose(np.column_stack([lon, lat]),
                               np.column_stack(fresh.transform(x, y)), atol=1e-12)
    back = FromWgs84("EPSG:4547")(lon, lat, np.zeros(2))
    np.testing.assert_allclose(back[0], x, atol=1e-4)
    np.testing.assert_allclose(back[1], y, atol=1e-4)
