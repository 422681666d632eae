"""Earth frames: WGS 84 geodetic <-> ECEF, and local east-north-up (ENU) frames.

3D Tiles content is placed with an ENU root transform so float32 vertex positions stay at
millimetre precision: coordinates are stored relative to a local origin, and the tileset's
root ``transform`` maps the local frame to ECEF (EPSG:4978).
"""

from __future__ import annotations

import numpy as np
from pyproj import Transformer

from tiler.crs import transform_arrays

_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
_FROM_ECEF = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


def geodetic_to_ecef(lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Longitude, latitude (degrees) and ellipsoidal height (m) to an (n, 3) ECEF array."""
    x, y, z = transform_arrays(_TO_ECEF, lon, lat, h)
    return np.column_stack([np.ravel(x), np.ravel(y), np.ravel(z)])


def ecef_to_geodetic(xyz: np.ndarray) -> np.ndarray:
    """(n, 3) ECEF to (n, 3) longitude, latitude (degrees), ellipsoidal height (m)."""
    xyz = np.atleast_2d(xyz)
    lon, lat, h = transform_arrays(_FROM_ECEF, xyz[:, 0], xyz[:, 1], xyz[:, 2])
    return np.column_stack([lon, lat, h])


def enu_rotation(lon_deg: float, lat_deg: float) -> np.ndarray:
    """3x3 matrix whose columns are the east, north and up unit vectors in ECEF."""
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    return np.column_stack([east, north, up])


class EnuFrame:
    """A local ENU frame anchored at a geodetic origin."""

    def __init__(self, lon: float, lat: float, height: float = 0.0) -> None:
        self.lon, self.lat, self.height = lon, lat, height
        self.origin = geodetic_to_ecef(np.array([lon]), np.array([lat]), np.array([height]))[0]
        self.rotation = enu_rotation(lon, lat)

    def from_ecef(self, xyz: np.ndarray) -> np.ndarray:
        return (np.asarray(xyz, float) - self.origin) @ self.rotation

    def to_ecef(self, enu: np.ndarray) -> np.ndarray:
        return np.asarray(enu, float) @ self.rotation.T + self.origin

    def matrix(self) -> list[float]:
        """The 4x4 local-to-ECEF transform, column-major, as 3D Tiles ``transform`` wants."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.origin
        return [float(v) for v in m.T.reshape(-1)]


# glTF is y-up; 3D Tiles clients rotate glTF content from y-up to z-up on load. Writers
# therefore store local z-up (x, y, z) coordinates as (x, z, -y).
def zup_to_yup(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz)
    return np.column_stack([xyz[:, 0], xyz[:, 2], -xyz[:, 1]])


def yup_to_zup(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz)
    return np.column_stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]])
