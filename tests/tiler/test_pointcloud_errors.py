"""Bad uploads: every one is refused with a typed error and a reason a drone operator can act
on, and leaves no tileset.json behind. The bad files are made here from the real samples."""

from __future__ import annotations

import struct
from pathlib import Path

import laspy
import numpy as np
import pytest
from pyproj import CRS

from tiler.errors import (
    CorruptFileError,
    EmptyInputError,
    ImpossibleCoordinatesError,
    InvalidCrsError,
    MissingCrsError,
    NotPointCloudError,
    PointCountMismatchError,
    TilerInputError,
    TruncatedFileError,
)
from tiler.pointcloud import Settings, tile_point_cloud

DATA = Path(__file__).resolve().parents[1] / "data" / "lidar"
COLOR_LAS = DATA / "pdal_1.2-with-color.las"  # 1,065 points, no CRS
AUTZEN = DATA / "pdal_autzen_trim.laz"  # 110,000 points in 3 LAZ chunks of 50,000
AUTZEN_WKT = CRS.from_user_input(laspy.open(AUTZEN).header.parse_crs()).to_wkt()


def refused(tmp_path: Path, src: Path, kind: type[TilerInputError], *words: str,
            **kwargs) -> str:
    out = tmp_path / "out"
    with pytest.raises(kind) as info:
        tile_point_cloud(src, out, **kwargs)
    message = str(info.value)
    for w in words:
        assert w in message, message
    assert isinstance(info.value, ValueError)
    assert not (out / "tileset.json").exists(), "a refused upload left a tileset behind"
    return message


def _patch(src: Path, dst: Path, offset: int, fmt: str, value: int) -> Path:
    data = bytearray(src.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    dst.write_bytes(bytes(data))
    return dst


def test_not_a_point_cloud(tmp_path: Path) -> None:
    p = tmp_path / "flight.las"
    p.write_text("time,lat,lon\n1,22.7,114.0\n")
    refused(tmp_path, p, NotPointCloudError, "not a LAS or LAZ")
    e = tmp_path / "empty.laz"
    e.write_bytes(b"")
    refused(tmp_path, e, NotPointCloudError, "empty file")


def test_zero_points(tmp_path: Path) -> None:
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.add_crs(CRS.from_epsg(4547))
    p = tmp_path / "none.las"
    laspy.LasData(header).write(p)
    refused(tmp_path, p, EmptyInputError, "no points")


def test_truncated_las(tmp_path: Path) -> None:
    hdr = laspy.open(COLOR_LAS).header
    size = hdr.offset_to_point_data + 812 * hdr.point_format.size + 5
    p = tmp_path / "cut.las"
    p.write_bytes(COLOR_LAS.read_bytes()[:size])
    refused(tmp_path, p, TruncatedFileError, "ends after 812 of 1065 points", "truncated",
            crs=AUTZEN_WKT)


def test_truncated_laz(tmp_path: Path) -> None:
    p = tmp_path / "cut.laz"
    p.write_bytes(AUTZEN.read_bytes()[:400_000])
    refused(tmp_path, p, TruncatedFileError, "truncated")


def test_corrupt_laz_chunk_after_preview(tmp_path: Path) -> None:
    """Damage the middle of the second compressed chunk: the preview (chunk heads) can be
    published, the full pass fails, and the published preview is taken back."""
    data = bytearray(AUTZEN.read_bytes())
    data[300_000:300_400] = bytes(400)
    p = tmp_path / "bad.laz"
    p.write_bytes(bytes(data))
    previews: list[Path] = []
    msg = refused(tmp_path, p, CorruptFileError, "damaged", "chunk",
                  settings=Settings(sample_points=1500), on_preview=previews.append)
    assert "corrupt" in msg
    assert len(previews) == 1  # it had been published, and was taken back


def test_header_point_count_lies(tmp_path: Path) -> None:
    # LAS 1.2: the point count is a uint32 at byte 107
    fewer = _patch(COLOR_LAS, tmp_path / "fewer.las", 107, "<I", 500)
    refused(tmp_path, fewer, PointCountMismatchError, "header says 500 points", "holds 1065",
            crs=AUTZEN_WKT)
    more = _patch(COLOR_LAS, tmp_path / "more.las", 107, "<I", 2000)
    refused(tmp_path, more, TruncatedFileError, "ends after 1065 of 2000 points",
            crs=AUTZEN_WKT)
    # LAS 1.4: the 64-bit count at byte 247 (and the legacy one at 107)
    src14 = DATA / "laspy_simple1_4.las"
    lie = _patch(src14, tmp_path / "lie14.las", 247, "<Q", 20_000)
    lie = _patch(lie, lie, 107, "<I", 20_000)
    refused(tmp_path, lie, PointCountMismatchError, "header says 20000 points",
            crs="EPSG:4547")
    # LAZ: 60,000 points would fill 2 chunks of 50,000, the file has 3
    laz = _patch(AUTZEN, tmp_path / "lie.laz", 107, "<I", 60_000)
    refused(tmp_path, laz, PointCountMismatchError, "header says 60000 points")


def test_no_crs(tmp_path: Path) -> None:
    refused(tmp_path, DATA / "pdal_simple.laz", MissingCrsError,
            "does not say which coordinate system", "EPSG:4547")


def test_false_crs_label_is_refused(tmp_path: Path) -> None:
    # says EPSG:4326, holds x 1..226, y 1..100: latitude 100 is impossible
    refused(tmp_path, DATA / "laspy_simple1_4.las", ImpossibleCoordinatesError,
            "not possible", "latitude")
    # says EPSG:3950 (France), lands in Texas
    refused(tmp_path, DATA / "py3dtiles_with_srs_3950.las", ImpossibleCoordinatesError,
            "EPSG:3950", "is the CRS right?")


def test_wrong_crs_given(tmp_path: Path) -> None:
    # Autzen's feet in Oregon read as Gauss-Kruger metres around 114 E: outside that CRS
    refused(tmp_path, COLOR_LAS, ImpossibleCoordinatesError, "EPSG:4547", crs="EPSG:4547")
    refused(tmp_path, COLOR_LAS, InvalidCrsError, "not known", crs="EPSG:999999")


def test_points_outside_header_bounds(tmp_path: Path) -> None:
    las = laspy.read(COLOR_LAS)
    las.X[500] += 10_000_000  # one wild point 100 km away, header bounds not updated
    p = tmp_path / "wild.las"
    las.write(p, do_compress=False)
    data = bytearray(p.read_bytes())
    # restore the honest maxima (write() recomputed them): the header now lies about bounds
    hdr = laspy.open(COLOR_LAS).header
    struct.pack_into("<d", data, 179, float(hdr.maxs[0]))
    p.write_bytes(bytes(data))
    refused(tmp_path, p, CorruptFileError, "outside the bounds its header declares",
            crs=AUTZEN_WKT)
    assert np.isfinite(hdr.maxs).all()


def test_existing_tileset_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "v1"
    out.mkdir()
    (out / "tileset.json").write_text('{"previous": true}')
    with pytest.raises(FileExistsError):
        tile_point_cloud(AUTZEN, out)
    assert (out / "tileset.json").read_text() == '{"previous": true}'


def _declaring(src: Path, dst: Path, crs: str | None, z_factor: float = 1.0) -> Path:
    """A copy of a real file whose CRS records say ``crs`` (and heights times ``z_factor``)."""
    las = laspy.read(src)
    for v in [v for v in las.header.vlrs if v.user_id == "LASF_Projection"]:
        las.header.vlrs.remove(v)
    if crs is not None:
        las.header.add_crs(CRS.from_user_input(crs))
    if z_factor != 1.0:
        z = np.asarray(las.z) * z_factor
        las.header.offsets = np.array([*las.header.offsets[:2], 0.0])
        las.header.scales = np.array([*las.header.scales[:2], 0.01])
        las.z = z
    las.write(dst)
    return dst


def test_geocentric_label_on_map_coordinates_is_refused(tmp_path: Path) -> None:
    """PDAL's lone-star.copc.laz says EPSG:4978 (geocentric) but holds UTM 12N eastings and
    northings: read as geocentric they lie 1,433 km below the surface. Refused, with the
    likely cause and what to do; the same coordinates with the right CRS tile."""
    msg = refused(tmp_path, DATA / "pdal_lone-star.copc.laz", ImpossibleCoordinatesError,
                  "geocentric", "1,433 km below the Earth's surface",
                  "label is probably wrong", "crs=")
    assert "EPSG:4978" in msg  # the unnamed geocentric CRS of the file, recognised
    # a real file rewritten to declare EPSG:4978 (Autzen's Oregon feet)
    refused(tmp_path, _declaring(COLOR_LAS, tmp_path / "ecef.las", "EPSG:4978"),
            ImpossibleCoordinatesError, "EPSG:4978", "geocentric", "below the Earth's surface")


def test_coordinates_impossible_for_the_declared_crs_are_refused(tmp_path: Path) -> None:
    # geographic: Autzen's feet are no degrees
    refused(tmp_path, _declaring(COLOR_LAS, tmp_path / "deg.las", "EPSG:4326"),
            ImpossibleCoordinatesError, "EPSG:4326", "latitude")
    # far outside the CRS's area of use (UTM 12N metres: near the equator, not Arizona)
    refused(tmp_path, _declaring(COLOR_LAS, tmp_path / "utm.las", "EPSG:26912"),
            ImpossibleCoordinatesError, "EPSG:26912", "outside where", "crs=")
    # the right CRS, heights a hundred times too large (18 km up)
    refused(tmp_path, _declaring(COLOR_LAS, tmp_path / "high.las", None, 100.0),
            ImpossibleCoordinatesError, "km above the Earth's surface", "height unit",
            crs=AUTZEN_WKT)


def test_damaged_copc_is_refused(tmp_path: Path) -> None:
    """COPC (variable-size chunks, read through its chunk table): cut short, a chunk
    damaged, or a header point count that its chunks do not hold."""
    copc = DATA / "pdal_lone-star.copc.laz"
    data = copc.read_bytes()
    cut = tmp_path / "cut.copc.laz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    refused(tmp_path, cut, TruncatedFileError, "truncated", crs="EPSG:26912")
    hdr = laspy.open(copc).header
    bad = bytearray(data)
    at = hdr.offset_to_point_data + 8 + 1438 + 100_000  # inside the second chunk
    bad[at:at + 2000] = bytes(2000)
    p = tmp_path / "bad.copc.laz"
    p.write_bytes(bytes(bad))
    # zeros decode (to points far outside the header's bounds), or fail to decode
    refused(tmp_path, p, CorruptFileError, "damaged", crs="EPSG:26912")
    noise = bytearray(data)
    at = hdr.offset_to_point_data + 8 + 1438 + 100
    noise[at:at + 150_000] = np.random.default_rng(1).integers(0, 256, 150_000, np.uint8
                                                                ).tobytes()
    p.write_bytes(bytes(noise))
    refused(tmp_path, p, CorruptFileError, "damaged in chunk 2 of 15 (points 212-43073)",
            "cannot be decoded", crs="EPSG:26912")
    # LAS 1.4: the 64-bit point count at byte 247
    lie = _patch(copc, tmp_path / "lie.copc.laz", 247, "<Q", 600_000)
    refused(tmp_path, lie, PointCountMismatchError, "header says 600000 points",
            "chunks hold 518862", crs="EPSG:26912")
