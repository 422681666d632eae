"""Fly and model end to end: a simulated survey through the service's ``model_survey`` job,
CSF on the same points, quality against the truth, the AHN3 Delft crop, and 50,000
reconstructed buildings written into ``city_objects`` with their tiles.

Runs with no arguments (the issue's full size); ``--quick`` is a small run of every stage.
The last line printed is one JSON object with the issue's keys; a line before it holds the
details (stage times, the 3dfier comparison, the counts behind each figure).

1. **The survey.** ``recon.simulate.simulate_district``: 2,000 buildings (flat, gable, hip,
   shed, multi-part) and trees on 1 km x 1 km of sloping terrain in EPSG:4547, 12 pulses/m2,
   3 cm noise, every point unclassified; written as LAZ.
2. **Ground classification against CSF**, on the same points in this process:
   ``recon.classify.ground_filter`` (``classify_points_per_s``) and CSF (``csf_points_per_s``),
   with their ISPRS total errors against the simulator's classes (details line).
3. **The job.** An embedded PostgreSQL + PostGIS cluster; the LAZ stored as a ready LiDAR
   survey (a ``datasets`` row as an ingest leaves it: kind lidar, its CRS, its file; the
   point-cloud tiling of the ingest is not part of this chain); the ``model_survey`` job run
   in a child process (``run_job``, as a worker runs it) from that row to the model
   published: classification, DTM, footprints derived from the points (the city model is
   empty), LoD1.2 + LoD2.2, rows, CIM tiles. ``total_s`` is that process's wall time (start-up
   and imports included), ``peak_rss_mb`` the largest sum of the resident memory of it and
   its children, sampled every 50 ms from /proc. ``buildings_per_s`` is buildings over the
   job's reconstruction stage (from the job's progress rows).
4. **Quality against the truth** (from the stored rows, read back and converted to
   EPSG:4547): each true building against the stored footprint overlapping it most.
   ``recall`` = true buildings matched at IoU >= 0.5, ``precision`` = stored buildings that
   match a true one at IoU >= 0.5, ``footprint_iou`` = mean IoU of the matched pairs.
   ``lod22_rmse_m`` / ``lod12_rmse_m``: roof height on a 0.5 m raster over each matched true
   footprint, heights above the true base, pooled over all cells the model covers (the
   stored geometry for LoD2.2, or LoD1.2 where LoD2.2 failed; ``other_lods`` for LoD1.2).
5. **AHN3 Delft** (``tests/data/lidar/ahn3_delft_cropped_1.laz``, EPSG:7415, classes
   stripped): ``classify_points`` scored against AHN's own classes (``ahn_building_f1``,
   ``ahn_ground_error``); the BGT footprints wholly inside the crop reconstructed from our
   classes and our DTM: ``ahn_median_building_rmse_m`` (median over LoD2.2 buildings of the
   3D RMSE of their points to the model), ``valid_fraction`` (published solids passing
   ``recon.solids.check_solid``), and our LoD1.2 height against 3dfier's LoD1 for the same
   BGT ids (details line).
6. **write_50k_s**: 50,000 buildings shaped like the job's output (LoD2.2 surfaces with
   semantics, LoD1.2 in ``other_lods``, the job's attributes: reconstructed buildings of a
   small simulated district, repeated over a grid with their own ids) written with
   ``service.cim.store.load_objects`` and the CIM tileset built from the rows
   (``service.cim.tiles.build_city_tileset``) in one transaction, in an emptied
   ``city_objects``. The objects are made lazily inside the timed stretch, as a reader would
   make them; ``write_50k_make_s`` (details) is that making alone.

    uv run python benchmarks/reconstruction.py            # full size
    uv run python benchmarks/reconstruction.py --quick    # about a minute
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from procs import tree_rss_kb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data"
AHN = DATA / "lidar" / "ahn3_delft_cropped_1.laz"
BGT = DATA / "recon" / "bgt_pand_delft.sqlite"
SEED = 16
CELL = 0.5  # raster of the roof height error, m
MATCH_IOU = 0.5
KEYS = ("points", "buildings", "total_s", "classify_points_per_s", "csf_points_per_s",
        "buildings_per_s", "peak_rss_mb", "write_50k_s", "footprint_iou", "recall",
        "precision", "lod22_rmse_m", "lod12_rmse_m", "ahn_building_f1", "ahn_ground_error",
        "ahn_median_building_rmse_m", "valid_fraction")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- 1, 2: the survey and the ground filters ----------------------------------------------


def survey_and_ground(args: argparse.Namespace, work: Path) -> tuple[Any, Path, dict[str, Any]]:
    from recon.classify import csf_ground, ground_filter, ground_total_error
    from recon.simulate import simulate_district, write_las

    t = time.perf_counter()
    s = simulate_district(args.buildings, args.area, args.density, args.noise, seed=SEED)
    out: dict[str, Any] = {"simulate_s": round(time.perf_counter() - t, 1)}
    log(f"simulated {len(s):,} points, {len(s.buildings)} buildings in {out['simulate_s']} s")
    t = time.perf_counter()
    laz = write_las(s, work / "district.laz")
    out["write_laz_s"] = round(time.perf_counter() - t, 1)
    out["laz_mb"] = round(laz.stat().st_size / 1e6, 1)
    n = len(s)
    t = time.perf_counter()
    ours, _ = ground_filter(s.xyz)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    csf = csf_ground(s.xyz)
    t_csf = time.perf_counter() - t
    out.update({
        "ground_filter_s": round(t_ours, 2), "csf_s": round(t_csf, 2),
        "classify_points_per_s": round(n / t_ours), "csf_points_per_s": round(n / t_csf),
        "ground_error": round(ground_total_error(np.where(ours, 2, 1), s.truth_class), 5),
        "csf_ground_error": round(ground_total_error(np.where(csf, 2, 1), s.truth_class), 5),
    })
    log(f"ground filter {t_ours:.1f} s, CSF {t_csf:.1f} s")
    return s, laz, out


# --- 3: the job ---------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from service.core.settings import Settings
from service.jobs.execute import run_job
settings = Settings(database_url={url!r}, data_dir=Path({data!r}), load_samples=False,
                    in_process_worker=False)
print(run_job({job}, {url!r}, settings))
"""


def run_model_job(url: str, data_dir: Path, laz: Path) -> dict[str, Any]:
    """Store the survey, run ``model_survey`` in a child process, measure it."""
    import datetime as dt

    from sqlalchemy import select, update

    from service.core.db import sync_engine
    from service.core.tables import datasets, jobs
    from service.datasets.store import new_dataset
    from service.jobs.submit import submit_job

    engine = sync_engine(url)
    with engine.begin() as conn:
        ds = conn.execute(new_dataset("lidar", "simulated Longgang district",
                                      source_path=str(laz), sha256=None,
                                      size_bytes=laz.stat().st_size, options={},
                                      uploaded_by="benchmark")).scalar_one()
        conn.execute(update(datasets).where(datasets.c.id == ds).values(
            status="ready", crs="EPSG:4547",
            acquired_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC)))
        job_id = submit_job(conn, "model_survey", dataset_id=ds, params={}, enqueue=False,
                            max_attempts=1, created_by="benchmark")
    code = CHILD.format(root=str(ROOT), url=url, data=str(data_dir), job=job_id)
    t = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    peak, stages, last = 0, {}, None
    stage_peak: dict[str, int] = {}  # where the peak is: the largest sum seen in each stage
    while child.poll() is None:
        rss = tree_rss_kb(child.pid)
        peak = max(peak, rss)
        with engine.connect() as conn:
            name = conn.execute(select(jobs.c.stage).where(jobs.c.id == job_id)).scalar()
        if name and name != last:
            stages[name] = time.perf_counter() - t
            last = name
        key = last or "starting"
        stage_peak[key] = max(stage_peak.get(key, 0), rss)
        time.sleep(0.05)
    total = time.perf_counter() - t
    status = child.stdout.read().decode().strip() if child.stdout else ""
    with engine.connect() as conn:
        job = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    if status != "succeeded":
        raise SystemExit(f"model_survey {status}: {job.error}")
    report = job.report or {}
    marks = [*sorted(stages.items(), key=lambda kv: kv[1]), ("end", total)]
    stage_s = {a: round(marks[i + 1][1] - ta, 2) for i, (a, ta) in enumerate(marks[:-1])}
    peak_mb = {k: round(v / 1024) for k, v in stage_peak.items()}
    log(f"model_survey {total:.1f} s, peak RSS {peak / 1024:.0f} MB, stages {stage_s}, "
        f"peak RSS by stage {peak_mb}")
    return {"dataset_id": ds, "total_s": total, "peak_rss_mb": peak / 1024,
            "stages_s": stage_s, "stage_peak_rss_mb": peak_mb, "report": report, "engine": engine}


# --- 4: quality against the truth ---------------------------------------------------------


def _plane_z(poly3: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height at x, y of the plane through a planar 3D ring."""
    a = np.column_stack([poly3[:, 0] - poly3[0, 0], poly3[:, 1] - poly3[0, 1],
                         np.ones(len(poly3))])
    coef, *_ = np.linalg.lstsq(a, poly3[:, 2], rcond=None)
    return coef[0] * (x - poly3[0, 0]) + coef[1] * (y - poly3[0, 1]) + coef[2]


class StoredRoof:
    """A stored building's roof surfaces, back in EPSG:4547 (x, y, orthometric z)."""

    def __init__(self, rings: list[np.ndarray]) -> None:
        self.rings = rings
        self.polys = [shapely.Polygon(r[:, :2]) for r in rings]

    def z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.full(x.shape, np.nan)
        for ring, poly in zip(self.rings, self.polys, strict=True):
            if poly.area <= 1e-6:
                continue
            inside = shapely.contains_xy(poly, x, y)
            if inside.any():
                z = _plane_z(ring, x[inside], y[inside])
                out[inside] = np.fmax(out[inside], z)
        return out


def stored_buildings(engine: Any) -> list[dict[str, Any]]:
    from sqlalchemy import func, select

    from service.cim.tables import city_objects
    from service.cim.wkb import polygons_from_wkb
    from tiler.crs import FromWgs84

    back = FromWgs84("EPSG:4547")

    def to_local(rings_ll: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for r in rings_ll:
            x, y, z = back(r[:, 0], r[:, 1], r[:, 2])
            out.append(np.column_stack([x, y, z]))
        return out

    c = city_objects.c
    rows = []
    with engine.connect() as conn:
        for oid, lod, fp, geom, sem, other in conn.execute(
                select(c.object_id, c.lod, func.ST_AsBinary(c.footprint),
                       func.ST_AsBinary(c.geom, "NDR"), c.semantics, c.other_lods)
                .where(c.valid_to.is_(None))):
            foot = shapely.from_wkb(bytes(fp))
            foot = shapely.transform(foot, lambda a: np.column_stack(
                back(a[:, 0], a[:, 1], np.zeros(len(a)))[:2]))
            kinds = (sem or {}).get("surfaces") or []
            faces = polygons_from_wkb(bytes(geom))
            roof = [np.asarray(rings[0], dtype=np.float64)
                    for k, rings in zip(kinds, faces, strict=False) if k == "RoofSurface"]
            lod12 = None
            if "1.2" in (other or {}):
                g = other["1.2"]
                lod12 = [np.asarray(p[0], dtype=np.float64)
                         for k, p in zip(g["surfaces"], g["geometry"]["coordinates"],
                                         strict=True) if k == "RoofSurface"]
            roof22 = StoredRoof(to_local(roof))
            rows.append({"id": oid, "lod": lod, "footprint": foot, "lod22": roof22,
                         "lod12": StoredRoof(to_local(lod12)) if lod12 else roof22})
    return rows


def quality(survey: Any, stored: list[dict[str, Any]]) -> dict[str, Any]:
    truth = survey.buildings
    polys = [r["footprint"] for r in stored]
    tree = shapely.STRtree(polys) if polys else None
    pairs: list[tuple[Any, dict[str, Any], float]] = []
    matched_stored: set[int] = set()
    for b in truth:
        best, best_iou = None, 0.0
        if tree is not None:
            for k in tree.query(b.footprint, predicate="intersects"):
                p = polys[int(k)]
                iou = shapely.intersection(b.footprint, p).area / shapely.union(b.footprint,
                                                                                p).area
                if iou > best_iou:
                    best, best_iou = int(k), iou
        if best is not None and best_iou >= MATCH_IOU:
            pairs.append((b, stored[best], best_iou))
            matched_stored.add(best)
    se = {"2.2": 0.0, "1.2": 0.0}
    cells = {"2.2": 0, "1.2": 0}
    covered = total_cells = 0
    for b, row, _ in pairs:
        x0, y0, x1, y1 = b.footprint.bounds
        gx, gy = np.meshgrid(np.arange(x0 + CELL / 2, x1, CELL), np.arange(y0 + CELL / 2, y1,
                                                                            CELL))
        gx, gy = gx.ravel(), gy.ravel()
        inside = shapely.contains_xy(b.footprint, gx, gy)
        gx, gy = gx[inside], gy[inside]
        true_h = b.height(gx, gy)
        for lod, key in (("2.2", "lod22"), ("1.2", "lod12")):
            model_h = row[key].z(gx, gy) - b.base_z
            ok = np.isfinite(model_h) & np.isfinite(true_h)
            se[lod] += float(((model_h[ok] - true_h[ok]) ** 2).sum())
            cells[lod] += int(ok.sum())
            if lod == "2.2":
                covered += int(ok.sum())
                total_cells += len(gx)
    by_kind: dict[str, list[float]] = {}
    for b, _, iou in pairs:
        by_kind.setdefault(b.roof_type, []).append(iou)
    return {
        "footprint_iou": round(float(np.mean([p[2] for p in pairs])) if pairs else 0.0, 4),
        "footprint_iou_all_truth": round(sum(p[2] for p in pairs) / max(1, len(truth)), 4),
        "recall": round(len(pairs) / max(1, len(truth)), 4),
        "precision": round(len(matched_stored) / max(1, len(stored)), 4),
        "true_buildings": len(truth), "stored_buildings": len(stored),
        "stored_lod22": sum(r["lod"] == "2.2" for r in stored),
        "lod22_rmse_m": round(math.sqrt(se["2.2"] / max(1, cells["2.2"])), 4),
        "lod12_rmse_m": round(math.sqrt(se["1.2"] / max(1, cells["1.2"])), 4),
        "raster_cells_covered": round(covered / max(1, total_cells), 4),
        "iou_by_roof_type": {k: round(float(np.mean(v)), 3) for k, v in sorted(by_kind.items())},
    }


# --- 5: AHN3 Delft --------------------------------------------------------------------------


def ahn() -> dict[str, Any]:
    import laspy

    # the comparison with 3dfier's LoD1 is the one of the buildings benchmark (a sibling
    # script: this one's folder is first on sys.path when it runs)
    from buildings import against_3dfier

    from recon.buildings import reconstruct_buildings
    from recon.classify import BUILDING, class_f1, classify_points, ground_total_error
    from recon.footprints import read_footprints
    from recon.solids import check_solid

    las = laspy.read(AHN)
    xyz = np.column_stack([las.x, las.y, las.z])
    truth = np.asarray(las.classification)
    t = time.perf_counter()
    cl = classify_points(xyz, np.asarray(las.return_number), np.asarray(las.number_of_returns),
                         np.ones(len(xyz), np.uint8), crs="EPSG:7415")
    t_cl = time.perf_counter() - t
    bbox = (*xyz[:, :2].min(axis=0), *xyz[:, :2].max(axis=0))
    fs = read_footprints(BGT, "EPSG:7415", id_field="gml_id", bbox=bbox)
    crop = shapely.box(*bbox)
    fps = [f for f in fs.footprints if crop.contains(f.polygon)]
    t = time.perf_counter()
    models = reconstruct_buildings(fps, xyz, cl.dtm.height, classification=cl.classes)
    t_rec = time.perf_counter() - t
    lod22 = [m for m in models if m.lod == "2.2"]
    published = [s for m in models for s in (m.lod12, m.lod22) if s is not None]
    valid = sum(check_solid(s).valid for s in published)

    ours, p90 = against_3dfier(fps, models)
    log(f"AHN: classified in {t_cl:.1f} s, {len(models)} buildings in {t_rec:.1f} s")
    return {
        "ahn_points": len(xyz),
        "ahn_building_f1": round(class_f1(cl.classes, truth, BUILDING), 4),
        "ahn_ground_error": round(ground_total_error(cl.classes, truth), 5),
        "ahn_buildings": len(models),
        "ahn_lod22_fraction": round(len(lod22) / max(1, len(models)), 4),
        "ahn_median_building_rmse_m": round(float(np.median([m.rmse_lod22 for m in lod22])), 4)
        if lod22 else None,
        "ahn_median_building_rmse_lod12_m": round(float(np.median(
            [m.rmse_lod12 for m in models if m.rmse_lod12 is not None])), 4),
        "valid_fraction": round(valid / max(1, len(published)), 4),
        "ahn_classify_s": round(t_cl, 2), "ahn_reconstruct_s": round(t_rec, 2),
        "vs_3dfier_lod1": {
            "matched": len(ours),
            "ours_lod12_median_diff_m": round(float(np.median(ours)), 3) if ours else None,
            "ours_lod12_median_abs_diff_m": round(float(np.median(np.abs(ours))), 3)
            if ours else None,
            "ours_lod12_p90_abs_diff_m": round(float(np.percentile(np.abs(ours), 90)), 3)
            if ours else None,
            "ours_p90_median_abs_diff_m": round(float(np.median(np.abs(p90))), 3)
            if p90 else None,
        },
    }


# --- 6: writing 50,000 buildings -----------------------------------------------------------


def _template_objects(n: int) -> list[Any]:
    """Reconstructed buildings of a small simulated district as the job stores them."""
    from recon.buildings import reconstruct_buildings
    from recon.footprints import Footprint
    from recon.simulate import simulate_district
    from service.cim.fly import Change, MetricFrame, to_city_object

    side = 30.0 * math.ceil(math.sqrt(n))
    s = simulate_district(n, side, 12.0, 0.03, seed=SEED + 1)
    fps = [Footprint(f"t{b.id}", b.footprint, "derived") for b in s.buildings]
    models = reconstruct_buildings(fps, s.xyz, s.ground, classification=s.truth_class)
    from pyproj import CRS

    frame = MetricFrame(CRS("EPSG:4547"), None, s.xyz[:100].copy())
    out = []
    for fp, m in zip(fps, models, strict=True):
        if m.lod is None:
            continue
        ch = Change(fp.id, "new", fp.polygon, model=m)
        out.append(to_city_object(ch, frame, 0))
    return out


def _shift(k: int, n_templates: int, per_row: int, step_deg: float) -> np.ndarray:
    block = k // n_templates
    return np.array([(block % per_row) * step_deg, (block // per_row) * step_deg, 0.0])


def _copies(templates: list[Any], n: int, step_deg: float) -> Iterator[Any]:
    """``n`` objects: the templates repeated over a grid of ``step_deg`` (lon/lat) blocks."""
    import dataclasses

    from readers.cim import Surface

    per_row = math.ceil(math.sqrt(math.ceil(n / len(templates))))
    for k in range(n):
        t = templates[k % len(templates)]
        shift = _shift(k, len(templates), per_row, step_deg)

        def moved(surfaces: list[Any], shift: np.ndarray = shift) -> list[Any]:
            # source_rings (metres) are read for heights only: kept as they are
            return [Surface(rings=[r + shift for r in s.rings], semantic=s.semantic,
                            source_rings=s.source_rings) for s in surfaces]

        yield dataclasses.replace(
            t, id=f"w{k}", surfaces=moved(t.surfaces),
            other_lods={lod: moved(sf) for lod, sf in t.other_lods.items()})


def write_50k(engine: Any, data_dir: Path, n: int, templates: list[Any]) -> dict[str, Any]:
    from sqlalchemy import delete, update

    from readers.cim import Problem
    from service.cim.ingest import MAX_TRIANGLES_PER_TILE
    from service.cim.store import load_objects
    from service.cim.tables import city_changes, city_objects
    from service.cim.tiles import build_city_tileset
    from service.core.tables import datasets
    from service.datasets.store import new_dataset

    lons = np.concatenate([r[:, 0] for t in templates for s in t.surfaces for r in s.rings])
    step = float(lons.max() - lons.min()) * 1.05
    t = time.perf_counter()
    for _ in _copies(templates, n, step):
        pass
    make_s = time.perf_counter() - t
    with engine.begin() as conn:
        conn.execute(delete(city_changes))
        conn.execute(delete(city_objects))
        ds = conn.execute(new_dataset("cim", "50k reconstructed buildings", source_path="-",
                                      sha256=None, size_bytes=0, options={},
                                      uploaded_by="benchmark")).scalar_one()
        conn.execute(update(datasets).where(datasets.c.id == ds).values(status="ready"))
    out_dir = data_dir / "tiles50k"
    problems: list[Problem] = []
    t = time.perf_counter()
    # the job hands the store the footprint each building was reconstructed over; here the
    # template's, moved with the copy
    per_row = math.ceil(math.sqrt(math.ceil(n / len(templates))))
    footprints = [t.footprint for t in templates]

    def footprint_of(obj: Any) -> Any:
        k = int(obj.id[1:])
        shift = _shift(k, len(templates), per_row, step)[:2]
        return shapely.transform(footprints[k % len(templates)], lambda c: c + shift)

    with engine.begin() as conn:
        loaded = load_objects(conn, _copies(templates, n, step), ds, problems,
                              footprint_of=footprint_of)
        t_load = time.perf_counter() - t
        tiles = build_city_tileset(conn, out_dir, data_dir / "tiles",
                                   max_triangles_per_tile=MAX_TRIANGLES_PER_TILE)
        t_tiles = time.perf_counter() - t - t_load
    total = time.perf_counter() - t
    log(f"write {n:,}: load {t_load:.1f} s, tiles {t_tiles:.1f} s ({tiles.tiles} tiles)")
    return {"write_50k_s": round(total, 2), "write_50k_load_s": round(t_load, 2),
            "write_50k_tiles_s": round(t_tiles, 2), "write_50k_make_s": round(make_s, 2),
            "write_objects": loaded.inserted, "write_tiles": tiles.tiles,
            "write_triangles": tiles.triangles, "write_problems": len(problems)}


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buildings", type=int, default=2000)
    ap.add_argument("--area", type=float, default=1000.0, help="side of the district, m")
    ap.add_argument("--density", type=float, default=12.0, help="pulses per m2")
    ap.add_argument("--noise", type=float, default=0.03, help="height noise, m")
    ap.add_argument("--write", type=int, default=50_000, help="buildings written (write_50k_s)")
    ap.add_argument("--quick", action="store_true",
                    help="a small run of every stage: 60 buildings on 300 m, 2,000 written")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.quick:
        args.buildings, args.area, args.write = 60, 300.0, 2000

    from service.core import db
    from service.runtime.embedded_pg import EmbeddedPostgres

    load_before = [round(v, 2) for v in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="recon_bench_"))
    os.chmod(work, 0o755)  # the cluster runs as the postgres user when we are root
    details: dict[str, Any] = {"load_before": load_before, "cores": os.cpu_count()}
    survey, laz, ground = survey_and_ground(args, work)
    details.update(ground)
    n_points = len(survey)
    survey.xyz = survey.xyz[:0]  # the truth needs the buildings, not the points
    survey.truth_class = survey.truth_class[:0]
    survey.building_id = survey.building_id[:0]
    survey.return_number = survey.return_number[:0]
    survey.number_of_returns = survey.number_of_returns[:0]

    pg = EmbeddedPostgres(work / "cluster")
    pg.start()
    try:
        db.upgrade(pg.url)
        job = run_model_job(pg.url, work / "var", laz)
        report = job["report"]
        recon_s = job["stages_s"].get("reconstructing")
        stored = stored_buildings(job["engine"])
        q = quality(survey, stored)
        log(f"quality: {q}")
        details.update(q)
        details["job_stages_s"] = job["stages_s"]
        details["job_stage_peak_rss_mb"] = job["stage_peak_rss_mb"]
        details["job_report_total_s"] = report.get("total_s")
        details["job_lods"] = report.get("lods")
        details["job_footprints"] = (report.get("footprints") or {}).get("count")
        reconstructed = sum((report.get("lods") or {}).values())
        templates = _template_objects(40 if args.quick else 120)
        details.update(write_50k(job["engine"], work / "var", args.write, templates))
    finally:
        pg.destroy()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    details.update(ahn())
    details["load_after"] = [round(v, 2) for v in os.getloadavg()]
    result = {
        "points": n_points,
        "buildings": len(survey.buildings),
        "total_s": round(job["total_s"], 2),
        "classify_points_per_s": details["classify_points_per_s"],
        "csf_points_per_s": details["csf_points_per_s"],
        "buildings_per_s": round(reconstructed / recon_s, 2) if recon_s else None,
        "peak_rss_mb": round(job["peak_rss_mb"]),
        "write_50k_s": details["write_50k_s"],
        **{k: details[k] for k in ("footprint_iou", "recall", "precision", "lod22_rmse_m",
                                   "lod12_rmse_m", "ahn_building_f1", "ahn_ground_error",
                                   "ahn_median_building_rmse_m", "valid_fraction")},
    }
    assert tuple(result) == KEYS
    print(json.dumps(details))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
