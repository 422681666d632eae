"""City objects from a survey ("fly and model"): a stored LiDAR survey becomes buildings in
the living city model.

The job ``model_survey`` reads the survey's file, classifies its points (or keeps the file's
classes when they are meaningful), makes its DTM, takes footprints in order of trust (a layer
given with the job, else the current city model's buildings in the surveyed area, with
footprints derived from the building points for what the model does not have), reconstructs
LoD1.2 and LoD2.2, and compares every building with the current model:

- **new**: no current building where it stands;
- **changed**: its footprint or height differs from the current version beyond
  :data:`FOOTPRINT_IOU_CHANGED` / :data:`HEIGHT_CHANGE_M`;
- **unchanged**: within both; its current version is kept as it is (no new row);
- **demolished**: a current building inside the surveyed area with ground points where it
  stood and (almost) no building points: its version ends.

New and changed buildings become new versions in ``city_objects`` (LoD2.2 as the stored
geometry, LoD1.2 in ``other_lods``), valid from the survey's acquisition time. The source of
these versions is the survey itself (``dataset_id`` = the survey's id): the survey is what
the city was measured from, so ``/datasets/{id}`` of the survey leads to both its point
cloud and the buildings it produced, and deleting the survey removes them with it. The
change list goes to ``city_changes``; the CIM tileset is rebuilt (incrementally) and
published with the rows in one transaction, serialised with CIM ingests by their lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from geoalchemy2.elements import WKTElement
from pyproj import CRS
from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import Connection, func, select, update

from readers.cim import CityObject, Problem, Surface
from recon.buildings import BuildingModel, points_in_footprints, reconstruct_buildings
from recon.classify import BUILDING, GROUND, MIN_DENSITY, Classification, classify_points
from recon.errors import ReconInputError
from recon.footprints import Footprint, derive_footprints, read_footprints
from recon.solids import Solid
from service.cim.classified import ClassifiedSurvey
from service.cim.ingest import LOCK_KEY, build_tiles
from service.cim.store import load_objects
from service.cim.tables import CITY_TILESET, city_changes, city_objects
from service.core.settings import Settings
from service.core.tables import datasets, jobs
from service.jobs.context import JobContext, JobFailed
from service.jobs.publish import DatasetOutcome, publish
from service.jobs.submit import submit_job
from service.terrain.store import prepare_dtm, save_dtm
from service.tilesets.storage import tile_store
from service.tilesets.store import TilesetVersion, begin_version, fail_version
from tiler.crs import ToWgs84, cached_transformer, crs_label, horizontal_part
from tiler.errors import TilerInputError
from tiler.pointcloud.source import inspect_source, resolve_crs, z_to_metres

#: a building whose footprint overlaps its current version with an IoU under this changed
FOOTPRINT_IOU_CHANGED = 0.8
#: a building whose height (top of the model above its base) differs by more changed, m
HEIGHT_CHANGE_M = 1.0
#: a footprint from the points and one of the model are the same building when this share of
#: the smaller one lies in the other
MATCH_SHARE = 0.5
#: a current building counts as surveyed when this share of its footprint is in the survey
SURVEYED_SHARE = 0.9
#: demolished: ground points cover this share of the footprint's expected points ...
DEMOLISHED_GROUND_SHARE = 0.3
#: ... and building points this share at most
DEMOLISHED_BUILDING_SHARE = 0.05
MAX_REPORTED = 1000
BUILDING_TYPES = ("Building", "BuildingPart")


@dataclass
class Change:
    """One building of the change list."""

    object_id: str
    change: str  # new / changed / unchanged / demolished
    footprint: Polygon  # survey CRS
    model: BuildingModel | None = None
    type: str = "Building"
    parent_id: str | None = None
    reasons: list[str] = field(default_factory=list)
    points: int = 0
    density: float | None = None

    def record(self) -> dict[str, Any]:
        m = self.model
        rmse = None
        if m is not None:
            rmse = m.rmse_lod22 if m.lod == "2.2" else m.rmse_lod12
        return {"object_id": self.object_id, "change": self.change,
                "lod": m.lod if m is not None else None,
                "rmse_m": None if rmse is None else round(float(rmse), 3),
                "points": m.n_points if m is not None else self.points,
                "density": round(float(m.density), 2) if m is not None else self.density,
                "reason": "; ".join(self.reasons) or None}


def _survey(ctx: JobContext) -> Any:
    """The survey's row, checked: a ready LiDAR dataset whose file is on the server. Read
    without marking it (an ingest job marks its dataset as being ingested; this one only
    reads its survey)."""
    if ctx.dataset_id is None:
        raise JobFailed("model_survey needs the dataset_id of a survey")
    with ctx.engine.connect() as conn:
        row = conn.execute(select(datasets).where(datasets.c.id == ctx.dataset_id)).first()
    problem = survey_problem(row, ctx.dataset_id)
    if problem is not None:
        raise JobFailed(problem)
    if not row.source_path or not Path(row.source_path).is_file():
        raise JobFailed(f"the file of survey {row.id} is no longer on the server: upload "
                        "the survey again to model it")
    return row


def survey_problem(row: Any, dataset_id: int) -> str | None:
    """Why dataset ``row`` cannot be modelled, or None (shared with the API's check)."""
    if row is None:
        return f"no dataset {dataset_id}"
    if row.kind != "lidar":
        return f"dataset {row.id} is {row.kind}, not a LiDAR survey: only surveys are modelled"
    if row.status != "ready":
        return (f"survey {row.id} is {row.status}, not ready: it is modelled once its "
                "ingest has succeeded")
    if not row.crs:
        return f"survey {row.id} has no CRS: ingest it again with the crs option"
    return None


class MetricFrame:
    """The survey's coordinates as metres: its own CRS when that is projected in metres,
    else the UTM zone of its centre (heights then ellipsoidal). Heights are made metres and
    ellipsoidal exactly as the survey's tiles made them (:mod:`tiler.pointcloud`)."""

    def __init__(self, crs: CRS, vertical: str | None, xyz: np.ndarray) -> None:
        """``xyz``: (N, 3) float64 in the survey's CRS; in a CRS of metres it becomes
        :attr:`xyz` itself (heights scaled in place), so the points exist once."""
        label = crs_label(crs)
        scale = z_to_metres(crs)
        horizontal = horizontal_part(crs)
        unit = horizontal.axis_info[0].unit_name if horizontal.axis_info else ""
        if horizontal.is_projected and unit in ("metre", "meter"):
            self.crs = horizontal
            self.to_wgs84 = ToWgs84(crs, vertical)
            if scale != 1:
                xyz[:, 2] *= scale
            self.xyz = xyz
            self.note = f"points in {label} (metres)"
        else:
            src = ToWgs84(crs, vertical)
            lon, lat, h = src(xyz[:, 0], xyz[:, 1], xyz[:, 2] * scale)
            zone = int((float(np.median(lon)) + 180) // 6) + 1
            self.crs = CRS.from_epsg((32600 if np.median(lat) >= 0 else 32700) + zone)
            ex, ny = cached_transformer("EPSG:4326", self.crs).transform(lon, lat)
            self.xyz = np.column_stack([ex, ny, h])
            self.to_wgs84 = ToWgs84(self.crs, "ellipsoidal")
            self.note = (f"points reprojected from {label} to {self.crs.to_string()} "
                         "(metres, ellipsoidal heights)")
        self._from_ll = cached_transformer("EPSG:4326", self.crs)
        self._to_ll = cached_transformer(self.crs, "EPSG:4326")

    def polygon_from_lonlat(self, geom: Any) -> Any:
        return shapely.transform(geom, lambda c: np.column_stack(
            self._from_ll.transform(c[:, 0], c[:, 1])))

    def polygon_to_lonlat(self, geom: Any) -> Any:
        return shapely.transform(geom, lambda c: np.column_stack(
            self._to_ll.transform(c[:, 0], c[:, 1])))


#: points decoded at a time: the file's whole record (30-40 bytes a point) is never held, only
#: the columns the job uses, written straight into their arrays
READ_CHUNK = 1_000_000


def _read_points(path: Path) -> tuple[np.ndarray, ...]:
    """x, y, z as one (N, 3) float64 array, then return number, number of returns, class."""
    import laspy

    try:
        with laspy.open(path) as f:
            n = int(f.header.point_count)
            xyz = np.empty((n, 3), dtype=np.float64)
            rn = np.empty(n, dtype=np.uint8)
            nr = np.empty(n, dtype=np.uint8)
            cls = np.empty(n, dtype=np.uint8)
            at = 0
            for pts in f.chunk_iterator(READ_CHUNK):
                m = len(pts)
                if at + m > n:
                    raise ValueError(f"more points than the header's {n}")
                xyz[at:at + m, 0] = pts.x
                xyz[at:at + m, 1] = pts.y
                xyz[at:at + m, 2] = pts.z
                rn[at:at + m] = pts.return_number
                nr[at:at + m] = pts.number_of_returns
                cls[at:at + m] = pts.classification
                at += m
    except Exception as exc:  # laspy raises LaspyException and friends
        raise JobFailed(f"cannot read the survey's file {path.name}: {exc}") from exc
    if at < n:  # a header that promises more points than the file holds
        xyz, rn, nr, cls = xyz[:at].copy(), rn[:at].copy(), nr[:at].copy(), cls[:at].copy()
    return xyz, rn, nr, cls


def model_survey(ctx: JobContext) -> dict[str, Any]:
    row = _survey(ctx)
    options = {**(row.options or {}), **ctx.params}
    started = time.monotonic()
    ctx.progress("reading", 0, None)
    path = Path(row.source_path)
    try:
        # the CRS the survey's tiles were made in: the one given with it, else the file's
        crs = resolve_crs(inspect_source(path), options.get("crs"))
    except TilerInputError as exc:
        raise JobFailed(str(exc)) from exc
    xyz, rn, nr, cls = _read_points(path)
    frame = MetricFrame(crs, options.get("vertical"), xyz)
    xyz = frame.xyz
    report: dict[str, Any] = {"survey": row.id, "points": len(xyz), "frame": frame.note,
                              "thresholds": {"footprint_iou_changed": FOOTPRINT_IOU_CHANGED,
                                             "height_change_m": HEIGHT_CHANGE_M}}
    ctx.progress("classifying", 0, len(xyz))
    try:
        cl = classify_points(xyz, rn, nr, cls, crs=frame.crs.to_string(),
                             keep_existing=not options.get("reclassify", False))
    except ReconInputError as exc:
        raise JobFailed(f"the survey's points cannot be classified: {exc}") from exc
    report["classification"] = {
        "kept_file_classes": cl.decision.kept, "reason": cl.decision.reason,
        "counts": {str(k): int(v) for k, v in zip(*np.unique(cl.classes, return_counts=True),
                                                  strict=True)},
        "density_per_m2": round(float(cl.density), 2), "warnings": cl.warnings}
    ctx.progress("footprints", 0, None)
    building_xy = xyz[cl.classes == BUILDING][:, :2]
    candidates, footprint_report = _candidate_footprints(options, frame, building_xy)
    del building_xy  # a copy of the building points, held for the rest of the job otherwise
    report["footprints"] = footprint_report
    coverage = Coverage(xyz, cl.density)
    dtm = prepare_dtm(cl.dtm, frame.crs, frame.to_wgs84, xyz[:, :2])  # kept with the survey
    tv: TilesetVersion | None = None
    classified = ClassifiedSurvey(ctx, row, options, cl.classes, cl.decision.kept,
                                  cl.decision.reason)
    try:
        classified.prepare()  # the classified LAZ, and the survey's tiles made from it
        with ctx.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(LOCK_KEY))))
            current, partly = _current_buildings(conn, frame, coverage)
            candidates, cut = _whole(candidates, partly, coverage)
            changes = _compare(ctx, row, xyz, cl, candidates, current, frame)
            report["edge"] = {"model_buildings_partly_surveyed": len(partly),
                              "footprints_cut_by_the_edge": cut[:MAX_REPORTED]}
            counts = {k: sum(c.change == k for c in changes)
                      for k in ("new", "changed", "unchanged", "demolished")}
            report["buildings"] = counts
            report["not_reconstructed"] = _not_reconstructed(changes)
            lods: dict[str, int] = {}
            for c in changes:
                if c.model is not None and c.change in ("new", "changed", "unchanged"):
                    lods[str(c.model.lod)] = lods.get(str(c.model.lod), 0) + 1
            report["lods"] = lods
            report["changes"] = [c.record() for c in changes[:MAX_REPORTED]]
            at = _effective_time(conn, row.acquired_at, changes)
            report["valid_from"] = at.isoformat() if at else (
                "the job's time: the survey has no acquisition time later than the versions "
                "it replaces")
            written = _write(conn, row.id, changes, frame, at)
            report.update(written)
            _store_changes(conn, row.id, changes, frame)
            tile_stats = None
            # every building razed still makes a version: an empty city, not the last one
            if written["written"] or written["ended"]:
                tv = begin_version(ctx.bookkeeping, tile_store(ctx.settings), CITY_TILESET,
                                   "mesh", dataset_id=row.id, job_id=ctx.job_id)
                tile_stats = build_tiles(ctx, conn, tv)
            report["tiles"] = tile_stats
            report["terrain"] = save_dtm(conn, row.id, row.acquired_at, dtm)
            report["total_s"] = round(time.monotonic() - started, 3)
            ctx.progress("publishing", 1, 1)
            classified.claim(conn, report)
            # the survey's row stays as its ingest left it, with the model's counts added
            publish(ctx, conn, dataset=DatasetOutcome(
                stats={**classified.stats(), "model": {"buildings": counts, "lods": lods,
                                                       "job_id": ctx.job_id}},
                crs=row.crs, height_note=row.height_note, footprint=datasets.c.footprint,
                bounds3d=row.bounds3d, acquired_at=row.acquired_at),
                version=tv, tileset_stats=tile_stats, report=report,
                also=classified.versions)
    except BaseException:
        if tv is not None:
            fail_version(ctx.engine, tv)
        classified.discard()
        raise
    classified.settle()
    return ctx.report


def _not_reconstructed(changes: list[Change]) -> list[dict[str, Any]]:
    return [{"object_id": c.object_id, "reason": "; ".join(c.reasons)}
            for c in changes if c.change == "skipped"][:MAX_REPORTED]


def _candidate_footprints(options: dict[str, Any], frame: MetricFrame, building_xy: np.ndarray
                          ) -> tuple[list[Footprint], dict[str, Any]]:
    """Footprints from the layer given with the job, else derived from the building points."""
    layer_path = options.get("footprints")
    if layer_path:
        try:
            fs = read_footprints(layer_path, frame.crs, layer=options.get("footprints_layer"),
                                 id_field=options.get("footprints_id"))
        except ReconInputError as exc:
            raise JobFailed(f"footprint layer: {exc}") from exc
        source = f"layer {Path(layer_path).name}"
    elif len(building_xy):
        fs = derive_footprints(building_xy)
        source = "derived from the building points"
    else:
        return [], {"source": "none: the survey has no building points", "count": 0,
                    "skipped": []}
    return fs.footprints, {"source": source, "count": len(fs.footprints),
                           "skipped": [{"id": s.id, "reason": s.reason}
                                       for s in fs.skipped[:MAX_REPORTED]]}


class Coverage:
    """Where the survey has points: a grid of cells that hold at least one. Cells of 2 m (more
    in sparse surveys) hold several points each, so a surveyed cell is almost never empty,
    and a building cut by the survey's edge shows as empty cells along its outline."""

    def __init__(self, xyz: np.ndarray, density: float) -> None:
        self.cell = max(2.0, float(np.sqrt(4.0 / max(density, 1e-6))))
        if not len(xyz):
            self.x0 = self.y0 = 0.0
            self.grid = np.zeros((0, 0), bool)
            return
        self.x0, self.y0 = float(xyz[:, 0].min()), float(xyz[:, 1].min())
        j = ((xyz[:, 0] - self.x0) // self.cell).astype(np.int64)
        i = ((xyz[:, 1] - self.y0) // self.cell).astype(np.int64)
        self.grid = np.zeros((int(i.max()) + 1, int(j.max()) + 1), bool)
        self.grid[i, j] = True

    @property
    def empty(self) -> bool:
        return not self.grid.any()

    def envelope(self) -> Polygon:
        rows, cols = self.grid.shape
        return shapely.box(self.x0, self.y0, self.x0 + cols * self.cell,
                           self.y0 + rows * self.cell)

    def share(self, x: np.ndarray, y: np.ndarray) -> float:
        """The share of the places x, y that lie in surveyed cells."""
        if not len(x):
            return 0.0
        j = np.floor((x - self.x0) / self.cell).astype(np.int64)
        i = np.floor((y - self.y0) / self.cell).astype(np.int64)
        rows, cols = self.grid.shape
        ok = (i >= 0) & (i < rows) & (j >= 0) & (j < cols)
        hit = np.zeros(len(x), bool)
        hit[ok] = self.grid[i[ok], j[ok]]
        return float(hit.mean())

    def of_area(self, poly: Any) -> float:
        """The share of ``poly`` the survey covers (sampled on a grid of half cells)."""
        x0, y0, x1, y1 = poly.bounds
        step = self.cell / 2
        gx, gy = np.meshgrid(np.arange(x0 + step / 2, x1, step), np.arange(y0 + step / 2, y1,
                                                                            step))
        gx, gy = gx.ravel(), gy.ravel()
        inside = shapely.contains_xy(poly, gx, gy)
        if not inside.any():  # smaller than a sample step: its centre
            c = poly.representative_point()
            return self.share(np.array([c.x]), np.array([c.y]))
        return self.share(gx[inside], gy[inside])

    def around(self, poly: Any, margin: float = 1.0) -> float:
        """The share of a ring ``margin`` outside ``poly`` the survey covers: under 1, the
        survey's edge cuts it (a footprint derived from the points there is truncated)."""
        ring = shapely.get_exterior_ring(shapely.buffer(poly, margin))
        n = max(8, int(ring.length / (self.cell / 4)))
        pts = shapely.line_interpolate_point(ring, np.linspace(0, 1, n, endpoint=False),
                                             normalized=True)
        xy = shapely.get_coordinates(pts)
        return self.share(xy[:, 0], xy[:, 1])


@dataclass
class Current:
    object_id: str
    type: str
    parent_id: str | None
    footprint: Polygon  # metric frame
    height: float | None  # top above base of the stored geometry, m


def _current_buildings(conn: Connection, frame: MetricFrame, coverage: Coverage
                       ) -> tuple[list[Current], list[Current]]:
    """Current buildings of the model the survey covers, and those it covers in part."""
    if coverage.empty:
        return [], []
    area_ll = frame.polygon_to_lonlat(coverage.envelope())
    c = city_objects.c
    rows = conn.execute(
        select(c.object_id, c.type, c.parent_object_id, func.ST_AsBinary(c.footprint),
               c.min_z, c.max_z)
        .where(c.valid_to.is_(None), c.footprint.is_not(None), c.type.in_(BUILDING_TYPES),
               func.ST_Intersects(c.footprint,
                                  func.ST_GeomFromText(area_ll.wkt, 4326)))).all()
    inside, partly = [], []
    for oid, typ, parent, wkb, zmin, zmax in rows:
        fp = frame.polygon_from_lonlat(shapely.from_wkb(wkb))
        if fp.is_empty or fp.area <= 0:
            continue
        parts = [p for p in shapely.get_parts(shapely.make_valid(fp)) if p.area > 0]
        poly = parts[0] if len(parts) == 1 else shapely.union_all(parts)
        height = None if zmin is None or zmax is None else float(zmax - zmin)
        share = coverage.of_area(poly)
        if share >= SURVEYED_SHARE:
            inside.append(Current(oid, typ, parent, poly, height))
        elif share > 0:  # partly outside the survey: neither compared nor touched
            partly.append(Current(oid, typ, parent, poly, height))
    return inside, partly


def _whole(candidates: list[Footprint], partly: list[Current], coverage: Coverage
           ) -> tuple[list[Footprint], list[dict[str, str]]]:
    """The footprints the survey covers whole. A footprint cut by the survey's edge, or over
    a model building the survey covers only in part, is left out with the reason: its
    points show part of a building, which would be modelled as a smaller new one."""
    tree = shapely.STRtree([m.footprint for m in partly]) if partly else None
    keep, cut = [], []
    for fp in candidates:
        over = [] if tree is None else [partly[int(k)].object_id
                                        for k in tree.query(fp.polygon, predicate="intersects")]
        if over:
            cut.append({"id": fp.id, "reason": f"over {over[0]}, which the survey covers only "
                                               "in part: not modelled"})
        elif coverage.around(fp.polygon) < SURVEYED_SHARE:
            cut.append({"id": fp.id, "reason": "at the survey's edge, partly outside it: "
                                               "not modelled"})
        else:
            keep.append(fp)
    return keep, cut


def _iou(a: Any, b: Any) -> float:
    inter = shapely.intersection(a, b).area
    union = shapely.union(a, b).area
    return inter / union if union > 0 else 0.0


def _model_height(m: BuildingModel) -> float | None:
    solid = m.lod22 if m.lod == "2.2" else m.lod12
    if solid is None:
        return None
    zs = solid.vertices[:, 2]
    return float(zs.max() - zs.min())


def _compare(ctx: JobContext, row: Any, xyz: np.ndarray, cl: Classification,
             candidates: list[Footprint], current: list[Current], frame: MetricFrame
             ) -> list[Change]:
    """Match footprints to the current buildings, reconstruct, and label every building."""
    tree = shapely.STRtree([m.footprint for m in current]) if current else None
    assigned: dict[int, list[tuple[float, Footprint]]] = {}
    unmatched: list[Footprint] = []
    for fp in candidates:
        best, best_inter = None, 0.0
        if tree is not None:
            for k in tree.query(fp.polygon):
                m = current[int(k)]
                inter = shapely.intersection(fp.polygon, m.footprint).area
                if inter >= MATCH_SHARE * min(fp.polygon.area, m.footprint.area) \
                        and inter > best_inter:
                    best, best_inter = int(k), inter
        if best is None:
            unmatched.append(fp)
        else:
            assigned.setdefault(best, []).append((best_inter, fp))

    plans: list[tuple[Change, Footprint]] = []
    changes: list[Change] = []
    unseen: list[Current] = []  # current buildings no footprint of the survey matched
    for k, m in enumerate(current):
        mine = sorted(assigned.get(k, []), key=lambda t: -t[0])
        if not mine:
            unseen.append(m)
            continue
        fp = mine[0][1]
        iou = _iou(fp.polygon, m.footprint)
        ch = Change(m.object_id, "compare", m.footprint, type=m.type, parent_id=m.parent_id)
        if iou >= FOOTPRINT_IOU_CHANGED and len(mine) == 1:
            # the model's footprint is trusted over one derived from the points
            plans.append((ch, Footprint(m.object_id, m.footprint, "model")))
        else:
            ch.change = "changed"
            ch.footprint = fp.polygon
            ch.reasons.append(f"footprint IoU {iou:.2f} with the current version "
                              f"(changed under {FOOTPRINT_IOU_CHANGED})"
                              + (f", split into {len(mine)}" if len(mine) > 1 else ""))
            plans.append((ch, Footprint(m.object_id, fp.polygon, fp.source)))
        unmatched.extend(other for _, other in mine[1:])
    # no footprint found where they stood: the points inside them tell standing from razed
    for m, inside in zip(unseen, _classes_inside(unseen, xyz, cl.classes), strict=True):
        n_building = int((inside == BUILDING).sum())
        n_ground = int((inside == GROUND).sum())
        expected = cl.density * m.footprint.area
        if n_building >= max(30, 0.2 * expected):
            ch = Change(m.object_id, "compare", m.footprint, type=m.type, parent_id=m.parent_id)
            plans.append((ch, Footprint(m.object_id, m.footprint, "model")))
        elif n_ground >= DEMOLISHED_GROUND_SHARE * expected \
                and n_building <= DEMOLISHED_BUILDING_SHARE * expected:
            changes.append(Change(
                m.object_id, "demolished", m.footprint, type=m.type, parent_id=m.parent_id,
                points=n_ground + n_building,
                density=round(float((n_ground + n_building) / m.footprint.area), 2),
                reasons=[f"{n_ground} ground and {n_building} building points where it stood "
                         f"(about {expected:.0f} points expected)"]))
        else:
            changes.append(Change(
                m.object_id, "skipped", m.footprint, type=m.type, parent_id=m.parent_id,
                reasons=[f"not enough points to tell: {n_building} building and {n_ground} "
                         "ground points in its footprint; kept as it is"]))
    for fp in unmatched:
        ch = Change(f"survey{row.id}-{fp.id}", "new", fp.polygon,
                    reasons=[f"no current building here (footprint {fp.source})"])
        plans.append((ch, Footprint(ch.object_id, fp.polygon, fp.source, fp.problems)))

    heights = {m.object_id: m.height for m in current}
    ctx.progress("reconstructing", 0, len(plans))
    models = reconstruct_buildings(
        [fp for _, fp in plans], xyz, cl.dtm.height, classification=cl.classes,
        progress=lambda done, total: ctx.progress("reconstructing", done, total))
    sparse = cl.density < MIN_DENSITY
    for (ch, _), bm in zip(plans, models, strict=True):
        ch.model = bm
        if sparse and bm.lod == "2.2":
            # a building can hold enough points (walls, a dense strip) where the survey as a
            # whole is too sparse for roof planes to be trusted: the survey's figure decides
            bm.lod = "1.2"
            bm.reasons.append(f"sparse survey: {cl.density:.2f} points/m2 (under "
                              f"{MIN_DENSITY:g}): LoD1.2 only")
        if bm.lod is None:
            ch.change = "skipped"
            ch.reasons.append("not reconstructed: " + ("; ".join(bm.reasons) or "no model"))
            changes.append(ch)
            continue
        if bm.lod != "2.2" and bm.reasons:
            ch.reasons.append("LoD1.2 only: " + "; ".join(bm.reasons))
        if ch.change == "compare":
            before, now = heights.get(ch.object_id), _model_height(bm)
            if before is None or now is None or abs(now - before) > HEIGHT_CHANGE_M:
                ch.change = "changed"
                ch.reasons.insert(0, f"height {now:.2f} m, was "
                                  + ("unknown" if before is None else f"{before:.2f} m")
                                  + f" (changed beyond {HEIGHT_CHANGE_M} m)")
            else:
                ch.change = "unchanged"
                ch.reasons.insert(0, f"height {now:.2f} m, was {before:.2f} m; footprint "
                                  "as in the model")
        changes.append(ch)
    order = {"new": 0, "changed": 1, "demolished": 2, "unchanged": 3, "skipped": 4}
    changes.sort(key=lambda c: (order[c.change], c.object_id))
    return changes


def _classes_inside(buildings: list[Current], xyz: np.ndarray, classes: np.ndarray
                    ) -> list[np.ndarray]:
    """The classes of the points inside each building's footprint (only the points within
    their joint bounds are joined: a survey holds millions)."""
    if not buildings:
        return []
    polys = [m.footprint for m in buildings]
    x0, y0, x1, y1 = shapely.total_bounds(polys)
    near = np.flatnonzero((xyz[:, 0] >= x0) & (xyz[:, 0] <= x1)
                          & (xyz[:, 1] >= y0) & (xyz[:, 1] <= y1))
    return [classes[near[ii]] for ii in points_in_footprints(polys, xyz[near, :2])]


def _effective_time(conn: Connection, acquired_at: datetime | None, changes: list[Change]
                    ) -> datetime | None:
    """When the new versions begin: the survey's acquisition time, unless some version they
    replace began later (an older survey cannot end a newer version); then the job's time
    (None)."""
    if acquired_at is None:
        return None
    ids = [c.object_id for c in changes if c.change in ("changed", "demolished")]
    if not ids:
        return acquired_at
    c = city_objects.c
    latest = conn.execute(select(func.max(c.valid_from))
                          .where(c.object_id.in_(ids), c.valid_to.is_(None))).scalar()
    return acquired_at if latest is None or latest < acquired_at else None


def _surfaces(solid: Solid, frame: MetricFrame) -> list[Surface]:
    lon, lat, h = frame.to_wgs84(solid.vertices[:, 0], solid.vertices[:, 1],
                                 solid.vertices[:, 2])
    ll = np.column_stack([lon, lat, h])
    return [Surface(rings=[ll[ring] for ring in face], semantic=sem,
                    source_rings=[solid.vertices[ring] for ring in face])
            for face, sem in zip(solid.faces, solid.semantics, strict=True)]


def to_city_object(ch: Change, frame: MetricFrame, dataset_id: int) -> CityObject:
    """A reconstructed building as the CIM store keeps it: LoD2.2 (or LoD1.2 when that is all
    it reached) as the geometry, LoD1.2 among the other LoDs, the quality figures as
    attributes."""
    m = ch.model
    assert m is not None and m.lod is not None
    main = m.lod22 if m.lod == "2.2" else m.lod12
    assert main is not None
    other = {"1.2": _surfaces(m.lod12, frame)} if m.lod == "2.2" and m.lod12 else {}
    rec = ch.record()
    attributes = {"source": "survey", "survey_dataset": dataset_id,
                  "footprint_source": m.footprint_source, "lod_reached": m.lod,
                  "rmse_m": rec["rmse_m"], "points": m.n_points,
                  "density": rec["density"], "roof_height_m": m.height and round(m.height, 2)}
    if m.reasons:
        attributes["lod_reasons"] = list(m.reasons)
    return CityObject(id=ch.object_id, type=ch.type, parent_id=ch.parent_id, lod=m.lod,
                      attributes=attributes, surfaces=_surfaces(main, frame), other_lods=other)


def _write(conn: Connection, dataset_id: int, changes: list[Change], frame: MetricFrame,
           at: datetime | None) -> dict[str, Any]:
    """New versions of the new and changed buildings; the end of the demolished ones."""
    written_changes = [c for c in changes if c.change in ("new", "changed")]
    objects = [to_city_object(c, frame, dataset_id) for c in written_changes]
    # the footprint each building was reconstructed over: the store need not make it again
    # from the ground surfaces (a union per building)
    footprints = {c.object_id: frame.polygon_to_lonlat(c.model.footprint)
                  for c in written_changes if c.model is not None}
    problems: list[Problem] = []
    written = 0
    if objects:
        loaded = load_objects(conn, objects, dataset_id, problems, valid_from=at,
                              footprint_of=lambda o: footprints.get(o.id))
        written = loaded.inserted - loaded.unchanged
    gone = [c.object_id for c in changes if c.change == "demolished"]
    ended = 0
    if gone:
        c = city_objects.c
        ended = conn.execute(update(city_objects)
                             .where(c.object_id.in_(gone), c.valid_to.is_(None))
                             .values(valid_to=func.now() if at is None else at)).rowcount
    return {"written": written, "ended": ended,
            "problems": [{"object_id": p.object_id, "reason": p.reason} for p in problems]}


def _store_changes(conn: Connection, dataset_id: int, changes: list[Change],
                   frame: MetricFrame) -> None:
    """The change list of this survey (a later run replaces it)."""
    conn.execute(city_changes.delete().where(city_changes.c.dataset_id == dataset_id))
    rows = []
    for ch in changes:
        rec = ch.record()
        fp = frame.polygon_to_lonlat(ch.footprint)
        multi = fp if isinstance(fp, MultiPolygon) else MultiPolygon([fp])
        rows.append({**rec, "dataset_id": dataset_id,
                     "footprint": WKTElement(multi.wkt, srid=4326)})
    if rows:
        conn.execute(city_changes.insert(), rows)


def model_here(url: str, dataset_id: int, *, params: dict[str, Any] | None = None,
               who: str = "cli", watch: Callable[[Any], None] | None = None,
               poll_seconds: float = 0.3, settings: Settings | None = None) -> Any:
    """Model survey ``dataset_id`` in this process (the CLI), with live progress; return the
    job's final row. The job is an ordinary one: its progress, report and errors show in the
    API as for a queued one. :class:`SurveyRefused` when the dataset cannot be modelled."""
    from service.core.db import sync_engine
    from service.jobs.execute import run_job

    engine = sync_engine(url)
    with engine.begin() as conn:
        row = conn.execute(select(datasets).where(datasets.c.id == dataset_id)).first()
        problem = survey_problem(row, dataset_id)
        if problem is not None:
            raise SurveyRefused(problem)
        job_id = submit_job(conn, "model_survey", dataset_id=dataset_id, params=params or {},
                            created_by=who, max_attempts=1, enqueue=False)
    runner = threading.Thread(target=run_job, args=(job_id, url, settings), daemon=True)
    runner.start()
    while runner.is_alive():
        if watch is not None:
            watch(_job_row(engine, job_id))
        runner.join(poll_seconds)
    final = _job_row(engine, job_id)
    if watch is not None:
        watch(final)
    return final


class SurveyRefused(Exception):
    """The dataset is not a survey that can be modelled now (the message says why)."""


def _job_row(engine: Any, job_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
