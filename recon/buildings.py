"""Buildings from footprints and classified points: LoD1.2 and LoD2.2 with quality figures.

For every footprint the building-class points inside it and a ground function
``ground(x, y) -> z`` (a DTM, from :mod:`recon.terrain` or any other source) give:

- **LoD1.2**: the footprint extruded from the ground height to one roof height. By default
  the height that fits the roof best on a raster: the mean of the roof's 0.5 m cells (each
  cell the mean of its points), which minimises the RMSE of a flat top to the roof over its
  area, whatever the roof's shape. A percentile can be asked for instead
  (``ReconParams.lod12_percentile``: 3DBAG publishes the 70th, 3dfier's default is the
  90th); every building records the 50th, 70th and 90th percentiles either way. A higher
  percentile follows the ridge, chimneys and antennas and leaves the eaves further off; no
  single height comes closer to a pitched roof than the spread of its heights over the
  footprint (a gable of rise R: R / sqrt(12)), the floor that the roof shape sets for LoD1.2.
- **LoD2.2**: roof planes, the roof partition and the closed solid of :mod:`recon.roofs`.

The base height is the median of the ground function on a ring 1 m outside the footprint
(inside it there are no ground points, only the DTM's interpolation).

Roof points are the building-class points inside the footprint shrunk by
``ReconParams.edge_m`` (0.3 m): points on walls and gutters at the very edge are not roof, and
they would otherwise count as misfit of a correct roof.

Every building gets a :class:`BuildingModel` with the LoD it reached and, for anything it did
not reach, the reason: no points, too few points, a sparse survey (under 2 points/m2: LoD1.2
only, with a warning), no plane found, or a LoD2.2 solid that failed the validity check of
:func:`recon.solids.check_solid` (then it keeps its LoD1.2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import shapely
from shapely.geometry import Polygon

from recon.errors import ReconInputError
from recon.footprints import Footprint, as_polygon
from recon.roofs import (
    PartitionError,
    Plane,
    RoofRegion,
    detect_planes,
    model_z,
    partition_candidates,
    solid_from_partition,
)
from recon.solids import Solid, check_solid, distance_to_surface
from tiler.pool import worker_pool

__all__ = [
    "BuildingModel",
    "GroundFunction",
    "ReconParams",
    "points_in_footprints",
    "reconstruct_building",
    "reconstruct_buildings",
]

GroundFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
Lod = Literal["1.2", "2.2"]


@dataclass(frozen=True)
class ReconParams:
    """Tunable choices of the reconstruction, with the reasons for their defaults."""

    #: roof percentile of the LoD1.2 height (3DBAG: 70th; 3dfier's default: 90th); None:
    #: the height of least raster RMSE (the mean of the roof's cells)
    lod12_percentile: float | None = None
    #: cell of that raster, m (the cell of the roof-height error the benchmarks measure)
    lod12_cell: float = 0.5
    #: a survey sparser than this (points/m2 of footprint) gives LoD1.2 only, with a warning
    min_density: float = 2.0
    #: fewer roof points than this: LoD1.2 only
    min_points_lod22: int = 30
    #: fewer roof points than this: no model at all (no height to trust)
    min_points_lod12: int = 3
    #: plane inlier distance and smallest plane (roofer: 0.2 m, 15 points)
    plane_eps: float = 0.2
    plane_min_points: int = 15
    max_planes: int = 12
    #: cell of the grid roof partition, m: the step between two roof parts is placed to half
    #: a cell, and a step of several metres makes that strip count
    partition_cell: float = 0.125
    #: the grid partition's boundaries are simplified (corners of triangles smaller than
    #: this squared removed, :func:`recon.roofs._regularise`): the staircase of half-cell
    #: steps goes, a real corner of a roof part stays; 0 keeps the staircase
    partition_simplify_m: float = 0.35
    #: smallest roof region kept, m2
    min_region_m2: float = 1.0
    #: points this close to the footprint's edge are not roof points, m
    edge_m: float = 0.3
    seed: int = 0


@dataclass
class BuildingModel:
    """One reconstructed building (coordinates in the survey's CRS, heights in its datum)."""

    id: str
    footprint: Polygon
    footprint_source: str = "given"
    lod: Lod | None = None
    base_z: float | None = None
    lod12: Solid | None = None
    lod22: Solid | None = None
    lod12_roof_z: float | None = None
    roof_regions: list[RoofRegion] = field(default_factory=list)
    partition_method: str | None = None
    #: roof heights at the 50th, 70th and 90th percentile and the highest point (3DBAG's set)
    roof_percentiles: dict[str, float] = field(default_factory=dict)
    n_points: int = 0
    density: float = 0.0
    n_planes: int = 0
    rmse_lod12: float | None = None
    rmse_lod22: float | None = None
    volume_lod12: float | None = None
    volume_lod22: float | None = None
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def height(self) -> float | None:
        """LoD1.2 height above the base, m."""
        if self.lod12_roof_z is None or self.base_z is None:
            return None
        return self.lod12_roof_z - self.base_z

    def roof_z(self, x: np.ndarray, y: np.ndarray, lod: Lod | None = None) -> np.ndarray:
        """The model's roof height at x, y (NaN outside the footprint or without that LoD)."""
        lod = lod or self.lod
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if lod == "2.2" and self.lod22 is not None and self.roof_regions:
            return model_z(self.roof_regions, x, y)
        if lod == "1.2" and self.lod12 is not None and self.lod12_roof_z is not None:
            inside = shapely.contains_xy(self.footprint, x, y)
            return np.where(inside, self.lod12_roof_z, np.nan)
        return np.full(x.shape, np.nan)

    def summary(self) -> dict[str, object]:
        """The per-building record the service stores (plain JSON types)."""
        def r(v: float | None, nd: int = 3) -> float | None:
            return None if v is None or not np.isfinite(v) else round(float(v), nd)
        return {
            "id": self.id, "lod": self.lod, "footprint_source": self.footprint_source,
            "base_z": r(self.base_z), "lod12_roof_z": r(self.lod12_roof_z),
            "height": r(self.height), "points": self.n_points, "density": r(self.density, 2),
            "planes": self.n_planes, "partition": self.partition_method,
            "rmse_lod12_m": r(self.rmse_lod12), "rmse_lod22_m": r(self.rmse_lod22),
            "volume_lod12_m3": r(self.volume_lod12, 1), "volume_lod22_m3": r(self.volume_lod22, 1),
            **{f"roof_z_{k}": r(v) for k, v in self.roof_percentiles.items()},
            "reasons": list(self.reasons), "warnings": list(self.warnings),
        }


def _base_height(footprint: Polygon, ground: GroundFunction) -> float | None:
    ring = footprint.buffer(1.0, join_style="mitre").exterior
    n = max(8, int(ring.length))
    pts = shapely.line_interpolate_point(ring, np.linspace(0, 1, n, endpoint=False),
                                         normalized=True)
    xy = shapely.get_coordinates(pts)
    z = np.asarray(ground(xy[:, 0], xy[:, 1]), dtype=np.float64)
    z = z[np.isfinite(z)]
    return float(np.median(z)) if len(z) else None


def _raster_mean(pts: np.ndarray, cell: float) -> float:
    """The mean height of a raster of the points (each occupied cell the mean of its points):
    the flat top of least RMSE to the roof over its area, with no part of the roof weighted
    by how densely it happened to be sampled."""
    ij = np.floor(pts[:, :2] / cell).astype(np.int64)
    _, inverse, counts = np.unique(ij, axis=0, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse.ravel(), weights=pts[:, 2], minlength=len(counts))
    return float(np.mean(sums / counts))


def _extrusion(footprint: Polygon, base_z: float, top_z: float) -> Solid:
    return solid_from_partition([RoofRegion(footprint, Plane(0.0, 0.0, top_z))], base_z,
                                min_height=0.0)


def reconstruct_building(footprint: Footprint | Polygon, xyz: np.ndarray,
                         ground: GroundFunction | None, params: ReconParams | None = None, *,
                         building_id: str | None = None, base_z: float | None = None
                         ) -> BuildingModel:
    """LoD1.2 and LoD2.2 of one building from the building-class points inside its footprint.

    ``xyz`` may hold points outside the footprint; they are ignored. ``base_z``, when given,
    is the base height (else it is taken from ``ground`` around the footprint). Problems of
    the data (no points, too few, sparse, no ground) end up in ``reasons``/``warnings``,
    never as exceptions; a malformed argument raises :class:`~recon.errors.ReconInputError`.
    """
    params = params or ReconParams()
    if isinstance(footprint, Footprint):
        poly, fid, source = footprint.polygon, footprint.id, footprint.source
    else:
        poly, fid, source = footprint, building_id or "0", "given"
    if not isinstance(poly, Polygon) or poly.is_empty or not poly.is_valid:
        raise ReconInputError(f"building {fid}: the footprint is not one valid polygon")
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ReconInputError(f"building {fid}: points must be an (N, 3) array")
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    bm = BuildingModel(fid, poly, source)
    inside = shapely.intersects_xy(poly, xyz[:, 0], xyz[:, 1]) if len(xyz) else np.zeros(0, bool)
    pts = xyz[inside]
    core = poly.buffer(-params.edge_m)
    roof = pts[shapely.contains_xy(core, pts[:, 0], pts[:, 1])] if not core.is_empty else pts
    if len(roof) < max(params.min_points_lod12, 0.5 * len(pts)):
        roof = pts  # a narrow footprint: the edge band is most of it
    bm.n_points = len(pts)
    bm.density = len(pts) / poly.area
    if len(roof) < params.min_points_lod12:
        bm.reasons.append(f"{len(roof)} building points inside the footprint: no height to "
                          "model (is the footprint where the survey is?)")
        return bm
    if base_z is not None:
        base: float | None = float(base_z)
    elif ground is None:
        raise ReconInputError(f"building {fid}: neither a ground function nor a base height")
    else:
        base = _base_height(poly, ground)
    if base is None:
        bm.reasons.append("no ground height around the footprint (outside the DTM)")
        return bm
    bm.base_z = base
    p50, p70, p90 = np.percentile(roof[:, 2], [50.0, 70.0, 90.0])
    bm.roof_percentiles = {"p50": float(p50), "p70": float(p70), "p90": float(p90),
                           "max": float(roof[:, 2].max())}
    if params.lod12_percentile is not None:
        top = float(np.percentile(roof[:, 2], params.lod12_percentile))
    else:
        top = _raster_mean(roof, params.lod12_cell)
    if top <= base + 0.5:
        bm.reasons.append(f"roof points only {top - base:.2f} m above the ground: not a building")
        return bm
    bm.lod12_roof_z = top
    try:
        s12 = _extrusion(poly, base, top)
    except PartitionError as exc:
        bm.reasons.append(f"LoD1.2 failed: {exc}")
        return bm
    chk = check_solid(s12)
    if not chk.valid:
        bm.reasons.append("LoD1.2 solid invalid: " + "; ".join(chk.problems))
        return bm
    bm.lod12, bm.lod, bm.volume_lod12 = s12, "1.2", chk.volume
    bm.rmse_lod12 = _rmse(s12, pts)

    if bm.density < params.min_density:
        bm.warnings.append(f"sparse survey: {bm.density:.2f} points/m2, under "
                           f"{params.min_density}: LoD1.2 only")
        bm.reasons.append("LoD2.2 not attempted: survey too sparse")
        return bm
    if len(roof) < params.min_points_lod22:
        bm.reasons.append(f"LoD2.2 not attempted: {len(roof)} roof points, fewer than "
                          f"{params.min_points_lod22}")
        return bm
    _lod22(bm, poly, roof, pts, base, params)
    return bm


def _lod22(bm: BuildingModel, poly: Polygon, roof: np.ndarray, pts: np.ndarray, base: float,
           params: ReconParams) -> None:
    # local coordinates keep the plane fits and the noding precise at map coordinates
    # offsets on the millimetre grid, so local vertices (rounded to the millimetre) stay on
    # it in map coordinates; the solid is built locally, where the partition's polygons are
    # valid as computed (moved to map coordinates, a ring can come to touch itself)
    ox, oy = round(poly.centroid.x, 3), round(poly.centroid.y, 3)
    oz = round(float(np.median(roof[:, 2])), 3)
    local = roof - np.array([ox, oy, oz])
    planes, labels = detect_planes(local, eps=params.plane_eps,
                                   min_points=params.plane_min_points,
                                   max_planes=params.max_planes, seed=params.seed)
    bm.n_planes = len(planes)
    if not planes:
        bm.reasons.append("LoD2.2 failed: no roof plane found in the points")
        return
    world = [Plane(p.a, p.b, p.c).shifted(ox, oy, oz) for p in planes]
    local_poly = shapely.transform(poly, lambda c: c - np.array([ox, oy]))
    if not local_poly.is_valid:
        local_poly = as_polygon(shapely.make_valid(local_poly))
    cands = partition_candidates(local_poly, local, planes, labels,
                                 cell=params.partition_cell, min_area=params.min_region_m2,
                                 simplify=params.partition_simplify_m)
    if not cands:
        bm.reasons.append("LoD2.2 failed: no roof partition covers the footprint")
        return
    index = {id(p): w for p, w in zip(planes, world, strict=True)}
    failures = []
    # the best partition first; if its solid cannot be closed or fails the checker, the next
    best_fit = cands[0][2]
    for regions, method, fit in cands:
        if fit > 1.5 * best_fit + 0.1:
            failures.append(f"{method}: fits the points {fit:.2f} m, the best {best_fit:.2f} m")
            continue
        regions_w = [RoofRegion(shapely.transform(r.polygon, lambda c: c + np.array([ox, oy])),
                                index[id(r.plane)]) for r in regions]
        try:
            s22 = solid_from_partition(regions, base - oz)
        except PartitionError as exc:
            failures.append(f"{method}: {exc}")
            continue
        s22.vertices = s22.vertices + np.array([ox, oy, oz])
        chk = check_solid(s22)
        if not chk.valid:
            failures.append(f"{method}: invalid solid: " + "; ".join(chk.problems[:3]))
            continue
        bm.lod22, bm.lod, bm.volume_lod22 = s22, "2.2", chk.volume
        bm.roof_regions = regions_w
        bm.partition_method = method
        bm.rmse_lod22 = _rmse(s22, pts)
        if failures:
            bm.warnings.append("LoD2.2 from a second-best roof partition; " + " | ".join(failures))
        return
    bm.reasons.append("LoD2.2 failed, LoD1.2 kept: " + " | ".join(failures))


def _rmse(solid: Solid, pts: np.ndarray) -> float:
    """RMSE of the building's points to the model's surface (3D distance, as 3DBAG reports)."""
    return float(np.sqrt(np.mean(distance_to_surface(solid, pts) ** 2)))


#: points joined to the footprints at a time
JOIN_PIECE = 500_000


def points_in_footprints(footprints: Sequence[Footprint | Polygon], xy: np.ndarray
                         ) -> list[np.ndarray]:
    """For each footprint, the indices of the points inside it (an STR-tree join)."""
    polys = [f.polygon if isinstance(f, Footprint) else f for f in footprints]
    out: list[np.ndarray] = [np.empty(0, dtype=np.int64) for _ in polys]
    if not polys or len(xy) == 0:
        return out
    tree = shapely.STRtree(polys)
    # in pieces: a shapely point costs about 100 bytes, millions of them at once would be
    # the largest allocation of the whole chain
    found_p, found_f = [], []
    for s in range(0, len(xy), JOIN_PIECE):
        part = xy[s:s + JOIN_PIECE]
        pi, fi = tree.query(shapely.points(part[:, 0], part[:, 1]), predicate="intersects")
        found_p.append(pi + s)
        found_f.append(fi)
    pi, fi = np.concatenate(found_p), np.concatenate(found_f)
    order = np.argsort(fi, kind="stable")
    fi, pi = fi[order], pi[order]
    cuts = np.searchsorted(fi, np.arange(len(polys) + 1))
    for k in range(len(polys)):
        out[k] = pi[cuts[k]:cuts[k + 1]]
    return out


#: fewer buildings than this are reconstructed in this process: starting workers costs more
PARALLEL_MIN_BUILDINGS = 24
#: buildings per task sent to a worker (enough to amortise the pickling, few enough to
#: balance the load and report progress often)
TASK_BUILDINGS = 8


def reconstruct_buildings(footprints: Sequence[Footprint], xyz: np.ndarray,
                          ground: GroundFunction, *, classification: np.ndarray | None = None,
                          building_class: int = 6, params: ReconParams | None = None,
                          progress: Callable[[int, int], None] | None = None,
                          processes: int | None = None) -> list[BuildingModel]:
    """Every footprint's building from a survey's points (``classification`` picks the
    building-class points; without it all points are taken as building points).

    ``processes``: worker processes; None takes one per core when there are at least
    :data:`PARALLEL_MIN_BUILDINGS` buildings, 1 works in this process. The result is the same
    either way: every building depends only on its own points, its base height (taken here
    from ``ground``, which therefore never has to travel to a worker) and ``params`` (the
    plane detection is seeded per building).

    ``progress(done, total)`` is called as buildings are done.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ReconInputError("points must be an (N, 3) array of x, y, z")
    if classification is not None:
        cls = np.asarray(classification)
        if cls.shape != (len(xyz),):
            raise ReconInputError(f"{len(cls)} classes for {len(xyz)} points")
        xyz = xyz[cls == building_class]
    idx = points_in_footprints(footprints, xyz)
    params = params or ReconParams()
    total = len(footprints)
    polys = [fp.polygon if isinstance(fp, Footprint) else fp for fp in footprints]
    bases = [_base_height(p, ground) if isinstance(p, Polygon) and not p.is_empty else None
             for p in polys]
    tasks = [(fp, xyz[ii], base) for fp, ii, base in zip(footprints, idx, bases, strict=True)]
    del idx, xyz  # the tasks hold their own points; the caller's array is the caller's
    if processes is None:
        processes = (os.cpu_count() or 1) if total >= PARALLEL_MIN_BUILDINGS else 1
    processes = max(1, min(processes, -(-total // TASK_BUILDINGS)))
    if processes == 1:
        out = []
        for k, task in enumerate(tasks):
            out.append(_one(task, ground, params))
            if progress is not None:
                progress(k + 1, total)
        return out
    return _in_workers(tasks, ground, params, processes, progress)


Task = tuple[Footprint, np.ndarray, float | None]


def _one(task: Task, ground: GroundFunction | None, params: ReconParams) -> BuildingModel:
    fp, pts, base = task
    bm = reconstruct_building(fp, pts, ground, params, base_z=base)
    if isinstance(fp, Footprint) and fp.problems:
        bm.warnings.extend(f"footprint: {p}" for p in fp.problems)
    return bm


def _batch(tasks: list[Task], params: ReconParams) -> list[BuildingModel]:
    # in a worker: the base heights came with the tasks, no ground function is needed (a
    # building without one has no base and gets its reason without asking for it)
    return [_one(t, _NO_GROUND, params) for t in tasks]


def _no_ground(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.full(np.shape(x), np.nan)


_NO_GROUND: GroundFunction = _no_ground


def _in_workers(tasks: list[Task], ground: GroundFunction, params: ReconParams,
                processes: int, progress: Callable[[int, int], None] | None
                ) -> list[BuildingModel]:
    total = len(tasks)
    # the biggest buildings first, so the last tasks are short and no core idles at the end
    order = sorted(range(total), key=lambda k: -len(tasks[k][1]))
    batches = [order[s:s + TASK_BUILDINGS] for s in range(0, total, TASK_BUILDINGS)]
    out: list[BuildingModel | None] = [None] * total
    done = 0
    with _executor(processes) as ex:
        pending: dict[Future[list[BuildingModel]], list[int]] = {
            ex.submit(_batch, [tasks[k] for k in b], params): b for b in batches}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                ks = pending.pop(fut)
                for k, bm in zip(ks, fut.result(), strict=True):
                    out[k] = bm
                done += len(ks)
                if progress is not None:
                    progress(done, total)
    return [bm for bm in out if bm is not None]


def _executor(processes: int) -> ProcessPoolExecutor:
    # the caller may run threads (a job's progress writer, a database pool): see worker_pool
    return worker_pool(processes, "recon.buildings")
