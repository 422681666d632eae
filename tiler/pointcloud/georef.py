"""Source CRS coordinates to the tileset's local east-north-up frame, fast.

The exact path is PROJ: source -> longitude/latitude (always_xy, so LAS X is the easting
whatever the CRS's axis order) -> ellipsoidal height (EGM96 for orthometric heights, via
:class:`tiler.crs.ToWgs84`) -> ECEF -> ENU. PROJ EPSG:4547 -> 4978 (benchmarks/RESULTS.md) is slow
enough that it alone would use a large share of the 2-core budget of
issue 3 (2 M points/s end to end). Over a survey-sized area the map is very smooth, so we fit
it once, exactly, with PROJ on a few hundred nodes and evaluate a polynomial per point
(one BLAS product, many times faster). The fit is checked against PROJ on a second, offset
set of nodes; when it misses by more than ``FIT_TOLERANCE_M`` (huge or awkward areas, a
geoid kink) every point goes through PROJ instead. Points outside the fitted box (a header
whose bounds are wrong) also go through PROJ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tiler.crs import ToWgs84
from tiler.frames import EnuFrame, geodetic_to_ecef

FIT_TOLERANCE_M = 5e-4
SUB_CHUNK = 32768


@lru_cache(maxsize=8)
def _to_wgs84(crs_wkt: str, vertical: str | None) -> ToWgs84:
    return ToWgs84(crs_wkt, vertical=vertical)


def _basis(s: np.ndarray, t: np.ndarray, zm: np.ndarray) -> np.ndarray:
    """Cubic in the horizontal position, plus height times a quadratic (the ellipsoid normal
    tilts across the area)."""
    n = len(s)
    m = np.empty((n, 16), order="F")  # columns contiguous: filled one by one
    m[:, 0] = 1.0
    m[:, 1] = s
    m[:, 2] = t
    np.multiply(s, s, out=m[:, 3])
    np.multiply(s, t, out=m[:, 4])
    np.multiply(t, t, out=m[:, 5])
    np.multiply(m[:, 3], s, out=m[:, 6])
    np.multiply(m[:, 3], t, out=m[:, 7])
    np.multiply(m[:, 5], s, out=m[:, 8])
    np.multiply(m[:, 5], t, out=m[:, 9])
    np.multiply(m[:, :6], zm[:, None], out=m[:, 10:16])
    return m


@dataclass(frozen=True)
class LocalMapper:
    """Picklable: sent to every worker process."""

    crs_wkt: str
    vertical: str | None
    z_factor: float
    frame_origin: tuple[float, float, float]  # lon, lat, ellipsoidal height of the ENU origin
    center: tuple[float, float]  # fit domain centre (source units)
    half: tuple[float, float]  # fit domain half sizes (source units)
    coef: np.ndarray | None  # (16, 3) or None when the fit is not good enough
    fit_error_m: float

    @property
    def frame(self) -> EnuFrame:
        return EnuFrame(*self.frame_origin)

    def exact(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        lon, lat, h = _to_wgs84(self.crs_wkt, self.vertical)(x, y, np.asarray(z) * self.z_factor)
        return _frame(self.frame_origin).from_ecef(geodetic_to_ecef(lon, lat, h))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(n, 3) ENU metres for source coordinates."""
        if self.coef is None:
            return self.exact(x, y, z)
        s = (x - self.center[0]) / self.half[0]
        t = (y - self.center[1]) / self.half[1]
        zm = z * self.z_factor
        out = np.empty((len(s), 3))
        # pieces of 32 k points keep the 16-column basis in cache: several times faster than
        # one basis of 500 k points (fresh pages, cache misses; benchmarks/RESULTS.md)
        for a in range(0, len(s), SUB_CHUNK):
            b = a + SUB_CHUNK
            np.matmul(_basis(s[a:b], t[a:b], zm[a:b]), self.coef, out=out[a:b])
        outside = (np.abs(s) > 1.0) | (np.abs(t) > 1.0)
        if outside.any():
            out[outside] = self.exact(x[outside], y[outside], z[outside])
        return out


@lru_cache(maxsize=8)
def _frame(origin: tuple[float, float, float]) -> EnuFrame:
    return EnuFrame(*origin)


def build_mapper(to_wgs84: ToWgs84, crs_wkt: str, vertical: str | None, z_factor: float,
                 mins: tuple[float, float, float], maxs: tuple[float, float, float],
                 origin: tuple[float, float, float]) -> LocalMapper:
    """Fit the source -> ENU map over ``mins``..``maxs`` (source units, widened a little)."""
    cx, cy = (mins[0] + maxs[0]) / 2, (mins[1] + maxs[1]) / 2
    # a floor on the half sizes relative to the coordinates keeps a one-point (or one-line)
    # survey fittable in metres, feet and degrees alike
    hx = max((maxs[0] - mins[0]) / 2 * 1.05, 1e-7 * max(abs(cx), 1.0))
    hy = max((maxs[1] - mins[1]) / 2 * 1.05, 1e-7 * max(abs(cy), 1.0))
    z_lo, z_hi = mins[2] * z_factor, maxs[2] * z_factor
    z_lo, z_hi = z_lo - 50.0, z_hi + 50.0
    base = LocalMapper(crs_wkt, vertical, z_factor, origin, (cx, cy), (hx, hy), None, np.inf)

    def nodes(k: int, shift: float) -> tuple[np.ndarray, ...]:
        u = np.linspace(-1, 1, k) if not shift else (np.arange(k) + 0.5) / k * 2 - 1
        zs = np.array([z_lo, (z_lo + z_hi) / 2, z_hi])
        s, t, zz = np.meshgrid(u, u, zs, indexing="ij")
        return s.ravel(), t.ravel(), zz.ravel()

    s, t, zm = nodes(13, 0)
    try:
        target = base.exact(cx + s * hx, cy + t * hy, zm / z_factor)
        if not np.isfinite(target).all():
            return base
        coef, *_ = np.linalg.lstsq(_basis(s, t, zm), target, rcond=None)
        s2, t2, z2 = nodes(12, 0.5)
        check = base.exact(cx + s2 * hx, cy + t2 * hy, z2 / z_factor)
        err = float(np.abs(_basis(s2, t2, z2) @ coef - check).max())
    except Exception:  # PROJ could not transform the nodes: keep the exact path
        return base
    if not np.isfinite(err) or err > FIT_TOLERANCE_M:
        return LocalMapper(crs_wkt, vertical, z_factor, origin, (cx, cy), (hx, hy), None, err)
    return LocalMapper(crs_wkt, vertical, z_factor, origin, (cx, cy), (hx, hy), coef, err)
