"""Where an IFC model stands on the globe, in this order of trust:

1. an anchor given with the request (lon, lat, height, rotation): always wins;
2. IfcMapConversion to an IfcProjectedCRS that names an EPSG code (IFC4, IFC4X3); a ``crs``
   in the request names it when the file does not;
3. the ePSet_MapConversion / ePSet_ProjectedCRS property sets (IFC2X3);
4. a ``crs`` in the request with no conversion in the file: the model's coordinates are in
   that CRS (models exported in "shared", map coordinates);
5. IfcSite RefLatitude / RefLongitude / RefElevation with the model context's true north;
6. otherwise refuse, saying what to supply.

The IfcMapConversion Scale is checked against the unit ratio (project length unit over map
unit): a real sample writes 1000 where millimetres to metres must be 0.001, which would put the
model 270 km away. Heights from the model (OrthogonalHeight, RefElevation, an anchor's height)
are taken as above sea level and made ellipsoidal with the EGM96 geoid, unless ``vertical`` is
``"ellipsoidal"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiler.crs import CrsError, crs_label, horizontal_part, parse_crs

from .errors import IfcInputError
from .placement import LocalPlacement, MapPlacement, Placement, orthometric_to_ellipsoidal

ANCHOR_HELP = (
    'give an anchor with the request: {"anchor": {"lon": 114.25, "lat": 22.72, '
    '"height": 35.0, "rotation": 0}} (degrees; height of the model origin above sea level in '
    "metres; rotation = angle of the model x axis counter-clockwise from east), e.g. POST "
    "/bim/datasets/{id}/ingest"
)
MAX_LOCAL_OFFSET_M = 20_000.0  # a building site is not 20 km across
SCALE_TOLERANCE = 0.01  # relative: grid scale factors (0.9996 ...) stay well inside


@dataclass(frozen=True)
class Anchor:
    lon: float
    lat: float
    height: float = 0.0
    rotation: float = 0.0  # degrees, counter-clockwise from east to the model x axis

    def __post_init__(self) -> None:
        values = (self.lon, self.lat, self.height, self.rotation)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise IfcInputError("anchor values must be finite numbers")
        if not (-180 <= self.lon <= 180 and -90 <= self.lat <= 90):
            raise IfcInputError(f"anchor lon {self.lon} / lat {self.lat} is not on the globe "
                                "(lon -180..180, lat -90..90, in degrees)")
        if not -11000 <= self.height <= 9000:
            raise IfcInputError(f"anchor height {self.height} m is not on the Earth's surface")


def parse_anchor(value: Any) -> Anchor | None:
    """An anchor from job params: a dict, its JSON text, or "lon,lat[,height[,rotation]]"."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise IfcInputError(f"anchor is not valid JSON: {exc}") from exc
        else:
            try:
                parts = [float(p) for p in text.split(",")]
            except ValueError as exc:
                raise IfcInputError("anchor must be lon,lat[,height[,rotation]] numbers") \
                    from exc
            if not 2 <= len(parts) <= 4:
                raise IfcInputError("anchor must be lon,lat[,height[,rotation]]")
            return Anchor(*parts)
    if not isinstance(value, Mapping):
        raise IfcInputError("anchor must be an object with lon, lat, height and rotation")
    unknown = set(value) - {"lon", "lat", "height", "rotation"}
    if unknown or "lon" not in value or "lat" not in value:
        raise IfcInputError("anchor needs lon and lat (and may have height and rotation); "
                            f"unexpected: {', '.join(sorted(unknown)) or 'none'}")
    try:
        numbers = {k: float(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise IfcInputError("anchor values must be numbers") from exc
    return Anchor(**numbers)


def _height_note(vertical: str | None, what: str) -> str:
    if vertical == "ellipsoidal":
        return f"{what} taken as ellipsoidal (WGS 84); no geoid applied"
    return f"{what} above sea level + EGM96 geoid (egm96_15) = ellipsoidal"


def _ellipsoidal(lon: float, lat: float, height: float, vertical: str | None) -> float:
    if vertical not in (None, "ellipsoidal", "orthometric"):
        raise IfcInputError(f"vertical must be 'ellipsoidal' or 'orthometric', not {vertical!r}")
    return height if vertical == "ellipsoidal" else orthometric_to_ellipsoidal(lon, lat, height)


def _unit_scale(model) -> float:
    import ifcopenshell.util.unit

    return float(ifcopenshell.util.unit.calculate_unit_scale(model))


def _model_context(model):
    contexts = [c for c in model.by_type("IfcGeometricRepresentationContext")
                if not c.is_a("IfcGeometricRepresentationSubContext")]
    for c in contexts:
        if (c.ContextType or "").lower() == "model":
            return c
    return contexts[0] if contexts else None


# ---------------------------------------------------------------- anchor


def from_anchor(anchor: Anchor, vertical: str | None) -> Placement:
    h = _ellipsoidal(anchor.lon, anchor.lat, anchor.height, vertical)
    return LocalPlacement(
        source="anchor", crs="EPSG:4979 (local east-north-up frame at the anchor)",
        height_note=_height_note(vertical, "anchor height"),
        details={"anchor": {"lon": anchor.lon, "lat": anchor.lat, "height": anchor.height,
                            "rotation_deg": anchor.rotation}},
        lon=anchor.lon, lat=anchor.lat, height=h, rotation=math.radians(anchor.rotation))


# ---------------------------------------------------------------- map conversion


@dataclass
class MapParams:
    source: str
    crs_name: str | None
    vertical_datum: str | None
    map_unit_m: float | None  # from the file's MapUnit, when it says
    eastings: float
    northings: float
    height: float
    abscissa: float
    ordinate: float
    scale: float | None  # None: omitted


def _named_unit_m(unit) -> float | None:
    if unit is None:
        return None
    try:
        return _si_or_conversion(unit)
    except Exception:  # an odd unit definition: the CRS's own axis unit is used instead
        return None


def _si_or_conversion(unit) -> float:
    import ifcopenshell.util.unit

    if unit.is_a("IfcSIUnit"):
        return float(ifcopenshell.util.unit.get_prefix_multiplier(unit.Prefix))
    factor = unit.ConversionFactor
    value = factor.ValueComponent.wrappedValue
    return float(value) * _si_or_conversion(factor.UnitComponent)


def _map_conversion(model) -> MapParams | None:
    if model.schema == "IFC2X3":
        return None
    for mc in model.by_type("IfcMapConversion"):
        target = mc.TargetCRS
        if target is None:
            continue
        is_projected = target.is_a("IfcProjectedCRS")
        return MapParams(
            "IfcMapConversion", (target.Name or "").strip() or None,
            (target.VerticalDatum or None) if is_projected else None,
            _named_unit_m(target.MapUnit) if is_projected else None,
            float(mc.Eastings or 0), float(mc.Northings or 0), float(mc.OrthogonalHeight or 0),
            float(mc.XAxisAbscissa if mc.XAxisAbscissa is not None else 1.0),
            float(mc.XAxisOrdinate if mc.XAxisOrdinate is not None else 0.0),
            float(mc.Scale) if mc.Scale is not None else None)
    return None


def _epset_map_conversion(model) -> MapParams | None:
    import ifcopenshell.util.element

    holders = model.by_type("IfcProject") + model.by_type("IfcSite")
    for holder in holders:
        psets = ifcopenshell.util.element.get_psets(holder)
        mc = psets.get("ePSet_MapConversion")
        if not mc:
            continue
        crs = psets.get("ePSet_ProjectedCRS", {})

        def num(d: dict, key: str, default: float | None) -> float | None:
            v = d.get(key)
            return float(v) if isinstance(v, int | float) else default

        unit = crs.get("MapUnit")
        unit_m = {"METRE": 1.0, "MILLIMETRE": 0.001, "FOOT": 0.3048,
                  "US_SURVEY_FOOT": 1200 / 3937}.get(str(unit).upper()) if unit else None
        return MapParams(
            "ePSet_MapConversion", (str(crs.get("Name") or "")).strip() or None,
            crs.get("VerticalDatum"), unit_m,
            num(mc, "Eastings", 0.0) or 0.0, num(mc, "Northings", 0.0) or 0.0,
            num(mc, "OrthogonalHeight", 0.0) or 0.0, num(mc, "XAxisAbscissa", 1.0) or 0.0,
            num(mc, "XAxisOrdinate", 0.0) or 0.0, num(mc, "Scale", None))
    return None


def _crs_axis_unit_m(crs) -> float:
    axes = horizontal_part(crs).axis_info
    return float(axes[0].unit_conversion_factor) if axes else 1.0


def _checked_scale(file_scale: float | None, expected: float, warnings: list[str]) -> float:
    """The Helmert scale to use, given the file's and the unit ratio."""
    if file_scale is None:
        if abs(expected - 1) > 1e-12:
            warnings.append(f"Scale omitted; the unit ratio {expected:g} is used")
        return expected
    if file_scale <= 0 or not math.isfinite(file_scale):
        raise IfcInputError(f"IfcMapConversion Scale {file_scale} is not a positive number")
    if abs(file_scale / expected - 1) <= SCALE_TOLERANCE:
        return file_scale
    if abs(file_scale * expected - 1) <= SCALE_TOLERANCE:
        warnings.append(f"Scale {file_scale:g} is the inverse of the unit ratio {expected:g}; "
                        f"{expected / (file_scale * expected):g} used")
        return 1.0 / file_scale
    if abs(file_scale - 1) <= SCALE_TOLERANCE:
        warnings.append(f"Scale {file_scale:g} ignores the unit ratio {expected:g}; "
                        f"{file_scale * expected:g} used")
        return file_scale * expected
    raise IfcInputError(
        f"IfcMapConversion Scale {file_scale:g} does not match the unit ratio {expected:g} "
        "(project length unit / map unit), nor its inverse: the model would land far from "
        f"its place; fix the file or {ANCHOR_HELP}"
    )


def from_map(model, p: MapParams, crs_override: str | None, vertical: str | None
             ) -> Placement:
    warnings: list[str] = []
    name = crs_override or p.crs_name
    try:
        crs = parse_crs(name) if name else None
    except CrsError as exc:
        raise IfcInputError(f"{p.source} names the CRS {name!r}, which PROJ does not know; "
                            "give crs=EPSG:<code> with the request") from exc
    if crs is None or not horizontal_part(crs).is_projected:
        what = "has no name" if crs is None else f"is {crs_label(crs)}, not a projected CRS"
        raise IfcInputError(f"{p.source} targets a CRS that {what}; give crs=EPSG:<code> "
                            f"of the projected CRS with the request, or {ANCHOR_HELP}")
    if crs_override and p.crs_name and crs_override != p.crs_name:
        warnings.append(f"crs {crs_override} given with the request replaces {p.crs_name!r}")
    unit_m = _crs_axis_unit_m(crs)
    if p.map_unit_m and abs(p.map_unit_m / unit_m - 1) > 1e-6:
        warnings.append(f"MapUnit ({p.map_unit_m:g} m) differs from the CRS axis unit "
                        f"({unit_m:g} m); the CRS wins")
    project_m = _unit_scale(model)
    scale = _checked_scale(p.scale, project_m / unit_m, warnings)
    if not math.hypot(p.abscissa, p.ordinate) > 0:
        raise IfcInputError(f"{p.source} XAxisAbscissa / XAxisOrdinate are both 0")
    rotation = math.atan2(p.ordinate, p.abscissa)
    if vertical is None and p.vertical_datum and "ellipsoid" in p.vertical_datum.lower():
        vertical = "ellipsoidal"
    placement = MapPlacement(
        source=p.source, crs=crs_label(crs),
        height_note=_height_note(vertical, "OrthogonalHeight and model z"),
        warnings=warnings, crs_input=crs, vertical=vertical or "orthometric",
        eastings=p.eastings, northings=p.northings, height0=p.height, rotation=rotation,
        k=scale / project_m, unit_m=unit_m,
        details={"map_conversion": {"eastings": p.eastings, "northings": p.northings,
                                    "orthogonal_height": p.height,
                                    "rotation_deg": round(math.degrees(rotation), 9),
                                    "scale_in_file": p.scale, "scale_used": scale}})
    conv = placement.convergence_deg()
    if conv is not None:
        placement.details["grid_convergence_deg"] = round(conv, 6)
        # PROJ's convergence is how far grid north lies east (clockwise) of true north, so
        # an axis at angle a counter-clockwise from grid east is at a - conv from true east.
        placement.details["model_x_axis_deg_from_true_east"] = round(
            math.degrees(rotation) - conv, 6)
    return placement


# ---------------------------------------------------------------- IfcSite


def _compound_angle(value) -> float | None:
    if not value:
        return None
    parts = [float(v) for v in value] + [0.0] * (4 - len(value))
    sign = -1.0 if any(v < 0 for v in parts) else 1.0
    d, m, s, us = (abs(v) for v in parts[:4])
    return sign * (d + m / 60 + s / 3600 + us / 3.6e9)


def _true_north_rotation(model) -> float:
    """Radians to turn model x/y counter-clockwise so that y points to true north."""
    ctx = _model_context(model)
    north = getattr(ctx, "TrueNorth", None) if ctx is not None else None
    if north is None:
        return 0.0
    nx, ny = [*north.DirectionRatios, 0.0, 0.0][:2]
    if not math.hypot(nx, ny) > 0:
        return 0.0
    return math.pi / 2 - math.atan2(ny, nx)


def from_site(model, vertical: str | None) -> Placement | None:
    import ifcopenshell.util.placement

    for site in model.by_type("IfcSite"):
        lat, lon = _compound_angle(site.RefLatitude), _compound_angle(site.RefLongitude)
        if lat is None or lon is None or (lat == 0 and lon == 0):
            continue
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise IfcInputError(f"IfcSite RefLatitude {lat} / RefLongitude {lon} are not "
                                f"on the globe; {ANCHOR_HELP}")
        unit = _unit_scale(model)
        elevation = float(site.RefElevation or 0.0) * unit
        origin = (0.0, 0.0, 0.0)
        if site.ObjectPlacement is not None:
            m = ifcopenshell.util.placement.get_local_placement(site.ObjectPlacement)
            origin = tuple(float(v) * unit for v in m[:3, 3])
        rotation = _true_north_rotation(model)
        warnings = []
        if not elevation:
            # Authoring tools write 0 when nobody set it: then the model sits at sea level,
            # under the ground (and under a globe without terrain) wherever land is higher.
            warnings.append("IfcSite RefElevation is 0 or missing (often: never set): the "
                            "model origin is put at sea level; give an anchor with the "
                            "height of the ground to place it exactly")
        return LocalPlacement(
            warnings=warnings,
            source="IfcSite", crs="EPSG:4979 (local east-north-up frame at the site)",
            height_note=_height_note(vertical, "RefElevation"),
            details={"site": {"lat": lat, "lon": lon, "ref_elevation": elevation,
                              "true_north_rotation_deg": round(math.degrees(rotation), 9),
                              "origin_in_model": list(origin)}},
            lon=lon, lat=lat, height=_ellipsoidal(lon, lat, elevation, vertical),
            rotation=rotation, origin=origin)
    return None


# ---------------------------------------------------------------- resolution


def resolve(model, *, anchor: Anchor | None = None, crs: str | None = None,
            vertical: str | None = None) -> Placement:
    """The placement of the model, or :class:`IfcInputError` saying what to supply."""
    if vertical not in (None, "ellipsoidal", "orthometric"):
        raise IfcInputError(f"vertical must be 'ellipsoidal' or 'orthometric', not {vertical!r}")
    if anchor is not None:
        return from_anchor(anchor, vertical)
    problems: list[str] = []
    for params in (_map_conversion(model), _epset_map_conversion(model)):
        if params is None:
            continue
        try:
            return from_map(model, params, crs, vertical)
        except IfcInputError as exc:
            problems.append(str(exc))
    if crs and not problems:
        # No conversion in the file but a CRS in the request: the model's own coordinates
        # are taken as that CRS (shared coordinates exported in map units).
        return from_map(model, MapParams("crs", crs, None, None, 0.0, 0.0, 0.0, 1.0, 0.0,
                                         None), crs, vertical)
    site = from_site(model, vertical)
    if site is not None:
        if problems:
            site.warnings.append("map conversion not used: " + problems[0])
        return site
    if problems:
        raise IfcInputError(problems[0])
    raise IfcInputError("the model is not georeferenced (no IfcMapConversion, no "
                        "ePSet_MapConversion, no IfcSite RefLatitude / RefLongitude); "
                        + ANCHOR_HELP)


def check_on_globe(placement: Placement, llh: np.ndarray) -> None:
    """Refuse placements that put the model off the map (non-finite, or outside the CRS's
    area of use by a wide margin)."""
    if not np.isfinite(llh).all():
        raise IfcInputError(f"the model cannot be placed with {placement.source}: "
                            "coordinates come out undefined; check the CRS, or "
                            + ANCHOR_HELP)
    if isinstance(placement, MapPlacement):
        try:
            placement.check(llh)
        except CrsError as exc:
            raise IfcInputError(f"{placement.source}: {exc}") from exc


def check_near_origin(placement: Placement, xyz: np.ndarray) -> None:
    """A model placed by one point (site reference, anchor) must lie near that point: one
    whose coordinates are kilometres away was exported in map coordinates, and placing it
    at the site would put it as far off."""
    if not isinstance(placement, LocalPlacement) or not len(xyz):
        return
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    offset = float(np.linalg.norm(((lo + hi) / 2)[:2] - np.asarray(placement.origin)[:2]))
    if offset > MAX_LOCAL_OFFSET_M:
        raise IfcInputError(
            f"the model lies {offset / 1000:,.1f} km from its origin, so its coordinates look "
            f"like map coordinates and {placement.source} cannot place it; give crs=EPSG:"
            "<code> of those coordinates with the request (or move the model near its origin)")
