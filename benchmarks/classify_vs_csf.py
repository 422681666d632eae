"""Ground classification: recon's filter against CSF, on a simulated district and on AHN3.

Runs with no arguments. The workload:

- a simulated Longgang district (``recon.simulate``: 500 buildings on 700 x 700 m, 12
  pulses/m2, 3 cm noise, unclassified, about 6.3 M points) whose every point's true class
  is known;
- the AHN3 Delft crop (``tests/data/lidar/ahn3_delft_cropped_1.laz``, 640,510 points) with
  its classes stripped, scored against AHN's own classes.

On each, the same points go through ``recon.classify.ground_filter`` and through CSF
(``cloth-simulation-filter`` from PyPI, via ``recon.classify.csf_ground``: cloth 1 m,
rigidness 2, slope smoothing on, class threshold 0.5 m, 500 iterations). Each is timed
(wall clock, median of ``--repeat`` runs) and scored by the ISPRS total error (share of points
put on the wrong side of ground / non-ground). The whole classification
(``recon.classify.classify_points``: ground, DTM, height above ground, building and vegetation)
is timed and scored as well (building-point F1).

JSON keys: ``points`` (simulated), ``classify_points_per_s`` and ``csf_points_per_s`` (ground
classification, simulated), ``full_classify_points_per_s`` (the whole classification),
``ground_error`` and ``csf_ground_error`` (simulated), ``building_f1`` (simulated), and the
same on AHN3: ``ahn_points``, ``ahn_classify_points_per_s``, ``ahn_csf_points_per_s``,
``ahn_ground_error``, ``ahn_csf_ground_error``, ``ahn_building_f1``; ``load_1min``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import laspy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon.classify import (
    class_f1,
    classify_points,
    csf_ground,
    ground_filter,
    ground_total_error,
)
from recon.simulate import simulate_district

AHN = Path(__file__).resolve().parents[1] / "tests" / "data" / "lidar" / "ahn3_delft_cropped_1.laz"


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def _measure(name: str, xyz, rn, nr, truth, repeat: int) -> dict[str, float]:
    n = xyz.shape[0]
    log = lambda msg: print(f"[{name}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    (ours, _), t_ours = _timed(lambda: ground_filter(xyz), repeat)
    log(f"ground_filter {n:,} points in {t_ours:.2f} s")
    csf, t_csf = _timed(lambda: csf_ground(xyz), repeat)
    log(f"CSF {n:,} points in {t_csf:.2f} s")
    full, t_full = _timed(lambda: classify_points(xyz, rn, nr), repeat)
    log(f"classify_points in {t_full:.2f} s ({full.seconds})")
    return {
        "points": n,
        "classify_points_per_s": round(n / t_ours),
        "csf_points_per_s": round(n / t_csf),
        "full_classify_points_per_s": round(n / t_full),
        "ground_error": round(ground_total_error(np.where(ours, 2, 1), truth), 5),
        "csf_ground_error": round(ground_total_error(np.where(csf, 2, 1), truth), 5),
        "full_ground_error": round(ground_total_error(full.classes, truth), 5),
        "building_f1": round(class_f1(full.classes, truth, 6), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buildings", type=int, default=500)
    ap.add_argument("--area", type=float, default=700.0, help="side of the district, metres")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    t = time.perf_counter()
    survey = simulate_district(args.buildings, args.area, 12.0, 0.03, seed=16)
    print(f"simulated {len(survey):,} points in {time.perf_counter() - t:.1f} s",
          file=sys.stderr, flush=True)
    sim = _measure("sim", survey.xyz, survey.return_number, survey.number_of_returns,
                   survey.truth_class, args.repeat)
    del survey

    las = laspy.read(AHN)
    xyz = np.column_stack([las.x, las.y, las.z])
    ahn = _measure("ahn", xyz, np.asarray(las.return_number), np.asarray(las.number_of_returns),
                   np.asarray(las.classification), args.repeat)

    result = dict(sim)
    result.update({f"ahn_{k}": v for k, v in ahn.items()})
    # the names for the AHN quality keys: the whole classification's figures
    result["ahn_ground_error"] = ahn["full_ground_error"]
    result["ahn_filter_ground_error"] = ahn["ground_error"]
    result["load_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
