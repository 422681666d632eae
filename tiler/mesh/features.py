"""The generic input of the mesh tiler: features with properties and surface geometry.

Nothing here knows about city models or IFC: a feature is an id, a flat property dict and
polygons (rings, possibly with holes, possibly non-planar) or ready triangle meshes, each tagged
with a class that picks its colour. Coordinates are longitude, latitude (degrees, WGS 84) and
ellipsoidal height (m).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RGBA = tuple[int, int, int, int]


@dataclass
class MeshPolygon:
    rings: Sequence[np.ndarray]  # (n, 3) lon, lat, h; rings[0] is the exterior, others holes
    cls: str | None = None  # semantic class, e.g. "RoofSurface"


@dataclass
class MeshTriangles:
    """Pre-triangulated geometry (e.g. from an IFC geometry iterator)."""

    positions: np.ndarray  # (n, 3) lon, lat, h
    triangles: np.ndarray  # (m, 3) vertex indices
    cls: str | None = None


@dataclass
class MeshFeature:
    id: str  # unique within one tiling run; written as the "id" property
    properties: dict[str, Any] = field(default_factory=dict)
    polygons: Sequence[MeshPolygon] = ()
    meshes: Sequence[MeshTriangles] = ()
    # Features of a higher priority go to shallower tiles, before any of a lower one (e.g. a
    # building's envelope before its furniture); within a priority, larger ones first.
    priority: int = 0


# sRGB colours as people name them; converted to linear when written (glTF colours are linear).
CITY_PALETTE: Mapping[str | None, RGBA] = {
    "RoofSurface": (196, 72, 56, 255),
    "WallSurface": (226, 224, 218, 255),
    "GroundSurface": (80, 80, 80, 255),
    "ClosureSurface": (190, 190, 200, 255),
    "OuterCeilingSurface": (210, 210, 205, 255),
    "OuterFloorSurface": (150, 150, 150, 255),
    "Window": (120, 170, 210, 160),
    "Door": (140, 96, 60, 255),
    "WaterSurface": (60, 120, 200, 255),
    "WaterGroundSurface": (70, 90, 110, 255),
    "WaterClosureSurface": (90, 140, 210, 255),
    "TrafficArea": (110, 110, 115, 255),
    "AuxiliaryTrafficArea": (150, 170, 120, 255),
    "Marking": (240, 240, 240, 255),
    None: (205, 205, 200, 255),
}


def srgb_to_linear_u8(rgba: RGBA) -> np.ndarray:
    c = np.asarray(rgba[:3], float) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return np.array([*np.round(lin * 255), rgba[3]], np.uint8)
