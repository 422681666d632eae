"""A synthetic district of N LoD2 buildings around Longgang (EPSG:4547 + Yellow Sea 1985 heights)
as CityJSON 2.0, and a timing of parse + tile for it.

    uv run python benchmarks/synthetic_city.py --buildings 50000 [--out FILE] [--tiles DIR]

Buildings sit one per plot on a jittered grid over x 500000-510000, y 2505000-2515000 (so they
do not overlap); footprints are rotated rectangles and L-shapes of 8-60 m, heights log-normal
(low houses with gable roofs, flat-roofed blocks and a few towers), ground 20-80 m. The last
line printed is one JSON object with the timings.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CRS_URL = ("https://www.opengis.net/def/crs-compound?1=https://www.opengis.net/def/crs/EPSG/0/4547"
           "&2=https://www.opengis.net/def/crs/EPSG/0/5737")
X0, Y0, SIDE = 500000.0, 2505000.0, 10000.0


def _footprint(rng: np.random.Generator, plot: float) -> np.ndarray:
    """Counter-clockwise footprint (k, 2) centred on 0, fitting in a plot of side ``plot``."""
    w = rng.uniform(8, plot * 0.7)
    d = rng.uniform(8, min(w, plot * 0.7))
    if rng.random() < 0.3:  # L-shape: a rectangle with one corner cut out
        cw, cd = w * rng.uniform(0.3, 0.6), d * rng.uniform(0.3, 0.6)
        pts = np.array([[0, 0], [w, 0], [w, d - cd], [w - cw, d - cd], [w - cw, d], [0, d]])
    else:
        pts = np.array([[0, 0], [w, 0], [w, d], [0, d]])
    pts = pts - pts.mean(axis=0)
    a = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ rot.T


def generate(n: int, seed: int = 4547) -> dict:
    rng = np.random.default_rng(seed)
    per_side = int(np.ceil(np.sqrt(n)))
    plot = SIDE / per_side
    verts: list[list[float]] = []
    objects: dict[str, dict] = {}
    for i in range(n):
        gx, gy = i % per_side, i // per_side
        cx = X0 + (gx + 0.5) * plot + rng.uniform(-0.1, 0.1) * plot
        cy = Y0 + (gy + 0.5) * plot + rng.uniform(-0.1, 0.1) * plot
        ground = 20 + 60 * (gx / per_side) * (gy / per_side) + rng.uniform(0, 2)
        height = float(np.clip(rng.lognormal(2.6, 0.6), 4, 250))
        fp = _footprint(rng, plot) + np.array([cx, cy])
        k = len(fp)
        gable = k == 4 and height < 15 and rng.random() < 0.7
        base = len(verts)
        eave = ground + (height * 0.75 if gable else height)
        verts += [[x, y, ground] for x, y in fp] + [[x, y, eave] for x, y in fp]
        bottom = list(range(base, base + k))
        top = list(range(base + k, base + 2 * k))
        surfaces = [[bottom[::-1]]]  # ground faces down
        kinds = [0]
        if gable:  # ridge along edge 0-1 direction, over the middle of the short side
            r0 = (fp[0] + fp[3]) / 2
            r1 = (fp[1] + fp[2]) / 2
            ridge = len(verts)
            verts += [[*r0, ground + height], [*r1, ground + height]]
            b, t = bottom, top
            surfaces += [[[b[0], b[1], t[1], t[0]]], [[b[2], b[3], t[3], t[2]]],
                         [[b[1], b[2], t[2], ridge + 1, t[1]]],
                         [[b[3], b[0], t[0], ridge, t[3]]]]
            kinds += [1, 1, 1, 1]
            surfaces += [[[t[0], t[1], ridge + 1, ridge]], [[t[2], t[3], ridge, ridge + 1]]]
            kinds += [2, 2]
        else:
            for j in range(k):
                a, c = bottom[j], bottom[(j + 1) % k]
                surfaces.append([[a, c, top[(j + 1) % k], top[j]]])
                kinds.append(1)
            surfaces.append([top])
            kinds.append(2)
        objects[f"LG-{i:06d}"] = {
            "type": "Building",
            "attributes": {"measuredHeight": round(height, 2),
                           "storeysAboveGround": max(1, int(height // 3.2)),
                           "roofType": "gable" if gable else "flat",
                           "function": ["residential", "office", "industrial", "school"][i % 4]},
            "geometry": [{
                "type": "Solid", "lod": "2.2", "boundaries": [surfaces],
                "semantics": {"surfaces": [{"type": "GroundSurface"}, {"type": "WallSurface"},
                                           {"type": "RoofSurface"}],
                              "values": [kinds]},
            }],
        }
    v = np.asarray(verts)
    translate = v.min(axis=0).round(0)
    ints = np.round((v - translate) / 0.001).astype(np.int64)
    return {
        "type": "CityJSON", "version": "2.0",
        "transform": {"scale": [0.001, 0.001, 0.001], "translate": translate.tolist()},
        "metadata": {"referenceSystem": CRS_URL},
        "CityObjects": objects,
        "vertices": ints.tolist(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buildings", type=int, default=50_000)
    ap.add_argument("--out", type=Path, help="where to write the CityJSON (default: temp dir)")
    ap.add_argument("--tiles", type=Path, help="tileset output directory (default: temp dir)")
    ap.add_argument("--max-triangles", type=int, default=100_000)
    args = ap.parse_args()

    from readers.cim import parse_city_file
    from service.cim.mesh import to_mesh_features
    from tiler.mesh import tile_features

    tmp = Path(tempfile.mkdtemp(prefix="synthetic_city_"))
    out = args.out or tmp / "longgang_synthetic.city.json"
    t = time.perf_counter()
    doc = generate(args.buildings)
    out.write_text(json.dumps(doc, separators=(",", ":")))
    gen_s = time.perf_counter() - t
    del doc

    t0 = time.perf_counter()
    parsed = parse_city_file(out)
    t1 = time.perf_counter()
    res = tile_features(to_mesh_features(parsed.objects), args.tiles or tmp / "tiles",
                        max_triangles_per_tile=args.max_triangles)
    t2 = time.perf_counter()
    print(json.dumps({
        "synthetic_buildings": args.buildings,
        "file_mb": round(out.stat().st_size / 1e6, 1),
        "generate_s": round(gen_s, 2),
        "parse_s": round(t1 - t0, 2),
        "tile_s": round(t2 - t1, 2),
        "synthetic_s": round(t2 - t0, 2),
        "objects": len(parsed.objects),
        "problems": len(parsed.problems),
        "features_tiled": res.features,
        "tiles": res.tiles,
        "triangles": res.triangles,
        "triangles_per_s": round(res.triangles / (t2 - t0)),
        "glb_mb": round(res.bytes / 1e6, 1),
        "crs": parsed.report.crs,
        "height_note": parsed.report.height_note,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))


if __name__ == "__main__":
    main()
