"""Errors of city-model files.

A *file* error stops the whole ingest (the file is not CityJSON / CityGML, is truncated, has an
unknown version, lacks a required ``transform``, or has no CRS). Problems of single city
objects are not errors: they are collected as :class:`Problem` rows while the valid objects load.
"""

from __future__ import annotations

from typing import NamedTuple


class CityFileError(ValueError):
    """The file as a whole cannot be read as a city model; the message says why."""


class CityCrsError(CityFileError):
    """The file declares no usable CRS and none was given, or the CRS does not fit the data."""


class Problem(NamedTuple):
    """One object that was skipped (or one surface of it that was dropped), and why."""

    object_id: str
    reason: str


class SkippedGeometry(NamedTuple):
    """Geometry of an object that is neither stored nor tiled (points, curves, implicit
    geometry, rasters, ...), and why. The object itself loads, with the rest of its geometry."""

    object_id: str
    object_type: str
    reason: str
