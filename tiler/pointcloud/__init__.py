"""Drone LiDAR (LAS / LAZ / COPC) to 3D Tiles 1.1 point-cloud tilesets.

    from tiler.pointcloud import tile_point_cloud
    result = tile_point_cloud(Path("flight.laz"), Path("out/v1"), crs="EPSG:4547",
                              progress=lambda stage, done, total: ...,
                              on_preview=lambda tileset_json: ...)

``out_dir/tileset.json`` is written twice: first a preview with the coarse levels only (then
``on_preview`` is called), at the end the full tileset; both times atomically, and content
files are never rewritten once a tileset.json references them. Bad input raises a subclass of
:class:`tiler.errors.TilerInputError` whose message is meant for the person who uploaded the
file; in that case ``out_dir/tileset.json`` is removed so nothing half-made stays published.
``out_dir`` must not hold a tileset already (one directory per tileset version).

Worker processes are started with 'spawn': a script calling this needs the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from tiler.pointcloud import footprint as fp
from tiler.pointcloud.pipeline import RunOutput, Settings, describe, lonlat_bounds, run
from tiler.pointcloud.source import acquisition_time

__all__ = ["PointCloudResult", "Settings", "tile_point_cloud"]


@dataclass
class PointCloudResult:
    """What the service stores about a tiled survey."""

    tileset: Path  # out_dir / "tileset.json"
    points: int
    # (lon_min, lat_min, h_min, lon_max, lat_max, h_max): degrees, ellipsoidal metres
    bounds: tuple[float, float, float, float, float, float]
    footprint: BaseGeometry  # Polygon / MultiPolygon in lon/lat (EPSG:4326 axis order x=lon)
    footprint_area_m2: float
    class_counts: dict[int, int]  # ASPRS class code -> points
    density: float  # points per square metre of footprint
    acquired_at: dt.datetime | None  # UTC; from GPS time, else the header date
    crs: str  # label of the CRS used, e.g. "EPSG:4547"
    height_note: str  # which vertical correction was applied
    tiles: int
    bytes: int  # content and tileset.json
    colour: str  # "u8" (8-bit values in 16-bit fields), "u16" or "none"
    first_view_s: float | None  # seconds from the call to the preview tileset
    elapsed_s: float
    details: dict[str, Any] = field(default_factory=dict)


def tile_point_cloud(
    src: Path,
    out_dir: Path,
    *,
    crs: str | None = None,
    vertical: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_preview: Callable[[Path], None] | None = None,
    workers: int = 2,
    settings: Settings | None = None,
) -> PointCloudResult:
    """Tile a LAS/LAZ/COPC file into ``out_dir`` (3D Tiles 1.1, glb content, ADD refinement).

    ``crs`` (EPSG code, WKT, URN) wins over the file's own CRS; ``vertical`` is
    ``"ellipsoidal"`` or ``"orthometric"`` (the vertical datum's geoid where PROJ has its
    grid offline, else EGM96) and defaults to what the CRS says (a vertical CRS in the file's
    WKT or GeoTIFF keys: orthometric).
    ``progress(stage, done, total)`` reports points for the stages "reading", "tiling" and
    "writing". ``workers`` processes (spawned, never forked) share the work.
    """
    t0 = time.perf_counter()
    src, out_dir = Path(src), Path(out_dir)
    s = settings or Settings()
    if workers != s.workers:
        s = Settings(**{**s.__dict__, "workers": workers})
    tileset = out_dir / "tileset.json"
    if tileset.exists():
        # content names are immutable per version: a version is tiled into a new directory
        raise FileExistsError(f"{out_dir} already holds a tileset; tile into a new directory")
    try:
        out = run(src, out_dir, crs=crs, vertical=vertical, progress=progress,
                  on_preview=on_preview, settings=s)
    except BaseException:
        tileset.unlink(missing_ok=True)
        raise
    return result_of(out, t0)


def result_of(out: RunOutput, t0: float) -> PointCloudResult:
    """What the service stores, from a finished run (``t0``: when the run started)."""
    plan = out.plan
    tileset = Path(plan.out) / "tileset.json"
    ix, iy, zlo, zhi = fp.merge_cells(*out.occupancy)
    cell_m = plan.q * 2 ** (plan.R - plan.F)
    shape_enu = fp.footprint_enu(ix, iy, cell_m, plan.cube_min[0], plan.cube_min[1])
    lo, hi = lonlat_bounds(plan, ix, iy, zlo, zhi)
    mean_up = float(plan.cube_min[2] + np.median(zlo) * plan.q)
    shape = fp.to_lonlat(shape_enu, plan.mapper.frame, mean_up)
    w, sth, e, nth = shape.bounds
    area = float(shape_enu.area)
    content_bytes = sum(v.nbytes for v in out.nodes.values())
    gps_min = out.stats.gps_min if math.isfinite(out.stats.gps_min) else None
    return PointCloudResult(
        tileset=tileset,
        points=out.stats.points,
        bounds=(float(w), float(sth), float(min(lo[:, 2].min(), hi[:, 2].min())),
                float(e), float(nth), float(max(lo[:, 2].max(), hi[:, 2].max()))),
        footprint=shape,
        footprint_area_m2=area,
        class_counts={int(c): int(k) for c, k in enumerate(out.stats.class_counts) if k},
        density=out.stats.points / area if area > 0 else 0.0,
        acquired_at=acquisition_time(plan.info, gps_min),
        crs=out.to_wgs.label,
        height_note=out.to_wgs.policy.note,
        tiles=len(out.nodes),
        bytes=content_bytes + out.tileset_bytes,
        colour=plan.colour,
        first_view_s=out.first_view_s,
        elapsed_s=time.perf_counter() - t0,
        details={**describe(plan), "rgb_max": out.stats.rgb_max,
                 "timings_s": {**out.timings, "done": round(time.perf_counter() - t0, 3)}},
    )
