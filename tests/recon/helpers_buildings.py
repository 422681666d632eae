"""Small synthetic buildings with known roofs, sampled as an airborne survey would see them.

Each building is a rectangle (or an L of two rectangles) turned by ``angle``, with a flat,
gable, hip, shed or multi-part roof; its points are uniform first returns on the roof plus
sparse wall returns, with Gaussian height noise. The truth (footprint, roof height function,
base) is kept, so tests can measure footprint IoU and roof-height error on a raster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

KINDS = ("flat", "gable", "hip", "shed", "multi")


@dataclass
class SynthBuilding:
    kind: str
    footprint: Polygon
    roof: Callable[[np.ndarray, np.ndarray], np.ndarray]  # absolute z, NaN outside
    base_z: float


def _local(x, y, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = np.asarray(x) - cx, np.asarray(y) - cy
    return dx * c + dy * s, -dx * s + dy * c


def _rect(cx, cy, length, width, angle) -> Polygon:
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    return Polygon([(cx + u * c - v * s, cy + u * s + v * c)
                    for u, v in [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]])


def _part(kind, cx, cy, length, width, angle, base, eave, rise):
    hl, hw = length / 2, width / 2

    def f(x, y):
        u, v = _local(x, y, cx, cy, angle)
        inside = (np.abs(u) <= hl) & (np.abs(v) <= hw)
        if kind == "flat":
            h = np.full(np.shape(u), eave)
        elif kind == "gable":
            h = eave + rise * (1 - np.abs(v) / hw)
        elif kind == "hip":
            h = eave + rise / hw * np.minimum(hw - np.abs(v), hl - np.abs(u))
        else:  # shed
            h = eave + rise * (v + hw) / width
        return np.where(inside, base + h, np.nan)

    return f


def make_building(kind: str, cx: float = 0.0, cy: float = 0.0, angle: float = 0.0, *,
                  base_z: float = 0.0, length: float = 16.0, width: float = 10.0,
                  eave: float = 8.0, rise: float = 2.5) -> SynthBuilding:
    """One building; ``rise`` is the ridge above the eave (a shed's high side)."""
    if kind != "multi":
        return SynthBuilding(kind, _rect(cx, cy, length, width, angle),
                             _part(kind, cx, cy, length, width, angle, base_z, eave, rise),
                             base_z)
    # an L: a gabled main wing and a lower flat wing against one end of it
    main = _part("gable", cx, cy, length, width, angle, base_z, eave, rise)
    wl, ww = width * 0.9, length * 0.5
    c, s = math.cos(angle), math.sin(angle)
    wu, wv = length / 2 - wl / 2, width / 2 + ww / 2 - 0.01  # overlap: one polygon
    wx, wy = cx + wu * c - wv * s, cy + wu * s + wv * c
    wing = _part("flat", wx, wy, wl, ww, angle, base_z, eave * 0.6, 0.0)
    fp = shapely.union(_rect(cx, cy, length, width, angle), _rect(wx, wy, wl, ww, angle))
    fp = shapely.simplify(fp, 1e-3)

    def roof(x, y):
        z = main(x, y)
        return np.where(np.isnan(z), wing(x, y), z)

    return SynthBuilding("multi", fp, roof, base_z)


def sample(b: SynthBuilding, rng: np.random.Generator, *, density: float = 10.0,
           noise: float = 0.03, wall_density: float = 0.5) -> np.ndarray:
    """Roof returns at ``density`` per m2 and wall returns at ``wall_density`` per m2."""
    x0, y0, x1, y1 = b.footprint.bounds
    n = rng.poisson(density * (x1 - x0) * (y1 - y0))
    x, y = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    inside = shapely.contains_xy(b.footprint, x, y)
    x, y = x[inside], y[inside]
    z = b.roof(x, y) + rng.normal(0, noise, len(x))
    pts = [np.column_stack([x, y, z])]
    ring = b.footprint.exterior
    m = rng.poisson(wall_density * ring.length * 6.0)
    if m:
        at = shapely.line_interpolate_point(ring, rng.uniform(0, ring.length, m))
        wxy = shapely.get_coordinates(at)
        cxy = np.array(b.footprint.centroid.coords[0])
        step = (cxy - wxy) / np.linalg.norm(cxy - wxy, axis=1, keepdims=True)
        inward = wxy + 0.05 * step
        wxy = wxy + 0.01 * step  # on the wall's face, just inside the footprint's line
        top = b.roof(inward[:, 0], inward[:, 1])
        ok = np.isfinite(top)
        wz = b.base_z + rng.uniform(0, 1, m) * (top - b.base_z)
        pts.append(np.column_stack([wxy[ok], wz[ok]]))
    return np.concatenate(pts)


def flat_ground(z0: float = 0.0, gx: float = 0.0, gy: float = 0.0):
    def ground(x, y):
        return z0 + gx * np.asarray(x, dtype=np.float64) + gy * np.asarray(y, dtype=np.float64)
    return ground


def raster_rmse(b: SynthBuilding, model_z: Callable[[np.ndarray, np.ndarray], np.ndarray],
                cell: float = 0.5) -> tuple[float, float]:
    """RMSE of the model's roof height to the truth on a ``cell`` raster over the true
    footprint (heights above the true base), and the fraction of cells the model covers."""
    x0, y0, x1, y1 = b.footprint.bounds
    xs = np.arange(x0 + cell / 2, x1, cell)
    ys = np.arange(y0 + cell / 2, y1, cell)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    inside = shapely.contains_xy(b.footprint, gx, gy)
    gx, gy = gx[inside], gy[inside]
    truth = b.roof(gx, gy) - b.base_z
    model = model_z(gx, gy) - b.base_z
    ok = np.isfinite(model) & np.isfinite(truth)
    return float(np.sqrt(np.mean((model[ok] - truth[ok]) ** 2))), float(ok.mean())


def iou(a: Polygon, b: Polygon) -> float:
    return float(a.intersection(b).area / a.union(b).area)
