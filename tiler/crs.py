"""Coordinate reference systems: parse what files and users say, and bring coordinates to
WGS 84 longitude / latitude / ellipsoidal height, which 3D Tiles and the database store.

Two traps handled here once for every format:

* axis order: many CRSs (EPSG:4326, EPSG:4490, the CGCS2000 Gauss-Kruger zones such as
  EPSG:4547) are defined latitude- or northing-first, while LAS, CityJSON and IFC store
  easting first. Every transformer is built with ``always_xy=True``.
* heights: a vertical datum (NAP, NAVD88, 1985 National Height Datum, ...) gives orthometric
  heights. They are made ellipsoidal with the datum's own geoid model when PROJ has its grid
  offline, else with the global EGM96 geoid (``egm96_15.gtx`` from Debian's ``proj-data``;
  PROJ's own data has no national grids); the height note records which.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from pyproj import CRS, Transformer
from pyproj.enums import TransformDirection
from pyproj.exceptions import CRSError as _PyprojCRSError
from pyproj.transformer import TransformerGroup

EGM96_GRID_NAMES = ("egm96_15.gtx", "us_nga_egm96_15.tif")


def transform_arrays(tf: Transformer, *arrays: np.ndarray,
                     direction: TransformDirection = TransformDirection.FORWARD
                     ) -> tuple[np.ndarray, ...]:
    """``tf.transform`` on float arrays, size-1 arrays included.

    pyproj hands size-1 arrays to its scalar path, which converts them with ``float(array)``
    (deprecated by NumPy, an error in future releases); give it real scalars instead.
    """
    arrays = tuple(np.asarray(a, float) for a in arrays)
    if arrays[0].size == 1:
        out = tf.transform(*(float(a.reshape(-1)[0]) for a in arrays), direction=direction)
        return tuple(np.full(arrays[0].shape, v) for v in out)
    return tuple(np.asarray(v) for v in tf.transform(*arrays, direction=direction))


class CrsError(ValueError):
    """A CRS that cannot be understood, or coordinates impossible for their CRS."""


class ImplausiblePlacementError(CrsError):
    """Coordinates that transform, but to a place no survey or model of a city can be."""


# Ellipsoidal heights a city's data can have: the lowest land (Dead Sea shore, -430 m), the
# geoid's deepest dip (-106 m), deep mines (about -4 km) and the highest peak (+8.8 km) all lie
# well inside. Beyond this, the CRS label or the height unit is wrong.
PLAUSIBLE_HEIGHT_M = (-12_000.0, 12_000.0)


def check_placement(crs: CRS, lon: np.ndarray, lat: np.ndarray, h: np.ndarray | None = None,
                    *, label: str | None = None, margin_deg: float = 2.0) -> None:
    """Refuse coordinates impossible for ``crs`` once transformed to WGS 84.

    ``lon``, ``lat`` (degrees) and ``h`` (ellipsoidal metres, optional) are the transformed
    coordinates of the data, or of a sample of it (its bounds are enough). Refused: values
    that did not transform (not finite), latitudes beyond 90 degrees, a place far outside the
    CRS's area of use (pyproj ``CRS.area_of_use``, widened by ``margin_deg``), and heights far
    from the Earth's surface (for a geocentric CRS: a distance from the Earth's centre no
    survey has). Raises :class:`ImplausiblePlacementError` whose message names the likely
    cause; callers add what the user can do (give the right CRS with the upload).
    Every ingest kind calls this with what it has transformed.
    """
    label = label or crs_label(crs)
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    if lon.size == 0:
        return
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ImplausiblePlacementError(
            f"coordinates cannot be transformed from {label}: they are outside what the CRS "
            "can represent")
    if np.abs(lat).max() > 90 or np.abs(lon).max() > 360:
        raise ImplausiblePlacementError(
            f"coordinates are impossible in {label}: latitude beyond 90°")
    if h is not None:
        _check_heights(crs, label, np.asarray(h, float))
    area = crs.area_of_use
    if area is not None:
        w, s, e, n = area.bounds
        if e < w:  # crosses the antimeridian: only latitude is checked
            w, e = -180.0, 180.0
        lo_lon, hi_lon = float(lon.min()), float(lon.max())
        lo_lat, hi_lat = float(lat.min()), float(lat.max())
        if (lo_lon < w - margin_deg or hi_lon > e + margin_deg
                or lo_lat < s - margin_deg or hi_lat > n + margin_deg):
            raise ImplausiblePlacementError(
                f"coordinates land at lon {lo_lon:.3f}..{hi_lon:.3f}, lat {lo_lat:.3f}.."
                f"{hi_lat:.3f}, outside where {label} is used ({w:.1f}..{e:.1f} E, "
                f"{s:.1f}..{n:.1f} N): is the CRS right?"
            )


def _check_heights(crs: CRS, label: str, h: np.ndarray) -> None:
    if not np.isfinite(h).all():
        raise ImplausiblePlacementError(f"heights cannot be computed in {label}")
    lo, hi = float(h.min()), float(h.max())
    if PLAUSIBLE_HEIGHT_M[0] <= lo and hi <= PLAUSIBLE_HEIGHT_M[1]:
        return
    worst = lo if -lo > hi else hi
    where = f"{abs(worst) / 1000:,.0f} km {'below' if worst < 0 else 'above'} the Earth's surface"
    if horizontal_part(crs).is_geocentric:
        raise ImplausiblePlacementError(
            f"read as geocentric X, Y, Z (metres from the Earth's centre) they lie {where}, "
            "where a survey is about 6,360 km from the centre. They look like map coordinates "
            "(eastings and northings, e.g. UTM): the CRS label is probably wrong.")
    raise ImplausiblePlacementError(
        f"their heights lie {where}: the height unit or the vertical CRS is probably wrong "
        "(or the CRS itself).")


_URN = re.compile(r"urn:ogc:def:crs:EPSG:[^:]*:(\d+)$", re.I)
_URL = re.compile(r"https?://www\.opengis\.net/def/crs/EPSG/[^/]+/(\d+)$", re.I)
_COMPOUND_URL = re.compile(r"https?://www\.opengis\.net/def/crs-compound\?(.*)$", re.I)


def parse_crs(value: str | int | CRS) -> CRS:
    """Accept ``EPSG:4547``, ``4547``, OGC URNs / URLs (also compound ones) and WKT."""
    if isinstance(value, CRS):
        return value
    text = str(value).strip()
    if not text:
        raise CrsError("empty CRS")
    try:
        if text.isdigit():
            return CRS.from_epsg(int(text))
        if m := (_URN.match(text) or _URL.match(text)):
            return CRS.from_epsg(int(m.group(1)))
        if m := _COMPOUND_URL.match(text):
            codes = [c for c in re.findall(r"EPSG/[^/]+/(\d+)", m.group(1))]
            if len(codes) == 2:
                return CRS.from_user_input(f"EPSG:{codes[0]}+{codes[1]}")
        return CRS.from_user_input(text)
    except _PyprojCRSError as exc:
        raise CrsError(f"unknown CRS {text[:80]!r}: {exc}") from exc


def crs_label(crs: CRS) -> str:
    """A short name for logs and the database: ``EPSG:4547`` when there is a code."""
    auth = crs.to_authority(min_confidence=90)
    if auth:
        return f"{auth[0]}:{auth[1]}"
    if crs.is_compound:
        parts = [crs_label(sub) for sub in crs.sub_crs_list]
        if all(":" in p and len(p) < 20 for p in parts):
            return "+".join(parts)
    if crs.name and crs.name.lower() not in ("unnamed", "unknown"):
        return crs.name
    # an unnamed CRS (a LAS writer's WKT): say what it is, and the code it resembles
    like = crs.to_authority(min_confidence=70)
    kind = crs.type_name[0].lower() + crs.type_name[1:]
    datum = f" on {crs.datum.name}" if crs.datum is not None else ""
    return f"an unnamed {kind}{datum}" + (f" (like {like[0]}:{like[1]})" if like else "")


@lru_cache(maxsize=1)
def egm96_grid() -> Path | None:
    """Where the EGM96 grid lies on this machine (``proj-data``), or None."""
    dirs = [os.environ.get("PROJ_DATA"), os.environ.get("PROJ_LIB"), "/usr/share/proj",
            "/usr/local/share/proj"]
    for d in filter(None, dirs):
        for name in EGM96_GRID_NAMES:
            path = Path(d) / name
            if path.is_file():
                return path
    return None


@lru_cache(maxsize=1)
def _geoid_transformer() -> Transformer:
    grid = egm96_grid()
    if grid is None:
        raise CrsError(
            "orthometric heights need the EGM96 geoid grid (Debian package proj-data: "
            "/usr/share/proj/egm96_15.gtx), which is not installed"
        )
    # vgridshift with multiplier 1 adds the geoid undulation N: h = H + N.
    return Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=vgridshift +grids={grid} +multiplier=1 "
        "+step +proj=unitconvert +xy_in=rad +xy_out=deg"
    )


def geoid_undulation(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """EGM96 geoid height N (metres above the WGS 84 ellipsoid) at the given points."""
    lon = np.asarray(lon, float)
    _, _, n = transform_arrays(_geoid_transformer(), lon, lat, np.zeros_like(lon))
    return n


@dataclass(frozen=True)
class HeightPolicy:
    """How heights of a source are turned into ellipsoidal ones, and how we say so."""

    orthometric: bool
    note: str
    # PROJ's own transformation of the compound CRS to WGS 84 (EPSG:4979) when it applies a
    # geoid grid PROJ has offline (the national model of the vertical datum); None: EGM96
    proj: Transformer | None = field(default=None, compare=False)
    z_unit_m: float = 1.0  # metres per unit of the vertical CRS (PROJ takes that unit)


def height_policy(crs: CRS, vertical: str | None = None) -> HeightPolicy:
    """Decide whether heights are orthometric, and which geoid makes them ellipsoidal.

    ``vertical`` overrides: ``"ellipsoidal"`` or ``"orthometric"``. Otherwise a compound CRS
    with a vertical part (or a vertical datum) means orthometric; anything else is taken as
    ellipsoidal, which is what drone GNSS records. Orthometric heights of a named vertical
    datum go through the geoid model PROJ relates it to (NAVD88: GEOID18/99, NAP: NLGEO, ...)
    when PROJ has that grid offline (its data or user directory); otherwise, and for
    ``vertical="orthometric"`` without a vertical CRS, through EGM96. The note says which.
    """
    if vertical not in (None, "ellipsoidal", "orthometric"):
        raise CrsError(f"vertical must be 'ellipsoidal' or 'orthometric', not {vertical!r}")
    if vertical is None:
        vertical = "orthometric" if _has_vertical_datum(crs) else "ellipsoidal"
    if vertical == "ellipsoidal":
        return HeightPolicy(False, "heights taken as ellipsoidal (WGS 84); no geoid applied")
    vname = _vertical_name(crs)
    src = f" ({vname})" if vname else ""
    if crs.is_compound and not horizontal_part(crs).is_geocentric:
        tf, used, missing = proj_geoid(crs)
        if tf is not None:
            return HeightPolicy(True, f"orthometric heights{src} + {used} = ellipsoidal",
                                proj=tf, z_unit_m=_vertical_unit_m(crs))
        if missing and "egm96" not in (vname or "").lower():
            return HeightPolicy(True, f"orthometric heights{src} + EGM96 geoid (egm96_15) = "
                                "ellipsoidal; the datum's own geoid model, which PROJ would "
                                f"apply, is not available offline ({', '.join(missing)})")
    return HeightPolicy(True, f"orthometric heights{src} + EGM96 geoid (egm96_15) = ellipsoidal")


@lru_cache(maxsize=32)
def proj_geoid(crs: CRS) -> tuple[Transformer | None, str, tuple[str, ...]]:
    """PROJ's best transformation of a compound CRS to WGS 84 ellipsoidal heights that
    applies a geoid grid available offline: (transformer, what it applies, ()), or
    (None, "", the grids PROJ would need) when it has none of them. PROJ's fallback of
    taking the heights as ellipsoidal ("ballpark vertical transformation") does not count.
    """
    with warnings.catch_warnings():  # "best transformation is not available": handled here
        warnings.simplefilter("ignore")
        group = TransformerGroup(crs, "EPSG:4979", always_xy=True)
    for tf in group.transformers:
        if "ballpark vertical" in tf.description:
            continue
        grids = [g for op in (tf.operations or ()) for g in op.grids if g.available]
        if grids:
            names = ", ".join(sorted({g.short_name for g in grids}))
            return tf, f"the geoid of {tf.description} (PROJ grid {names})", ()
    # the grids of PROJ's preferred transformation with a geoid, which it would use if it had
    # them (one that takes the heights as ellipsoidal lacks a horizontal grid only)
    missing: tuple[str, ...] = ()
    for op in group.unavailable_operations:
        if "ballpark vertical" not in op.name:
            missing = tuple(g.short_name for g in op.grids if not g.available)
            break
    return None, "", missing


def _vertical_unit_m(crs: CRS) -> float:
    for sub in crs.sub_crs_list if crs.is_compound else [crs]:
        if sub.is_vertical and sub.axis_info:
            return float(sub.axis_info[0].unit_conversion_factor or 1.0)
    return 1.0


def _has_vertical_datum(crs: CRS) -> bool:
    return crs.is_compound or crs.is_vertical


def _vertical_name(crs: CRS) -> str | None:
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if sub.is_vertical:
                return sub.name
    return crs.name if crs.is_vertical else None


def horizontal_part(crs: CRS) -> CRS:
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if not sub.is_vertical:
                return sub
    return crs


@lru_cache(maxsize=64)
def cached_transformer(source: CRS | str, target: CRS | str) -> Transformer:
    """``Transformer.from_crs(source, target, always_xy=True)``, made once per pair. PROJ's
    search for the operation is the slow part, as for CGCS2000 / 3-degree Gauss-Kruger
    (EPSG:4547, Longgang's CRS) to WGS 84, paid by every ingest before this cache
    (benchmarks/RESULTS.md). pyproj's
    transformers are thread-safe since 3.1, so one instance serves every thread."""
    return Transformer.from_crs(source, target, always_xy=True)


class ToWgs84:
    """Source CRS coordinates (easting/x first) to longitude, latitude, ellipsoidal height."""

    def __init__(self, crs: str | int | CRS, vertical: str | None = None) -> None:
        self.crs = parse_crs(crs)
        self.policy = height_policy(self.crs, vertical)
        source = horizontal_part(self.crs)
        if source.is_geocentric:
            self._tf = cached_transformer(source, "EPSG:4979")
            self._geocentric = True
        else:
            self._geocentric = False
            self._tf = cached_transformer(source, "EPSG:4326")
        self.label = crs_label(self.crs)
        self.area = self.crs.area_of_use

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        x, y, z = (np.asarray(a, float) for a in (x, y, z))
        if self._geocentric:
            return transform_arrays(self._tf, x, y, z)
        if self.policy.proj is not None:
            return transform_arrays(self.policy.proj, x, y, z / self.policy.z_unit_m)
        lon, lat = transform_arrays(self._tf, x, y)
        h = z + geoid_undulation(lon, lat) if self.policy.orthometric else z.copy()
        return lon, lat, h

    def check(self, lon: np.ndarray, lat: np.ndarray, h: np.ndarray | None = None,
              margin_deg: float = 2.0) -> None:
        """Refuse coordinates impossible for this CRS: see :func:`check_placement`.

        A wrong CRS (feet taken for metres, a false EPSG:4326 or EPSG:4978 label) most often
        shows up here. Pass the heights too where they are known.
        """
        check_placement(self.crs, lon, lat, h, label=self.label, margin_deg=margin_deg)


class FromWgs84:
    """The inverse of :class:`ToWgs84`, for read-back checks and exports."""

    def __init__(self, crs: str | int | CRS, vertical: str | None = None) -> None:
        self.crs = parse_crs(crs)
        self.policy = height_policy(self.crs, vertical)
        source = horizontal_part(self.crs)
        self._geocentric = source.is_geocentric
        target = "EPSG:4979" if self._geocentric else "EPSG:4326"
        self._tf = cached_transformer(target, source)

    def __call__(self, lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, ...]:
        lon, lat, h = (np.asarray(a, float) for a in (lon, lat, h))
        if self._geocentric:
            return transform_arrays(self._tf, lon, lat, h)
        if self.policy.proj is not None:
            x, y, z = transform_arrays(self.policy.proj, lon, lat, h,
                                       direction=TransformDirection.INVERSE)
            return x, y, z * self.policy.z_unit_m
        x, y = transform_arrays(self._tf, lon, lat)
        z = h - geoid_undulation(lon, lat) if self.policy.orthometric else h.copy()
        return np.asarray(x), np.asarray(y), z
