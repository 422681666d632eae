"""How model coordinates (ifcopenshell world coordinates, metres) reach the globe.

Two kinds, both invertible so tests can carry tile vertices back to the model:

* :class:`LocalPlacement`: the model is a local Cartesian frame whose origin sits at a
  geodetic point, rotated about the vertical (IfcSite reference point with true north, or an
  anchor given by the user). Exact for a local east-north-up plane, which is what such a
  model is.
* :class:`MapPlacement`: IfcMapConversion (or IFC2X3's ePSet_MapConversion): a 2D Helmert
  transform into a projected CRS, then PROJ for every vertex. Because every vertex is
  projected on its own, grid convergence (the angle between grid north and true north, up to
  a few degrees away from a zone's central meridian) and the projection's scale are applied
  exactly rather than approximated by one rotation at the origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiler.crs import FromWgs84, ToWgs84, geoid_undulation
from tiler.frames import EnuFrame, ecef_to_geodetic, geodetic_to_ecef


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


@dataclass
class Placement:
    """Common report fields; subclasses implement the two directions."""

    source: str  # anchor | IfcMapConversion | ePSet_MapConversion | IfcSite
    crs: str
    height_note: str
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_wgs84(self, xyz: np.ndarray) -> np.ndarray:  # (n, 3) -> (n, 3) lon, lat, h
        raise NotImplementedError

    def from_wgs84(self, llh: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        return {"source": self.source, "crs": self.crs, "height_note": self.height_note,
                "warnings": list(self.warnings), **self.details}


@dataclass
class LocalPlacement(Placement):
    """Model origin at (lon, lat, ellipsoidal height); model x axis ``rotation`` radians
    counter-clockwise from east."""

    lon: float = 0.0
    lat: float = 0.0
    height: float = 0.0
    rotation: float = 0.0
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # model point that sits there

    def __post_init__(self) -> None:
        self._frame = EnuFrame(self.lon, self.lat, self.height)
        self._r = _rot(self.rotation)

    def to_wgs84(self, xyz: np.ndarray) -> np.ndarray:
        local = np.asarray(xyz, float) - np.asarray(self.origin)
        enu = np.column_stack([local[:, :2] @ self._r.T, local[:, 2]])
        return ecef_to_geodetic(self._frame.to_ecef(enu))

    def from_wgs84(self, llh: np.ndarray) -> np.ndarray:
        llh = np.asarray(llh, float)
        enu = self._frame.from_ecef(geodetic_to_ecef(llh[:, 0], llh[:, 1], llh[:, 2]))
        return np.column_stack([enu[:, :2] @ self._r, enu[:, 2]]) + np.asarray(self.origin)


@dataclass
class MapPlacement(Placement):
    """E = E0 + k (cos t x - sin t y), N = N0 + k (sin t x + cos t y), H = H0 + z, in the
    map CRS's units (``unit_m`` metres each); x, y, z are model metres."""

    crs_input: Any = None  # what parse_crs accepts
    vertical: str | None = None
    eastings: float = 0.0
    northings: float = 0.0
    height0: float = 0.0
    rotation: float = 0.0
    k: float = 1.0  # map units per model metre in plan
    unit_m: float = 1.0

    def __post_init__(self) -> None:
        self._to = ToWgs84(self.crs_input, self.vertical)
        self._from = FromWgs84(self.crs_input, self.vertical)
        self._r = _rot(self.rotation)

    def to_map(self, xyz: np.ndarray) -> np.ndarray:
        xyz = np.asarray(xyz, float)
        en = self.k * (xyz[:, :2] @ self._r.T) + [self.eastings, self.northings]
        return np.column_stack([en, self.height0 + xyz[:, 2] / self.unit_m])

    def to_wgs84(self, xyz: np.ndarray) -> np.ndarray:
        m = self.to_map(xyz)
        lon, lat, h = self._to(m[:, 0], m[:, 1], m[:, 2] * self.unit_m)
        return np.column_stack([lon, lat, h])

    def check(self, llh: np.ndarray) -> None:
        self._to.check(llh[:, 0], llh[:, 1], llh[:, 2])

    def from_wgs84(self, llh: np.ndarray) -> np.ndarray:
        llh = np.asarray(llh, float)
        e, n, h = self._from(llh[:, 0], llh[:, 1], llh[:, 2])
        en = (np.column_stack([e, n]) - [self.eastings, self.northings]) @ self._r / self.k
        return np.column_stack([en, (np.asarray(h) / self.unit_m - self.height0) * self.unit_m])

    def convergence_deg(self) -> float | None:
        """Grid convergence at the model origin (degrees; PROJ's meridian convergence)."""
        from pyproj import CRS, Proj

        from tiler.crs import horizontal_part, parse_crs

        crs: CRS = horizontal_part(parse_crs(self.crs_input))
        if not crs.is_projected:
            return None
        lon, lat, _ = self.to_wgs84(np.zeros((1, 3)))[0]
        try:
            return float(Proj(crs).get_factors(lon, lat).meridian_convergence)
        except Exception:  # some projections have no factors; the report just omits it
            return None


def orthometric_to_ellipsoidal(lon: float, lat: float, height: float) -> float:
    return float(height + geoid_undulation(np.array([lon]), np.array([lat]))[0])
