"""Building reconstruction: speed and quality on synthetic buildings, and on real AHN3 points.

No arguments; the last line printed is one JSON object.

1. Synthetic (truth known): a few hundred buildings (flat, gable, hip, shed and L-shaped
   multi-part roofs; random sizes, heights, pitches and orientations) on sloping terrain,
   each sampled as a nadir survey (12 points/m2, 3 cm height noise, sparse wall returns;
   the generator of ``tests/recon/helpers_buildings.py``).

   - ``buildings_per_s``: LoD1.2 + LoD2.2 of every building from its true footprint and the
     building points (``recon.buildings.reconstruct_buildings``, one process).
   - ``lod22_rmse_m`` / ``lod12_rmse_m``: roof height error against the truth on a 0.5 m
     raster over every true footprint, heights above the true base, pooled over all cells of
     all buildings (a building without LoD2.2 counts with its LoD1.2 in the LoD2.2 figure).
   - ``valid_fraction``: buildings whose LoD2.2 solid was built and passes the checker again
     here (the rest have only their LoD1.2); every published solid is re-checked, and
     ``published_invalid`` counts failures (expected 0).
   - ``footprint_iou``: footprints derived from the building points alone
     (``recon.footprints.derive_footprints``), each true footprint against the derived one
     overlapping it most (0 when none), mean over buildings.

2. Real: the AHN3 crop of Delft (``tests/data/lidar/ahn3_delft_cropped_1.laz``, AHN's own
   classes 2 and 6) with the BGT footprints, a stand-in DTM from the class-2 points (mean
   per 1 m cell, gaps from the nearest cell).

   - ``ahn_median_building_rmse_m``: median over buildings of the RMSE of each building's
     points to its LoD2.2 surface (3D distance, as 3DBAG reports it).
   - ``ahn_3dfier_*``: our LoD1.2 roof height (70th percentile) and our 90th percentile
     against the roof of 3dfier's LoD1 (``tests/data/cim/3dfier_testarea_lod1.json``) for the
     same buildings (same BGT ids, footprints checked to overlap): median and 90th percentile
     of the absolute difference.

    uv run python benchmarks/buildings.py
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "recon"))

from helpers_buildings import iou, make_building, raster_rmse, sample  # noqa: E402
from test_buildings_ahn import BGT, LAZ, PEER, ground_function  # noqa: E402

from recon.buildings import reconstruct_buildings  # noqa: E402
from recon.footprints import Footprint, derive_footprints, read_footprints  # noqa: E402
from recon.solids import check_solid  # noqa: E402

N_BUILDINGS = 300
SPACING = 45.0
SEED = 16
MIX = (("flat", 0.35), ("gable", 0.2), ("hip", 0.15), ("shed", 0.1), ("multi", 0.2))


def district(n: int, rng: np.random.Generator):
    def ground(x, y):
        return 12.0 + 0.02 * np.asarray(x, dtype=np.float64) - 0.01 * np.asarray(y, np.float64)

    kinds = rng.choice([k for k, _ in MIX], size=n, p=[p for _, p in MIX])
    cols = math.ceil(math.sqrt(n))
    out = []
    for i, kind in enumerate(kinds):
        cx = (i % cols) * SPACING + rng.uniform(-3, 3)
        cy = (i // cols) * SPACING + rng.uniform(-3, 3)
        width = rng.uniform(8, 14)
        length = rng.uniform(width, 26)
        pitch = math.radians(rng.uniform(15, 40))
        rise = (width if kind == "shed" else width / 2) * math.tan(pitch)
        if kind == "shed":
            rise *= 0.4  # sheds are shallow
        out.append(make_building(str(kind), cx, cy, rng.uniform(0, math.pi / 2),
                                 base_z=float(ground(cx, cy)), length=length, width=width,
                                 eave=rng.uniform(4, 25), rise=0.0 if kind == "flat" else rise))
    return out, ground


def synthetic() -> dict[str, float]:
    rng = np.random.default_rng(SEED)
    truth, ground = district(N_BUILDINGS, rng)
    pts = [sample(b, rng, density=12.0, noise=0.03) for b in truth]
    xyz = np.concatenate(pts)
    fps = [Footprint(f"s{i}", b.footprint, "given") for i, b in enumerate(truth)]
    t0 = time.perf_counter()
    models = reconstruct_buildings(fps, xyz, ground)
    dt = time.perf_counter() - t0

    se22 = se12 = 0.0
    cells = 0
    valid = published_invalid = 0
    for b, m in zip(truth, models, strict=True):
        for solid in (m.lod12, m.lod22):
            if solid is not None and not check_solid(solid).valid:
                published_invalid += 1
        if m.lod22 is not None and check_solid(m.lod22).valid:
            valid += 1
        best = "2.2" if m.lod22 is not None else "1.2"
        r22, _ = raster_rmse(b, lambda x, y, m=m, best=best: m.roof_z(x, y, best))
        r12, _ = raster_rmse(b, lambda x, y, m=m: m.roof_z(x, y, "1.2"))
        n = max(1, round(b.footprint.area / 0.25))
        se22 += r22**2 * n
        se12 += r12**2 * n
        cells += n

    t1 = time.perf_counter()
    derived = derive_footprints(xyz)
    dt_fp = time.perf_counter() - t1
    polys = [f.polygon for f in derived.footprints]
    tree = shapely.STRtree(polys)
    ious = []
    for b in truth:
        cand = tree.query(b.footprint, predicate="intersects")
        ious.append(max((iou(b.footprint, polys[j]) for j in cand), default=0.0))
    return {
        "buildings": N_BUILDINGS,
        "points": len(xyz),
        "buildings_per_s": round(N_BUILDINGS / dt, 2),
        "reconstruct_s": round(dt, 2),
        "footprint_iou": round(float(np.mean(ious)), 4),
        "footprint_iou_min": round(float(np.min(ious)), 4),
        "derived_footprints": len(polys),
        "derive_footprints_s": round(dt_fp, 2),
        "lod22_rmse_m": round(math.sqrt(se22 / cells), 4),
        "lod12_rmse_m": round(math.sqrt(se12 / cells), 4),
        "valid_fraction": round(valid / N_BUILDINGS, 4),
        "published_invalid": published_invalid,
    }


def against_3dfier(fps: list, models: list) -> tuple[list[float], list[float]]:
    """Our LoD1.2 roof height, and the 90th percentile of the roof points, minus the top of
    3dfier's LoD1 block of the same building, for every building both have (3dfier's block
    covering at least 90 % of our footprint)."""
    peer = json.loads(PEER.read_text())
    verts = np.asarray(peer["vertices"], dtype=np.float64)
    ours, p90 = [], []
    for f, m in zip(fps, models, strict=True):
        obj = peer["CityObjects"].get(f.id)
        if obj is None or obj["type"] != "Building" or m.lod12_roof_z is None:
            continue
        idx = [v for g in obj["geometry"] for shell in g["boundaries"] for face in shell
               for ring in face for v in ring]
        hull = shapely.convex_hull(shapely.multipoints(verts[idx, :2]))
        if f.polygon.intersection(hull).area < 0.9 * f.polygon.area:
            continue
        top = float(verts[idx, 2].max())
        ours.append(m.lod12_roof_z - top)
        p90.append(m.roof_percentiles["p90"] - top)
    return ours, p90


def ahn() -> dict[str, float]:
    import laspy

    las = laspy.read(LAZ)
    xyz = np.column_stack([las.x, las.y, las.z])
    cls = np.asarray(las.classification)
    bbox = (*xyz[:, :2].min(axis=0), *xyz[:, :2].max(axis=0))
    fs = read_footprints(BGT, "EPSG:7415", id_field="gml_id", bbox=bbox)
    # footprints cut by the crop's edge have only part of their points: kept out
    crop = shapely.box(*bbox)
    fps = [f for f in fs.footprints if crop.contains(f.polygon)]
    ground = ground_function(xyz[cls == 2])
    t0 = time.perf_counter()
    models = reconstruct_buildings(fps, xyz, ground, classification=cls)
    dt = time.perf_counter() - t0
    lod22 = [m for m in models if m.lod == "2.2"]
    published = [s for m in models for s in (m.lod12, m.lod22) if s is not None]
    valid = sum(check_solid(s).valid for s in published)

    d70, d90 = against_3dfier(fps, models)
    d70a, d90a = np.abs(d70), np.abs(d90)
    return {
        "ahn_buildings": len(models),
        "ahn_lod22_fraction": round(len(lod22) / len(models), 4),
        "ahn_valid_solids_fraction": round(valid / len(published), 4),
        "ahn_median_building_rmse_m": round(float(np.median([m.rmse_lod22 for m in lod22])), 4),
        "ahn_median_building_rmse_lod12_m": round(
            float(np.median([m.rmse_lod12 for m in models if m.rmse_lod12 is not None])), 4),
        "ahn_buildings_per_s": round(len(models) / dt, 2),
        "ahn_3dfier_matched": len(d70),
        "ahn_3dfier_p70_median_abs_diff_m": round(float(np.median(d70a)), 3),
        "ahn_3dfier_p70_p90_abs_diff_m": round(float(np.percentile(d70a, 90)), 3),
        "ahn_3dfier_p70_median_diff_m": round(float(np.median(d70)), 3),
        "ahn_3dfier_p90_median_abs_diff_m": round(float(np.median(d90a)), 3),
        "ahn_3dfier_p90_p90_abs_diff_m": round(float(np.percentile(d90a, 90)), 3),
        "ahn_3dfier_p90_median_diff_m": round(float(np.median(d90)), 3),
    }


def main() -> None:
    out = synthetic()
    print(json.dumps(out), file=sys.stderr)
    out.update(ahn())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
