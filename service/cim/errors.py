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
