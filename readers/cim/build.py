"""From raw objects (source-CRS rings, as a reader found them) to checked :class:`CityObject`s.

Readers only decode; everything shared happens here, on batches of objects at once: repeated
vertices are removed, rings are checked (too few vertices, zero area, self-intersection), the
coordinates are transformed to lon / lat / ellipsoidal height in one call, and each object keeps
its highest LoD as ``surfaces``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import shapely

from tiler.crs import CrsError, ToWgs84, horizontal_part
from tiler.frames import geodetic_to_ecef
from tiler.mesh.rings import (
    clean_rings,
    counts_after,
    local_coords,
    newell,
    plane_basis,
    project_2d,
    ring_index,
)

from .errors import CityCrsError, Problem, SkippedGeometry
from .model import CityObject, ParseReport, Surface, lod_key

# "drop_surface" (default): an invalid surface is dropped and reported, the object loads with
# the rest; an object left with no valid surface is skipped. Real files need this: 9 of the 16
# Rotterdam sample buildings carry a two-vertex sliver ring. "skip_object": any invalid surface
# skips the whole object.
InvalidPolicy = Literal["skip_object", "drop_surface"]
MIN_AREA = 1e-6  # m²: rings smaller than a square millimetre are degenerate


@dataclass
class RawSurface:
    rings: list[np.ndarray]  # (n, 3) source-CRS coordinates; closing vertex may be repeated
    semantic: str | None = None


@dataclass
class RawObject:
    id: str
    type: str
    parent_id: str | None = None
    children: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    geometries: dict[str, list[RawSurface]] = field(default_factory=dict)  # lod -> surfaces
    error: str | None = None  # a reading problem that makes the whole object unusable
    # geometry the readers do not turn into surfaces (points, curves, ...): what and why
    skipped: list[str] = field(default_factory=list)

    def add(self, lod: str | None, surface: RawSurface) -> None:
        self.geometries.setdefault("" if lod is None else str(lod), []).append(surface)

    def skip(self, what: str) -> None:
        if what not in self.skipped:
            self.skipped.append(what)


def _ring_problems(metric: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """Clean rings and say what is wrong with each (None when fine)."""
    keep, new_counts = clean_rings(metric, counts)
    reasons: list[str | None] = [None] * len(counts)
    cleaned = metric[keep]
    area = np.linalg.norm(newell(cleaned, new_counts), axis=1)
    few = new_counts < 3
    flat = ~few & (area < MIN_AREA)
    for i in np.flatnonzero(few):
        reasons[i] = f"ring with {int(new_counts[i])} distinct vertices (at least 3 needed)"
    starts = np.zeros(len(new_counts), np.int64)
    np.cumsum(new_counts[:-1], out=starts[1:])
    for i in np.flatnonzero(flat):
        # Zero net area: collinear points, or lobes of a bow-tie that cancel out. The second
        # singular value of the centred points tells them apart.
        pts = cleaned[starts[i]:starts[i] + new_counts[i]]
        spread = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
        reasons[i] = ("self-intersecting ring (its lobes cancel out)" if spread[1] > 1e-4
                      else "degenerate ring (zero area: collinear vertices)")
    ok = ~few & ~flat
    if ok.any():
        # Self-intersection is a 2D notion: test each ring in its own best-fit plane.
        vertex_ok = np.repeat(ok, new_counts)
        rel = local_coords(cleaned, new_counts)[vertex_ok]
        ok_counts = new_counts[ok]
        _, u, v = plane_basis(newell(cleaned, new_counts)[ok])
        owner = ring_index(ok_counts)
        xy = project_2d(rel, owner, u, v)
        rings = shapely.linearrings(xy, indices=owner)
        simple = shapely.is_simple(rings)
        ok_idx = np.flatnonzero(ok)
        for i in ok_idx[~simple]:
            reasons[i] = "self-intersecting ring"
    return keep, reasons


def finish_batch(
    raws: list[RawObject],
    to_wgs: ToWgs84,
    report: ParseReport,
    on_invalid: InvalidPolicy = "drop_surface",
) -> list[CityObject]:
    """Check and transform a batch of raw objects; record problems in ``report``."""
    ring_arrays: list[np.ndarray] = []
    # one row per surface: object index, lod, semantic, first ring, ring count
    surf_rows: list[tuple[int, str, str | None, int, int]] = []
    for oi, raw in enumerate(raws):
        if raw.error:
            continue
        for lod, surfaces in raw.geometries.items():
            for s in surfaces:
                surf_rows.append((oi, lod, s.semantic, len(ring_arrays), len(s.rings)))
                ring_arrays.extend(np.asarray(r, float).reshape(-1, 3) for r in s.rings)

    counts = np.fromiter((len(r) for r in ring_arrays), np.int64, len(ring_arrays))
    xyz = np.concatenate(ring_arrays) if ring_arrays else np.zeros((0, 3))
    lon, lat, h = to_wgs(xyz[:, 0], xyz[:, 1], xyz[:, 2])
    try:
        to_wgs.check(lon, lat, h)
    except CrsError as exc:
        raise CityCrsError(str(exc)) from exc
    geo = np.column_stack([lon, lat, h])
    source = horizontal_part(to_wgs.crs)
    metric = xyz if (source.is_projected or source.is_geocentric) else geodetic_to_ecef(lon, lat, h)
    keep, reasons = _ring_problems(metric, counts)

    # Split the cleaned coordinates back into rings.
    kept_counts = counts_after(keep, counts)
    cut = np.cumsum(kept_counts)[:-1]
    geo_rings = np.split(geo[keep], cut) if len(counts) else []
    src_rings = np.split(xyz[keep], cut) if len(counts) else []

    per_object: dict[int, dict[str, list[Surface]]] = {}
    bad: dict[int, list[tuple[int, str]]] = {}
    surface_no: dict[int, int] = {}
    for oi, lod, semantic, first, n in surf_rows:
        k = surface_no[oi] = surface_no.get(oi, -1) + 1
        why = next((reasons[j] for j in range(first, first + n) if reasons[j]), None)
        if why:
            bad.setdefault(oi, []).append((k, why))
            continue
        surf = Surface(geo_rings[first:first + n], semantic, src_rings[first:first + n])
        per_object.setdefault(oi, {}).setdefault(lod, []).append(surf)

    out: list[CityObject] = []
    for oi, raw in enumerate(raws):
        if raw.error:
            report.problems.append(Problem(raw.id, raw.error))
            continue
        if raw.skipped:
            report.skipped_geometry.append(SkippedGeometry(raw.id, raw.type,
                                                           "; ".join(raw.skipped)))
        lods = per_object.get(oi, {})
        if oi in bad:
            k, why = bad[oi][0]
            n_bad = len(bad[oi])
            more = f" (and {n_bad - 1} more)" if n_bad > 1 else ""
            if on_invalid == "skip_object" or not lods:
                report.problems.append(Problem(raw.id, f"invalid geometry, object skipped: "
                                                       f"surface {k}: {why}{more}"))
                continue
            report.problems.append(Problem(raw.id, f"{n_bad} invalid surface(s) dropped, the "
                                                   f"rest loaded: surface {k}: {why}{more}"))
        obj = CityObject(raw.id, raw.type, raw.parent_id, list(raw.children), None,
                         raw.attributes, raw.name)
        if lods:
            best = max(lods, key=lod_key)
            obj.lod = best or None
            obj.surfaces = lods.pop(best)
            obj.other_lods = lods
        out.append(obj)
        report.objects += 1
        report.surfaces += len(obj.surfaces)
    return out
