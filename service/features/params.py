"""Parsing of the query parameters shared by the items and tiles endpoints. Every error is
a 400 that names the parameter and what is wrong with it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache

from pyproj import Transformer
from pyproj.exceptions import ProjError

from service.core.errors import BadRequest
from service.core.instants import to_utc
from service.features.crs import Crs, parse_crs
from service.features.registry import Collection

DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class BBox:
    minx: float
    miny: float
    maxx: float
    maxy: float
    minz: float | None = None
    maxz: float | None = None


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest(f"limit must be an integer, not {value!r}") from None
    if limit < 1:
        raise BadRequest("limit must be at least 1")
    if limit > MAX_LIMIT:
        raise BadRequest(f"limit {limit} is over the maximum of {MAX_LIMIT}; "
                         "follow the next links to page through more")
    return limit


def parse_offset(value: str | None) -> int:
    if value is None or value == "":
        return 0
    try:
        offset = int(value)
    except ValueError:
        raise BadRequest(f"offset must be an integer, not {value!r}") from None
    if offset < 0:
        raise BadRequest("offset must not be negative")
    if offset > 10_000_000:
        raise BadRequest("offset is too large; narrow the query with bbox or filter")
    return offset


def parse_bbox(value: str | None, bbox_crs: str | None) -> tuple[BBox, Crs] | None:
    """bbox=minx,miny,maxx,maxy[,...] in ``bbox-crs`` (default CRS84), axis order of that CRS."""
    if value is None:
        if bbox_crs:
            raise BadRequest("bbox-crs needs a bbox")
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise BadRequest(f"bbox needs 4 or 6 comma-separated numbers, got {len(parts)}")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise BadRequest(f"bbox must be numbers: {value!r}") from None
    if not all(math.isfinite(n) for n in nums):
        raise BadRequest("bbox numbers must be finite")
    crs = parse_crs(bbox_crs, "bbox-crs")
    if len(nums) == 6:
        x1, y1, z1, x2, y2, z2 = nums
    else:
        (x1, y1, x2, y2), z1, z2 = nums, None, None
    if crs.north_first:  # the CRS's first axis is northing/latitude
        x1, y1, x2, y2 = y1, x1, y2, x2
    if x1 > x2 and crs.srid != 4547:
        raise BadRequest("bbox crosses the antimeridian (minx > maxx); this service covers "
                         "one city: send two requests if you really need that")
    if x1 > x2 or y1 > y2:
        raise BadRequest(f"bbox lower corner must not exceed the upper corner: {value!r}")
    if z1 is not None and z2 is not None and z1 > z2:
        raise BadRequest("bbox minimum height is above its maximum")
    if crs.srid in (4326, 4490) and (x1 < -180 or x2 > 180 or y1 < -90 or y2 > 90):
        raise BadRequest(f"bbox {value!r} is outside longitude -180..180, latitude -90..90"
                         + (" (EPSG:4326 is latitude first; CRS84 is the lon/lat default)"
                            if crs.north_first else ""))
    if crs.srid not in (4326, 4490):
        _check_projected(value, crs, ((x1, y1), (x1, y2), (x2, y1), (x2, y2)))
    return BBox(x1, y1, x2, y2, z1, z2), crs


@lru_cache(maxsize=8)
def _to_lonlat(srid: int) -> Transformer:
    return Transformer.from_crs(srid, 4326, always_xy=True)


def _check_projected(value: str, crs: Crs, corners: tuple[tuple[float, float], ...]) -> None:
    """The corners must lie in the projection's domain: the database transforms the box,
    and PROJ refuses points outside it (far beyond the zone of a Gauss-Kruger CRS)."""
    xs, ys = zip(*corners, strict=True)
    try:
        lon, lat = _to_lonlat(crs.srid).transform(xs, ys, errcheck=True)
    except ProjError:
        lon = lat = (math.inf,)
    if not all(math.isfinite(v) for v in (*lon, *lat)):
        raise BadRequest(f"bbox {value!r} lies outside the domain of EPSG:{crs.srid}; its "
                         "coordinates are metres (northing first) near the CRS's zone")


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_instant(text: str, what: str = "datetime") -> tuple[datetime, datetime]:
    """An RFC 3339 date-time (an instant) or a date (that whole day, UTC)."""
    text = text.strip()
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start, datetime.combine(day, time.max, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{what} {text!r} is not an RFC 3339 date-time or date") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{what} {text!r} needs a time zone (e.g. Z)")
    try:
        moment = to_utc(moment)
    except ValueError as exc:
        raise BadRequest(f"{what} {text!r}: {exc}") from None
    return moment, moment


def parse_datetime(value: str | None) -> tuple[datetime | None, datetime | None] | None:
    """datetime=instant | start/end with '..' or '' for open ends. None: no filter."""
    if value is None or value == "":
        return None
    if "/" in value:
        a, _, b = value.partition("/")
        if "/" in b:
            raise BadRequest(f"datetime {value!r}: one '/' between start and end")
        start = None if a in ("", "..") else parse_instant(a)[0]
        end = None if b in ("", "..") else parse_instant(b)[1]
        if start is None and end is None:
            raise BadRequest("datetime '../..' selects nothing in particular; give one end")
        if start and end and start > end:
            raise BadRequest(f"datetime {value!r}: the start is after the end")
        return start, end
    return parse_instant(value)


def parse_properties(value: str | None, collection: Collection) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in collection.props_by_name]
    if unknown:
        raise BadRequest(f"properties: {', '.join(unknown)} not in {collection.id}; "
                         f"known: {', '.join(collection.props_by_name)}")
    return names


def parse_sortby(value: str | None, collection: Collection) -> list[tuple[str, bool]]:
    """sortby=+a,-b -> [(name, descending)]; the id always breaks ties."""
    if value is None or value.strip() == "":
        value = ",".join(collection.default_sort)
    keys: list[tuple[str, bool]] = []
    for raw in (v.strip() for v in value.split(",")):
        if not raw:
            continue
        desc = raw.startswith("-")
        name = raw.lstrip("+-").strip()
        if " " in name:  # "name DESC" (tolerated form)
            name, _, direction = name.partition(" ")
            desc = direction.strip().upper() == "DESC"
        prop = collection.props_by_name.get(name)
        if name == "id":
            keys.append(("id", desc))
            continue
        if prop is None or not prop.sortable:
            sortable = [p.name for p in collection.properties if p.sortable]
            raise BadRequest(f"sortby: {name!r} is not a sortable property of "
                             f"{collection.id}; sortable: id, {', '.join(sortable)}")
        keys.append((name, desc))
    return keys
