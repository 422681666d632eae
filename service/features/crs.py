"""CRSs the API speaks (OGC API - Features Part 2) and their axis order.

Storage is EPSG:4326 in lon/lat order (what OGC calls CRS84). EPSG:4326, EPSG:4490
(CGCS2000) and EPSG:4547 (CGCS2000 / 3-degree Gauss-Kruger CM 114E) are defined by EPSG
with the northing first, so coordinates in them are written lat/lon (or northing/easting),
as Part 2 requires; PostGIS keeps x = lon, so those outputs are flipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.core.errors import BadRequest

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84H = "http://www.opengis.net/def/crs/OGC/0/CRS84h"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"


@dataclass(frozen=True)
class Crs:
    uri: str
    srid: int
    north_first: bool
    decimals: int  # coordinate precision of the output (~1 cm)

    @property
    def header(self) -> str:
        return f"<{self.uri}>"


SUPPORTED: dict[str, Crs] = {
    CRS84: Crs(CRS84, 4326, False, 7),
    CRS84H: Crs(CRS84H, 4326, False, 7),
    EPSG_URI.format(code=4326): Crs(EPSG_URI.format(code=4326), 4326, True, 7),
    EPSG_URI.format(code=4490): Crs(EPSG_URI.format(code=4490), 4490, True, 7),
    EPSG_URI.format(code=4547): Crs(EPSG_URI.format(code=4547), 4547, True, 3),
}
DEFAULT = SUPPORTED[CRS84]
LISTED = [CRS84, *(EPSG_URI.format(code=c) for c in (4326, 4490, 4547))]
_SHORT = re.compile(r"^\[?(EPSG|OGC):(\w+)\]?$", re.IGNORECASE)


def parse_crs(value: str | None, what: str = "crs") -> Crs:
    if value is None or value == "":
        return DEFAULT
    uri = value.strip()
    short = _SHORT.match(uri)
    if short:  # EPSG:4326, [EPSG:4326] (safe CURIE), OGC:CRS84
        auth, code = short.group(1).upper(), short.group(2)
        uri = EPSG_URI.format(code=code) if auth == "EPSG" else (
            CRS84 if code.upper() == "CRS84" else CRS84H if code.upper() == "CRS84H" else uri)
    uri = uri.replace("https://", "http://")
    crs = SUPPORTED.get(uri)
    if crs is None:
        raise BadRequest(f"{what} {value!r} is not supported; use one of {', '.join(LISTED)}")
    return crs


def output_geometry(expr: str, crs: Crs) -> str:
    """SQL turning stored lon/lat geometry ``expr`` into ``crs`` with its axis order."""
    if crs.srid != 4326:
        expr = f"ST_Transform({expr}, {crs.srid})"
    if crs.north_first:
        expr = f"ST_FlipCoordinates({expr})"
    return expr
