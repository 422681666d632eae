"""Point-cloud test helpers: synthetic surveys, reading a tileset's points back, and
comparing them with the source file point by point.

The benchmark (benchmarks/lidar_vs_py3dtiles.py) uses :func:`write_survey` too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import laspy
import numpy as np
from helpers_tileset import iter_content
from pyproj import CRS

from tiler.crs import FromWgs84
from tiler.frames import ecef_to_geodetic


def write_survey(path: Path, n: int, *, crs: str = "EPSG:4547", x0: float = 500000.0,
                 y0: float = 2510000.0, size: float = 2000.0, seed: int = 7,
                 laz: bool | None = None, chunk: int = 2_000_000, rgb16: bool = True,
                 scale: float = 0.001) -> Path:
    """A synthetic drone survey (LAS 1.4, point format 7: RGB, intensity, classification,
    adjusted GPS time) over ``size`` x ``size`` metres: terrain, building blocks and trees,
    flown as east-west strips in time order like a real flight. Written in chunks, so 20 M
    points need little memory. ``laz`` defaults to the file suffix."""
    laz = path.suffix.lower() == ".laz" if laz is None else laz
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.array([scale, scale, scale])
    header.offsets = np.array([x0, y0, 0.0])
    header.add_crs(CRS.from_user_input(crs))
    header.global_encoding.gps_time_type = laspy.header.GpsTimeType.STANDARD
    header.creation_date = dt.date(2024, 5, 20)
    rng = np.random.default_rng(seed)
    lines = max(1, int(size // 100))
    t_start = 1_400_000_000.0 - 1e9  # adjusted standard GPS time: 2024-05-17
    with laspy.open(path, mode="w", header=header, do_compress=laz,
                    laz_backend=laspy.LazBackend.LazrsParallel if laz else None) as writer:
        done = 0
        while done < n:
            m = min(chunk, n - done)
            i = np.arange(done, done + m)
            line = (i * lines) // n
            frac = (i - line * (n / lines)) / (n / lines)
            along = np.where(line % 2 == 0, frac, 1 - frac) * size
            x = x0 + along + rng.normal(0, 0.3, m)
            y = y0 + (line + 0.5) * (size / lines) + rng.uniform(-60, 60, m)
            x = np.clip(x, x0, x0 + size)
            y = np.clip(y, y0, y0 + size)
            z = 50 + 10 * np.sin((x - x0) / 300) + 8 * np.cos((y - y0) / 250)
            cls = np.full(m, 2, np.uint8)
            bx, by = ((x - x0) // 60).astype(int), ((y - y0) // 60).astype(int)
            inb = ((x - x0) % 60 < 40) & ((y - y0) % 60 < 40) & ((bx * 7 + by * 13) % 5 < 2)
            roof = 12 + ((bx * 31 + by * 17) % 9) * 8.0
            z = np.where(inb, z + roof, z)
            cls[inb] = 6
            tree = ~inb & (rng.random(m) < 0.15)
            z = np.where(tree, z + rng.uniform(2, 15, m), z)
            cls[tree] = 5
            pts = laspy.ScaleAwarePointRecord.zeros(m, header=header)
            pts.x, pts.y, pts.z = x, y, z
            pts.classification = cls
            pts.intensity = (rng.integers(0, 4096, m) + np.where(inb, 20000, 0)).astype(np.uint16)
            r = np.where(inb, 180, np.where(tree, 40, 120)) + rng.integers(0, 50, m)
            g = np.where(inb, 170, np.where(tree, 130, 110)) + rng.integers(0, 50, m)
            b = np.where(inb, 160, np.where(tree, 40, 80)) + rng.integers(0, 50, m)
            mul = 256 if rgb16 else 1
            pts.red, pts.green, pts.blue = r * mul, g * mul, b * mul
            pts.gps_time = t_start + i / 240_000.0
            pts.return_number = np.ones(m, np.uint8)
            pts.number_of_returns = np.ones(m, np.uint8)
            writer.write_points(pts)
            done += m
    return path


def read_tileset_points(tileset: Path) -> dict[str, np.ndarray]:
    """Every point of every tile: ECEF positions and the attributes, plus a tile id."""
    from tiler.pointcloud.content import read_points_glb

    parts: dict[str, list[np.ndarray]] = {"ecef": [], "color": [], "intensity": [],
                                          "classification": [], "tile": []}
    for i, c in enumerate(iter_content(tileset)):
        d = read_points_glb(c.path.read_bytes())
        p = d["position"]
        parts["ecef"].append(p @ c.world[:3, :3].T + c.world[:3, 3])
        for k in ("color", "intensity", "classification"):
            if k in d:
                parts[k].append(d[k])
        parts["tile"].append(np.full(len(p), i))
    return {k: np.concatenate(v) for k, v in parts.items() if v}


def to_source(ecef: np.ndarray, crs: str | CRS, z_factor: float = 1.0,
              vertical: str | None = None) -> np.ndarray:
    """ECEF back to the source CRS (x easting, y northing, z in the file's unit)."""
    g = ecef_to_geodetic(ecef)
    x, y, z = FromWgs84(crs, vertical=vertical)(g[:, 0], g[:, 1], g[:, 2])
    return np.column_stack([x, y, z / z_factor])


def source_points(path: Path) -> dict[str, np.ndarray]:
    las = laspy.read(path)
    out = {"xyz": np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)]),
           "XYZ": np.column_stack([las.X, las.Y, las.Z]).astype(np.int64),
           "scales": np.asarray(las.header.scales), "offsets": np.asarray(las.header.offsets),
           "intensity": np.asarray(las.intensity),
           "classification": np.asarray(las.classification, np.uint8)}
    if "red" in las.point_format.dimension_names:
        out["rgb"] = np.column_stack([las.red, las.green, las.blue])
    return out


def match_to_source(src: dict[str, np.ndarray], got_xyz: np.ndarray,
                    tol: float | np.ndarray,
                    snap: bool = True, got: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Pair every read-back point with a distinct source point; return the source index of
    each read-back point. Asserts every pair is within ``tol`` (source units; one number or
    one per axis, e.g. degrees for x and y, metres for z).

    ``snap``: round to the source's integer grid (needs errors below half its scale, true
    for scales of 1 mm and coarser); otherwise nearest neighbours by brute force. With
    ``got`` (the read-back attributes), points at identical positions pair up by their
    attributes too, so duplicates do not pair crosswise."""
    n = len(src["xyz"])
    assert len(got_xyz) == n, f"{len(got_xyz)} points in the tiles, {n} in the source"
    if snap:
        # snap to the source's integer grid: identical triples pair up exactly (duplicates too)
        g = np.rint((got_xyz - src["offsets"]) / src["scales"]).astype(np.int64)
        s_keys, g_keys = [src["XYZ"]], [g]
        if got is not None:
            for k, sk in (("intensity", "intensity"), ("classification", "classification"),
                          ("color", "rgb")):
                if k in got and sk in src:
                    s_keys.append(np.asarray(src[sk], np.int64).reshape(n, -1))
                    g_keys.append(np.asarray(got[k], np.int64).reshape(n, -1))
        s_order = np.lexsort(np.hstack(s_keys).T[::-1])
        g_order = np.lexsort(np.hstack(g_keys).T[::-1])
        assert (src["XYZ"][s_order] == g[g_order]).all(), "read-back positions differ"
        match = np.empty(n, np.int64)
        match[g_order] = s_order
    else:  # fine scales (micro-feet, nano-degrees): nearest neighbour within tol
        t = np.broadcast_to(np.asarray(tol, float), (3,))
        match = _nearest(src["xyz"] / t, got_xyz / t, 1.0)
        assert len(np.unique(match)) == n, "several tile points matched one source point"
    err = np.abs(got_xyz - src["xyz"][match]) / np.asarray(tol, float)
    assert err.max() <= 1.0, f"position error {err.max():.2f} x the tolerance {tol}"
    return match


def _nearest(src: np.ndarray, got: np.ndarray, tol: float) -> np.ndarray:
    """Index of the nearest source point of each read-back point, searched among the source
    points whose x lies within ``tol`` (sorted x and a sliding window; no scipy needed)."""
    order = np.argsort(src[:, 0], kind="stable")
    xs = src[order, 0]
    lo = np.searchsorted(xs, got[:, 0] - tol, side="left")
    hi = np.searchsorted(xs, got[:, 0] + tol, side="right")
    best = np.full(len(got), -1, np.int64)
    best_d = np.full(len(got), np.inf)
    width = int((hi - lo).max(initial=0))
    for k in range(width):
        cand = lo + k
        ok = cand < hi
        idx = order[np.minimum(cand, len(order) - 1)]
        d = np.linalg.norm(src[idx] - got, axis=1)
        better = ok & (d < best_d)
        best[better] = idx[better]
        best_d[better] = d[better]
    assert (best >= 0).all(), f"{int((best < 0).sum())} tile points have no source point near"
    return best


def write_variable_chunk_laz(src: Path, dst: Path, sizes: list[int]) -> Path:
    """``src``'s points as LAZ with chunks of the given sizes (cycled until every point is
    written): the layout COPC uses, without COPC's hierarchy. laspy writes fixed-size chunks
    only, so the file is written by laspy and its points replaced through lazrs."""
    import lazrs

    las = laspy.read(src)
    las.write(dst, do_compress=True, laz_backend=laspy.LazBackend.Lazrs)
    pf = las.point_format
    fixed = lazrs.LazVlr.new_for_compression(pf.id, pf.num_extra_bytes).record_data()
    variable = lazrs.LazVlr.new_for_compression(pf.id, pf.num_extra_bytes, True)
    raw = np.frombuffer(las.points.array.tobytes(), np.uint8)
    step = pf.size
    chunks, at, k = [], 0, 0
    while at < len(las.points):
        m = sizes[k % len(sizes)]
        chunks.append(raw[at * step:(at + m) * step])
        at, k = at + m, k + 1
    with laspy.open(dst) as reader:
        offset = reader.header.offset_to_point_data
    with open(dst, "r+b") as fh:
        head = fh.read(offset)
        assert head.count(bytes(fixed)) == 1
        fh.seek(0)
        fh.write(head.replace(bytes(fixed), bytes(variable.record_data())))
        fh.truncate(offset)
        fh.seek(offset)
        comp = lazrs.LasZipCompressor(fh, variable)
        comp.compress_chunks(chunks)
        comp.done()
    return dst
