"""Parsed city objects: the format-independent output of the CityJSON and CityGML readers.

Coordinates of every ring are kept twice: in longitude / latitude (degrees, WGS 84) with
ellipsoidal height (what the database and 3D Tiles store), and in the source CRS (for checks and
for metric work such as areas). Rings are *open*: the closing vertex is not repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from shapely.geometry import MultiPolygon, Polygon

from .geometry import footprint_of, polyhedral_ewkt, polyhedral_wkb

# A CityJSON / CityGML LoD such as "2" or "2.2"; sorted numerically.


def lod_key(lod: str | None) -> tuple[float, str]:
    try:
        return (float(lod), str(lod)) if lod is not None else (-1.0, "")
    except ValueError:
        return (-1.0, str(lod))


@dataclass
class Surface:
    """One polygon with its holes: ``rings[0]`` is the exterior, the rest are holes."""

    rings: list[np.ndarray]  # (n, 3) float64 lon, lat, ellipsoidal height
    semantic: str | None  # RoofSurface, WallSurface, GroundSurface, Window, ... or None
    source_rings: list[np.ndarray]  # (n, 3) float64 in the source CRS


@dataclass
class CityObject:
    """One city object (Building, BuildingPart, Road, ...) at its highest LoD."""

    id: str
    type: str
    parent_id: str | None = None
    children: list[str] = field(default_factory=list)
    lod: str | None = None  # LoD of ``surfaces`` (the highest one present)
    attributes: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    surfaces: list[Surface] = field(default_factory=list)
    # The other LoDs of the same object (e.g. "1.2" and "1.3" next to "2.2"), kept for storage.
    other_lods: dict[str, list[Surface]] = field(default_factory=dict)

    @property
    def has_geometry(self) -> bool:
        return bool(self.surfaces)

    @cached_property
    def _z_range(self) -> tuple[float, float] | None:
        if not self.surfaces:
            return None
        z = np.concatenate([r[:, 2] for s in self.surfaces for r in s.source_rings])
        return float(z.min()), float(z.max())

    @property
    def height(self) -> float | None:
        """``measuredHeight`` when the source gives one, else max z - min z of the geometry."""
        measured = self.attributes.get("measuredHeight")
        if isinstance(measured, dict):  # CityGML-style {"value": .., "uom": ..}
            measured = measured.get("value")
        try:
            if measured is not None and np.isfinite(float(measured)):
                return float(measured)
        except (TypeError, ValueError):
            pass
        zr = self._z_range
        return None if zr is None else zr[1] - zr[0]

    @property
    def ground_height(self) -> float | None:
        """Lowest ellipsoidal height of the geometry (m)."""
        if not self.surfaces:
            return None
        return float(min(r[:, 2].min() for s in self.surfaces for r in s.rings))

    @cached_property
    def footprint(self) -> Polygon | MultiPolygon | None:
        """2D footprint in lon/lat: the ground surfaces, else the projection of the object."""
        return footprint_of(self.surfaces)

    def to_multipolygon_z(self) -> MultiPolygon | None:
        """The surfaces as a shapely MultiPolygon Z (lon, lat, ellipsoidal h); WKB via shapely."""
        if not self.surfaces:
            return None
        return MultiPolygon([(s.rings[0], s.rings[1:]) for s in self.surfaces])

    def to_ewkt(self, srid: int = 4326) -> str | None:
        """EWKT of a POLYHEDRALSURFACE Z (what PostGIS stores for 3D city objects)."""
        return polyhedral_ewkt(self.surfaces, srid) if self.surfaces else None

    def to_wkb(self) -> bytes | None:
        """ISO WKB of a PolyhedralSurface Z (type 1015), readable by PostGIS ST_GeomFromWKB."""
        return polyhedral_wkb(self.surfaces) if self.surfaces else None


@dataclass
class ParseReport:
    """What a reader found besides the objects: format, CRS, height handling, problems."""

    format: str = ""
    version: str = ""
    crs: str | None = None  # label such as "EPSG:7415"
    crs_source: str | None = None  # "file" or "given"
    height_note: str | None = None  # which geoid was applied, if any
    source_crs: Any = None  # the pyproj CRS used (for read-back checks and exports)
    problems: list = field(default_factory=list)  # list[Problem]
    # geometry read but neither stored nor tiled, one entry per object (list[SkippedGeometry])
    skipped_geometry: list = field(default_factory=list)
    objects: int = 0
    surfaces: int = 0


@dataclass
class CityParseResult:
    objects: list[CityObject]
    report: ParseReport

    @property
    def problems(self) -> list:
        return self.report.problems
