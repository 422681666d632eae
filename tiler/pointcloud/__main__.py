"""``python -m tiler.pointcloud SRC OUT_DIR [--crs EPSG:xxxx]``: tile one file, print a summary.

A thin command line for scripts and benchmarks (the service has its own ``twinbase ingest``).
With ``--json`` the last stdout line is the result as JSON; a line ``preview <seconds>`` is
printed (and flushed) the moment the preview tileset is published.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tiler.errors import TilerInputError
from tiler.pointcloud import tile_point_cloud


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tiler.pointcloud")
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--crs", help="CRS of the coordinates (wins over the file's), e.g. EPSG:4547")
    ap.add_argument("--vertical", choices=["ellipsoidal", "orthometric"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print the result as JSON at the end")
    ap.add_argument("--progress", action="store_true", help="progress lines on stderr")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if args.progress and (now - last[0] > 0.5 or done == total):
            last[0] = now
            print(f"{stage} {done}/{total}", file=sys.stderr, flush=True)

    def preview(path: Path) -> None:
        print(f"preview {time.perf_counter() - t0:.3f} {path}", flush=True)

    try:
        r = tile_point_cloud(args.src, args.out, crs=args.crs, vertical=args.vertical,
                             progress=progress, on_preview=preview, workers=args.workers)
    except TilerInputError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    summary = {
        "points": r.points, "tiles": r.tiles, "bytes": r.bytes, "crs": r.crs,
        "bounds": r.bounds, "footprint_area_m2": r.footprint_area_m2, "density": r.density,
        "class_counts": r.class_counts, "colour": r.colour, "height_note": r.height_note,
        "acquired_at": r.acquired_at.isoformat() if r.acquired_at else None,
        "first_view_s": r.first_view_s, "elapsed_s": r.elapsed_s, "details": r.details,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
