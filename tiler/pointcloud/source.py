"""Opening LAS / LAZ / COPC files: header checks, CRS, and chunked reading of point ranges.

Everything that can be refused from the header and the file size is refused here, before any
point is decoded, so a bad upload fails in milliseconds with a reason the operator can act on.
Point ranges are read by worker processes (LAZ decoding happens there, never in a process that
forks afterwards: lazrs' parallel backend starts threads, and fork after threads deadlocks).

LAZ with variable-size chunks (COPC, and any writer that closes chunks where it likes) is never
read through ``seek``: lazrs 0.8 positions itself inside the chunk at ``index % points of that
chunk``, right only when every chunk has the same size. On PDAL's lone-star.copc.laz that
returned the points of another place in the file (or undecodable bytes) for 12% of the points.
Such files are decoded chunk by chunk from their chunk table instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import laspy
import lazrs
import numpy as np
from laspy.copc import load_octree_for_query
from pyproj import CRS
from pyproj.crs import CompoundCRS, Datum, VerticalCRS
from pyproj.database import Unit, get_units_map, query_crs_info
from pyproj.enums import PJType

from tiler.crs import CrsError, horizontal_part, parse_crs
from tiler.errors import (
    CorruptFileError,
    EmptyInputError,
    InvalidCrsError,
    MissingCrsError,
    NotPointCloudError,
    PointCountMismatchError,
    TruncatedFileError,
)

LAZ_VLR_RECORD_ID = 22204
# Fields we use; skipping the rest lets lazrs leave those layers of LAS 1.4 formats 6-10
# compressed (they are stored in separate layers there). GPS time is only read for the
# preview sample (the survey's start time): skipping its layer in the full pass makes LAZ
# decoding faster (benchmarks/RESULTS.md).
_S = laspy.DecompressionSelection
_SELECTION = _S.XY_RETURNS_CHANNEL | _S.Z | _S.CLASSIFICATION | _S.INTENSITY | _S.RGB
_SELECTION_GPS = _SELECTION | _S.GPS_TIME
GPS_EPOCH = dt.datetime(1980, 1, 6, tzinfo=dt.UTC)
# GPS time runs ahead of UTC by the leap seconds since 1980: (first GPS second it applies, offset)
_LEAP = [(0, 0), (46828800, 1), (78364801, 2), (109900802, 3), (173059203, 4), (252028804, 5),
         (315187205, 6), (346723206, 7), (393984007, 8), (425520008, 9), (457056009, 10),
         (504489610, 11), (551750411, 12), (599184012, 13), (820108813, 14), (914803214, 15),
         (1025136015, 16), (1119744016, 17), (1167264017, 18)]


@dataclass(frozen=True)
class SourceInfo:
    """What the header says, checked against the file."""

    path: Path
    compressed: bool
    version: str
    point_format: int
    point_count: int
    record_length: int
    offset_to_points: int
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    mins: tuple[float, float, float]
    maxs: tuple[float, float, float]
    has_rgb: bool
    has_gps_time: bool
    adjusted_gps_time: bool
    creation_date: dt.date | None
    laz_chunk_size: int | None  # None: variable-size chunks (COPC) or not compressed
    file_crs_wkt: str | None
    laz_vlr: bytes | None = None  # the LASzip VLR's record data (compressed files)
    # variable-size chunks only: (points, bytes) of each chunk, from the file's chunk table
    chunks: tuple[tuple[int, int], ...] | None = None
    # COPC only: the octree level of each chunk (a chunk is one node of the hierarchy)
    chunk_levels: tuple[int, ...] | None = None

    def chunk_starts(self) -> np.ndarray:
        """Variable-size chunks: index of the first point of each chunk, then the count."""
        assert self.chunks is not None
        return np.r_[0, np.cumsum([c[0] for c in self.chunks], dtype=np.int64)]


def _open(path: Path, gps: bool = False) -> laspy.LasReader:
    return laspy.open(path, laz_backend=laspy.LazBackend.Lazrs,
                      decompression_selection=_SELECTION_GPS if gps else _SELECTION)


def inspect_source(path: Path) -> SourceInfo:
    """Read and check the header. Raises a :class:`~tiler.errors.TilerInputError` subclass."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise NotPointCloudError(f"{path.name}: no such file") from exc
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"LASF":
        what = "an empty file" if size == 0 else f"a file starting with {head!r}"
        raise NotPointCloudError(
            f"{path.name} is not a LAS or LAZ point cloud ({what}, where a LAS file starts with "
            "'LASF'): export the survey as .las or .laz and upload that"
        )
    try:
        reader = _open(path)
    except Exception as exc:  # laspy raises several types for a broken header
        raise CorruptFileError(
            f"{path.name}: the LAS header cannot be read ({exc}); the file is damaged or "
            "truncated, upload it again"
        ) from exc
    with reader:
        h = reader.header
        pf = h.point_format
        count = int(h.point_count)
        dims = set(pf.dimension_names)
        compressed = bool(pf.id & 0x80) or reader.header.are_points_compressed
        chunk = None
        laz_vlr = None
        for v in h.vlrs:
            if v.record_id == LAZ_VLR_RECORD_ID and len(v.record_data_bytes()) >= 16:
                laz_vlr = bytes(v.record_data_bytes())
                (chunk,) = struct.unpack_from("<I", laz_vlr, 12)
                if chunk == 0xFFFFFFFF:
                    chunk = None
        try:
            crs = h.parse_crs()
        except Exception:
            crs = None
        if crs is not None and not (crs.is_compound or crs.is_vertical):
            with contextlib.suppress(Exception):  # keys PROJ cannot use: horizontal only
                crs = _with_vertical_from_geokeys(crs, h)
        info = SourceInfo(
            path=path,
            compressed=compressed,
            version=str(h.version),
            point_format=int(pf.id),
            point_count=count,
            record_length=int(pf.size),
            offset_to_points=int(h.offset_to_point_data),
            scales=tuple(float(v) for v in h.scales),
            offsets=tuple(float(v) for v in h.offsets),
            mins=tuple(float(v) for v in h.mins),
            maxs=tuple(float(v) for v in h.maxs),
            has_rgb={"red", "green", "blue"} <= dims,
            has_gps_time="gps_time" in dims,
            adjusted_gps_time=bool(int(h.global_encoding.value) & 1),
            creation_date=h.creation_date,
            laz_chunk_size=chunk if compressed else None,
            file_crs_wkt=crs.to_wkt() if crs is not None else None,
            laz_vlr=laz_vlr if compressed else None,
        )
        evlr_start = int(getattr(h, "start_of_first_evlr", 0) or 0)
        # LAS 1.3+ may keep waveform packets right after the points: they end the points too
        wave = int(getattr(h, "start_of_waveform_data_packet_record", 0) or 0)
        if wave > info.offset_to_points and (not evlr_start or wave < evlr_start):
            evlr_start = wave
    if count == 0:
        raise EmptyInputError(f"{path.name} holds no points (its header says 0): nothing to show")
    _check_size(info, size, evlr_start)
    if info.compressed and info.laz_chunk_size is None and info.laz_vlr is not None:
        info = _with_chunk_table(info, size)
    if not all(np.isfinite(info.mins + info.maxs)) or any(
            lo > hi for lo, hi in zip(info.mins, info.maxs, strict=True)):
        raise CorruptFileError(f"{path.name}: the header's bounds are not valid numbers; "
                               "the file is damaged")
    return info


# GeoTIFF keys of the vertical CRS (GeoTIFF 1.1): its EPSG code, datum and unit
_VERTICAL_CS_KEY, _VERTICAL_DATUM_KEY, _VERTICAL_UNITS_KEY = 4096, 4098, 4099
_USER_DEFINED = 32767


def _with_vertical_from_geokeys(horizontal: CRS, header: laspy.LasHeader) -> CRS:
    """The compound CRS a LAS file's GeoTIFF keys declare, or ``horizontal`` alone.

    laspy's ``parse_crs`` reads the horizontal CRS only, so the vertical datum (NAVD88 in US
    survey feet in PDAL's 4_6_crop.las) was lost and orthometric heights were taken as
    ellipsoidal. Writers mix up the keys: 4_6_crop.las puts NAVD88's datum code (5103) in
    the vertical CS key and the CRS code (5703) in the datum key, so both codes are tried
    as a vertical CRS, then as a vertical datum; the unit key wins over the CRS's unit.
    """
    keys: dict[int, int] = {}
    for vlr in header.vlrs:
        for key in getattr(vlr, "geo_keys", None) or ():
            if key.tiff_tag_location == 0:  # the value is in the key itself
                keys[int(key.id)] = int(key.value_offset)
    codes = [keys[k] for k in (_VERTICAL_CS_KEY, _VERTICAL_DATUM_KEY)
             if 0 < keys.get(k, 0) < _USER_DEFINED]
    if not codes:
        return horizontal
    vertical = None
    for code in codes:
        with contextlib.suppress(Exception):  # not a CRS code: tried as a datum below
            c = CRS.from_epsg(code)
            if c.is_vertical:
                vertical = c
                break
    if vertical is None:
        for code in codes:
            with contextlib.suppress(Exception):
                datum = Datum.from_epsg(code)
                if datum.type_name == "Vertical Reference Frame":
                    vertical = VerticalCRS(name=f"{datum.name} height", datum=datum)
                    break
    if vertical is None:
        return horizontal
    unit = _LINEAR_UNITS.get(str(keys.get(_VERTICAL_UNITS_KEY, "")))
    have = vertical.axis_info[0].unit_conversion_factor if vertical.axis_info else 1.0
    if unit is not None and abs(unit.conv_factor - have) > 1e-12:
        vertical = _vertical_in_unit(vertical, unit)
    hcode = horizontal.to_authority(min_confidence=90)
    vcode = vertical.to_authority(min_confidence=90)
    if vcode and hcode and vcode[0] == hcode[0] == "EPSG":
        with contextlib.suppress(Exception):
            return CRS.from_user_input(f"EPSG:{hcode[1]}+{vcode[1]}")
    return CompoundCRS(name=f"{horizontal.name} + {vertical.name}",
                       components=[horizontal, vertical])


def _vertical_in_unit(vertical: CRS, unit: Unit) -> CRS:
    """``vertical`` with heights in ``unit``: the registered CRS where EPSG has one (NAVD88
    height in US survey feet is EPSG:6360), else one made here."""
    datum = vertical.datum.name if vertical.datum is not None else ""
    code = _registered_vertical(vertical.name.split(" (")[0], datum, unit.conv_factor)
    if code is not None:
        return CRS.from_epsg(code)
    return VerticalCRS(
        name=f"{vertical.name} ({unit.name})", datum=vertical.datum,
        vertical_cs={"type": "CoordinateSystem", "subtype": "vertical", "axis": [{
            "name": "Gravity-related height", "abbreviation": "H", "direction": "up",
            "unit": {"type": "LinearUnit", "name": unit.name,
                     "conversion_factor": unit.conv_factor}}]})


@lru_cache(maxsize=32)
def _registered_vertical(base: str, datum: str, unit_m: float) -> int | None:
    for found in query_crs_info(auth_name="EPSG", pj_types=PJType.VERTICAL_CRS):
        if not found.name.startswith(base) or found.deprecated:
            continue
        cand = CRS.from_epsg(int(found.code))
        if (cand.datum is not None and cand.datum.name == datum and cand.axis_info
                and abs(cand.axis_info[0].unit_conversion_factor - unit_m) < 1e-12):
            return int(found.code)
    return None


_LINEAR_UNITS = {u.code: u for u in get_units_map(auth_name="EPSG", category="linear").values()}


def _check_size(info: SourceInfo, size: int, evlr_start: int) -> None:
    name = info.path.name
    n, rec, off = info.point_count, info.record_length, info.offset_to_points
    if off > size:
        raise TruncatedFileError(f"{name} ends before its first point: the upload is truncated")
    if not info.compressed:
        end = evlr_start if off < evlr_start <= size else size
        have = (end - off) // rec
        if have < n:
            if evlr_start and evlr_start > size:
                # the extended records after the points were cut off too
                pass
            raise TruncatedFileError(
                f"{name} ends after {have} of {n} points: the upload is truncated (or the "
                "header's point count is wrong); upload the file again")
        if have > n and (end - off) - n * rec >= rec:
            raise PointCountMismatchError(
                f"{name}: the header says {n} points but the file holds {have}; the header is "
                "wrong (the writing software did not update it). Repair it, e.g. with "
                "'lasinfo -repair' or 'pdal translate', and upload again")
        return
    # LAZ: the first 8 bytes of the point data locate the chunk table written at the end.
    with open(info.path, "rb") as fh:
        fh.seek(off)
        raw = fh.read(8)
        if len(raw) < 8:
            raise TruncatedFileError(f"{name} ends before its first point: the upload is truncated")
        (table_at,) = struct.unpack("<q", raw)
        if table_at == -1:
            return  # written by a streaming compressor without a table: decoding will tell
        if table_at + 8 > size:
            raise TruncatedFileError(
                f"{name} is cut short: it is {size} bytes but its compressed points run to "
                f"byte {table_at}; the upload is truncated, upload the file again")
        fh.seek(table_at)
        _version, n_chunks = struct.unpack("<II", fh.read(8))
    if info.laz_chunk_size:
        expected = -(-n // info.laz_chunk_size)
        if n_chunks != expected:
            held = f"{(n_chunks - 1) * info.laz_chunk_size + 1}-{n_chunks * info.laz_chunk_size}"
            raise PointCountMismatchError(
                f"{name}: the header says {n} points but the file holds {n_chunks} compressed "
                f"chunks of {info.laz_chunk_size} ({held} points); the header is wrong or "
                "the file is damaged. Repair it, e.g. with 'lasinfo -repair', and upload again")


def _with_chunk_table(info: SourceInfo, size: int) -> SourceInfo:
    """Read the chunk table of a LAZ file with variable-size chunks (and, for COPC, the
    octree level of each chunk) and check it against the header and the file size."""
    name = info.path.name
    assert info.laz_vlr is not None
    try:
        with open(info.path, "rb") as fh:
            fh.seek(info.offset_to_points)
            table = lazrs.read_chunk_table(fh, lazrs.LazVlr(info.laz_vlr))
    except Exception as exc:  # lazrs raises its own error type, or OSError
        raise CorruptFileError(
            f"{name}: the table of its compressed chunks cannot be read ({exc}); files with "
            "chunks of varying size (such as COPC) cannot be decoded without it. The file is "
            "damaged or truncated: upload it again") from exc
    chunks = tuple((int(p), int(b)) for p, b in table)
    held = sum(p for p, _ in chunks)
    if held != info.point_count:
        raise PointCountMismatchError(
            f"{name}: the header says {info.point_count} points but its {len(chunks)} "
            f"compressed chunks hold {held}; the header is wrong or the file is damaged. "
            "Repair it (e.g. 'pdal translate') and upload again")
    end = info.offset_to_points + 8 + sum(b for _, b in chunks)
    if end > size:
        raise TruncatedFileError(
            f"{name} is cut short: it is {size} bytes but its compressed points run to byte "
            f"{end}; the upload is truncated, upload the file again")
    return replace(info, chunks=chunks, chunk_levels=_copc_levels(info, chunks))


def _copc_levels(info: SourceInfo, chunks: tuple[tuple[int, int], ...]) -> tuple[int, ...] | None:
    """The hierarchy level of each chunk of a COPC file (None for other files, or when the
    hierarchy cannot be read: the file is then read like any LAZ with variable chunks)."""
    try:
        with laspy.CopcReader.open(info.path) as reader:
            nodes = load_octree_for_query(reader.source, reader.copc_info, reader.root_page)
    except Exception:  # not COPC, or a hierarchy we cannot use: chunk order is enough
        return None
    offsets = info.offset_to_points + 8 + np.r_[0, np.cumsum([b for _, b in chunks])][:-1]
    level_at = {int(nd.offset): int(nd.key.level) for nd in nodes if nd.point_count > 0}
    levels = tuple(level_at.get(int(o), -1) for o in offsets)
    return None if -1 in levels else levels


def resolve_crs(info: SourceInfo, given: str | None) -> CRS:
    """The CRS to use: the caller's (it wins), else the file's; refuse when there is none."""
    if given:
        try:
            return parse_crs(given)
        except CrsError as exc:
            raise InvalidCrsError(f"the coordinate system {given!r} is not known: {exc}") from exc
    if info.file_crs_wkt is None:
        raise MissingCrsError(
            f"{info.path.name} does not say which coordinate system its coordinates are in "
            "(no WKT or GeoTIFF CRS record in the file): give it with the upload, e.g. "
            "crs=EPSG:4547 for CGCS2000 / 3-degree Gauss-Kruger CM 114E")
    try:
        return parse_crs(info.file_crs_wkt)
    except CrsError as exc:
        raise InvalidCrsError(f"{info.path.name}: the file's coordinate system cannot be "
                              f"understood ({exc}); give one with the upload") from exc


def z_to_metres(crs: CRS) -> float:
    """Factor turning the file's Z into metres.

    A vertical CRS (part of a compound one) says its unit; otherwise heights are in the
    horizontal unit, which is what LAS software does with feet-based state-plane systems.
    """
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if sub.is_vertical and sub.axis_info:
                return float(sub.axis_info[0].unit_conversion_factor or 1.0)
    h = horizontal_part(crs)
    if h.is_projected and h.axis_info:
        return float(h.axis_info[0].unit_conversion_factor or 1.0)
    return 1.0


def acquisition_time(info: SourceInfo, gps_min: float | None) -> dt.datetime | None:
    """When the survey was flown: adjusted standard GPS time of the first point when the
    header's global encoding says the times are absolute, else the header's creation date."""
    if info.adjusted_gps_time and gps_min is not None and np.isfinite(gps_min) and gps_min != 0:
        gps_seconds = float(gps_min) + 1e9
        leap = max(off for start, off in _LEAP if gps_seconds >= start)
        when = GPS_EPOCH + dt.timedelta(seconds=gps_seconds - leap)
        latest = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
        if dt.datetime(1990, 1, 1, tzinfo=dt.UTC) < when < latest:
            return when
    if info.creation_date is not None and info.creation_date.year >= 1990:
        d = info.creation_date
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
    return None


@dataclass
class PointBlock:
    """Points of one chunk in source units (z still in the file's unit)."""

    start: int  # index in the file of the first point
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    rgb: np.ndarray | None  # (n, 3) uint16
    intensity: np.ndarray  # uint16
    classification: np.ndarray  # uint8
    gps_time: np.ndarray | None
    index: np.ndarray | None = None  # file index of each point, where not contiguous


def read_range(info: SourceInfo, start: int, stop: int, chunk: int,
               gps: bool = False) -> Iterator[PointBlock]:
    """Decode points ``start``..``stop`` in chunks of at most ``chunk`` points (GPS time only
    with ``gps``: the full pass does not need it)."""
    if info.chunks is not None:
        yield from _read_variable_chunks(info, start, stop, chunk, gps)
        return
    name = info.path.name
    try:
        reader = _open(info.path, gps)
    except Exception as exc:
        raise CorruptFileError(f"{name}: the file cannot be opened ({exc})") from exc
    with reader:
        pos = start
        try:
            if start:
                reader.seek(start)
            while pos < stop:
                pts = reader.read_points(min(chunk, stop - pos))
                if len(pts) == 0:
                    raise TruncatedFileError(
                        f"{name} ends after {pos} of {info.point_count} points: the upload is "
                        "truncated (or the header's point count is wrong); upload it again")
                yield _block(pts, pos, info, gps)
                pos += len(pts)
        except (TruncatedFileError, CorruptFileError):
            raise
        except Exception as exc:
            if info.compressed:
                bad = _first_bad_point(info, pos, min(stop, pos + chunk))
                where = f"near point {bad}"
                if info.laz_chunk_size:
                    cs = info.laz_chunk_size
                    k = bad // cs
                    n_chunks = -(-info.point_count // cs)
                    last = min(info.point_count, (k + 1) * cs) - 1
                    where = f"in compressed chunk {k + 1} of {n_chunks} (points {k * cs}-{last})"
                raise CorruptFileError(
                    f"{name}: the compressed points are damaged {where} and cannot be decoded "
                    f"({exc}); the file is corrupt, upload it again") from exc
            raise TruncatedFileError(
                f"{name} ends after about {pos} of {info.point_count} points ({exc}): the upload "
                "is truncated") from exc


def _read_variable_chunks(info: SourceInfo, start: int, stop: int, chunk: int,
                          gps: bool) -> Iterator[PointBlock]:
    """LAZ with variable-size chunks: decode whole chunks located by the chunk table (groups
    of consecutive chunks up to ``chunk`` points per call) and cut out ``start``..``stop``."""
    assert info.chunks is not None and info.laz_vlr is not None
    name = info.path.name
    counts = np.array([c[0] for c in info.chunks], np.int64)
    first = info.chunk_starts()
    byte_at = info.offset_to_points + 8 + np.r_[0, np.cumsum([c[1] for c in info.chunks])]
    n_chunks = len(counts)
    with laspy.open(info.path) as reader:
        pf = reader.header.point_format
    selection = (_SELECTION_GPS if gps else _SELECTION).to_lazrs()
    k = max(0, int(np.searchsorted(first, start, side="right")) - 1)
    with open(info.path, "rb") as fh:
        while k < n_chunks and first[k] < stop:
            j = k + 1  # chunks k..j-1 in one call: at least one, then up to ``chunk`` points
            while j < n_chunks and first[j] < stop and first[j + 1] - first[k] <= chunk:
                j += 1
            fh.seek(int(byte_at[k]))
            data = fh.read(int(byte_at[j] - byte_at[k]))
            if len(data) < byte_at[j] - byte_at[k]:
                raise TruncatedFileError(
                    f"{name} ends inside compressed chunk {k + 1} of {n_chunks}: the upload "
                    "is truncated, upload it again")
            out = np.zeros(int(first[j] - first[k]) * pf.size, np.uint8)
            try:
                lazrs.decompress_points_with_chunk_table(data, info.laz_vlr, out,
                                                         list(info.chunks[k:j]), selection)
            except Exception as exc:  # lazrs.LazrsError: damaged compressed data
                c = _first_bad_chunk(info, data, k, j, pf.size)
                raise CorruptFileError(
                    f"{name}: the compressed points are damaged in chunk {c + 1} of {n_chunks} "
                    f"(points {first[c]}-{first[c + 1] - 1}) and cannot be decoded ({exc}); "
                    "the file is corrupt, upload it again") from exc
            pts = laspy.PackedPointRecord.from_buffer(out, pf)
            a, b = int(max(start, first[k]) - first[k]), int(min(stop, first[j]) - first[k])
            for s in range(a, b, chunk):
                yield _block(pts[s:min(b, s + chunk)], int(first[k]) + s, info, gps)
            k = j


def _first_bad_chunk(info: SourceInfo, data: bytes, k: int, j: int, size: int) -> int:
    """Decode chunks ``k``..``j-1`` (whose bytes are ``data``) one by one, so the error names
    the damaged chunk."""
    assert info.chunks is not None and info.laz_vlr is not None
    at = 0
    for c in range(k, j):
        points, nbytes = info.chunks[c]
        try:
            lazrs.decompress_points_with_chunk_table(
                data[at:at + nbytes], info.laz_vlr, np.empty(points * size, np.uint8),
                [info.chunks[c]], _SELECTION.to_lazrs())
        except Exception:
            return c
        at += nbytes
    return k


def read_rows(info: SourceInfo, ranges: list[tuple[int, int]]) -> PointBlock:
    """Uncompressed LAS only: gather many short stretches through a memory map (one laspy
    read call per stretch cost far more than the reading itself: benchmarks/RESULTS.md)."""
    with laspy.open(info.path) as reader:
        pf = reader.header.point_format
    rows = np.memmap(info.path, dtype=pf.dtype(), mode="r", offset=info.offset_to_points,
                     shape=(info.point_count,))
    # sorted and unique: stretches may touch when the sample is most of the file
    idx = np.unique(np.concatenate([np.arange(s, s + c) for s, c in ranges]))
    pts = laspy.PackedPointRecord(np.array(rows[idx]), pf)
    del rows
    blk = _block(pts, -1, info, gps=True)
    blk.index = idx
    return blk


def _first_bad_point(info: SourceInfo, start: int, stop: int) -> int:
    """Re-read ``start..stop`` one LAZ chunk (or 10 000 points) at a time to find where
    decoding fails, so the error names the damaged part of the file."""
    step = info.laz_chunk_size or 10_000
    pos = start
    try:
        with _open(info.path) as reader:
            if pos:
                reader.seek(pos)
            while pos < stop:
                n = len(reader.read_points(min(step - pos % step, stop - pos)))
                if n == 0:
                    return pos
                pos += n
    except Exception:
        return pos
    return start


def _block(pts: laspy.PackedPointRecord, start: int, info: SourceInfo,
           gps: bool = False) -> PointBlock:
    arr = pts.array
    sx, sy, sz = info.scales
    ox, oy, oz = info.offsets
    x = arr["X"] * sx + ox
    y = arr["Y"] * sy + oy
    z = arr["Z"] * sz + oz
    rgb = None
    if info.has_rgb:
        rgb = np.empty((len(arr), 3), np.uint16)
        rgb[:, 0], rgb[:, 1], rgb[:, 2] = arr["red"], arr["green"], arr["blue"]
    cls = np.asarray(pts.classification, dtype=np.uint8)
    return PointBlock(
        start=start, x=x, y=y, z=z, rgb=rgb,
        intensity=np.asarray(arr["intensity"], np.uint16),
        classification=cls,
        gps_time=np.asarray(arr["gps_time"]) if info.has_gps_time and gps else None,
    )
