"""Which CRS a city file is in: the caller's (wins), else the file's, else a clear refusal."""

from __future__ import annotations

import re

from pyproj import CRS

from tiler.crs import CrsError, ToWgs84, parse_crs

from .errors import CityCrsError

# CityGML 2.0 writers (citygml4j, FME, 3DCityDB) name compound CRSs as
# "urn:ogc:def:crs,crs:EPSG:6.12:3068,crs:EPSG:6.12:5783", which PROJ does not read directly.
_URN_COMPOUND = re.compile(r"^urn:ogc:def:crs,(.*)$", re.I)
_URN_PART = re.compile(r"crs:EPSG:[^:,]*:(\d+)", re.I)
_EPSG_SHORT = re.compile(r"^EPSG:(\d+)(?:\+(\d+))?$", re.I)


def normalise_crs_name(text: str) -> str:
    """Rewrite the CRS spellings found in city files into one that :func:`parse_crs` reads."""
    text = text.strip()
    if m := _URN_COMPOUND.match(text):
        codes = _URN_PART.findall(m.group(1))
        if codes:
            return "EPSG:" + "+".join(codes)
    if m := _EPSG_SHORT.match(text):
        return text.upper()
    return text


def file_crs(text: str, where: str) -> CRS:
    try:
        return parse_crs(normalise_crs_name(text))
    except CrsError as exc:
        raise CityCrsError(f"the CRS {text!r} declared in {where} is not known: {exc}") from exc


def resolve_crs(given: str | int | CRS | None, declared: str | None, where: str) -> tuple[CRS, str]:
    """The CRS to use and where it came from ("given" or "file")."""
    if given is not None and str(given).strip():
        try:
            return parse_crs(normalise_crs_name(str(given)) if not isinstance(given, CRS)
                             else given), "given"
        except CrsError as exc:
            raise CityCrsError(f"the CRS given for this file is not known: {exc}") from exc
    if declared:
        return file_crs(declared, where), "file"
    raise CityCrsError(
        f"{where} declares no CRS and none was given: supply one (e.g. crs=EPSG:7415 for Dutch "
        "RD New + NAP, EPSG:4547 for CGCS2000 Gauss-Kruger 114E)"
    )


def transformer(crs: CRS, vertical: str | None) -> ToWgs84:
    try:
        return ToWgs84(crs, vertical)
    except CrsError as exc:
        raise CityCrsError(str(exc)) from exc
