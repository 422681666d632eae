"""CityGML 1.0 / 2.0 / 3.0 -> raw objects, streamed with ``lxml.etree.iterparse``.

Every ``cityObjectMember`` is decoded and then cleared, so memory stays bounded for big files.
Element local names decide everything, which is why one walker serves all three versions:
city objects (Building, BuildingPart, Road, ...) become objects with a parent link, thematic
surfaces (RoofSurface, Window, ...) give the semantic class of the polygons below them, and
``lodN...`` properties give the LoD.

Polygons that a solid only references by ``xlink:href`` are not decoded twice: CityGML 2.0
writers put the real polygon in the thematic surface and the reference in the solid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lxml import etree

from .build import RawObject, RawSurface
from .errors import CityFileError

GML_ID = "{http://www.opengis.net/gml}id"
GML32_ID = "{http://www.opengis.net/gml/3.2}id"

CITY_OBJECTS = frozenset({
    "Building", "BuildingPart", "BuildingInstallation", "IntBuildingInstallation",
    "BuildingConstructiveElement", "BuildingFurniture", "BuildingRoom", "Room", "Storey",
    "Road", "Railway", "Track", "Square", "TransportationComplex", "Waterway", "Section",
    "Intersection", "WaterBody", "Bridge", "BridgePart", "BridgeInstallation",
    "BridgeConstructionElement", "BridgeConstructiveElement", "Tunnel", "TunnelPart",
    "TunnelInstallation", "PlantCover", "SolitaryVegetationObject", "CityFurniture", "LandUse",
    "TINRelief", "MassPointRelief", "BreaklineRelief", "RasterRelief", "PointCloudRelief",
    "ReliefFeature", "GenericCityObject", "GenericOccupiedSpace",
    "GenericUnoccupiedSpace", "GenericLogicalSpace", "OtherConstruction", "HollowSpace",
})
SEMANTIC_SURFACES = frozenset({
    "RoofSurface", "WallSurface", "GroundSurface", "ClosureSurface", "FloorSurface",
    "OuterFloorSurface", "CeilingSurface", "OuterCeilingSurface", "InteriorWallSurface",
    "Window", "Door", "WaterSurface", "WaterGroundSurface", "WaterClosureSurface",
    "TrafficArea", "AuxiliaryTrafficArea", "Marking", "HoleSurface", "GenericThematicSurface",
})
POLYGONS = frozenset({"Polygon", "PolygonPatch", "Triangle", "Rectangle"})
# Properties that hold no geometry of the object itself: appearances, addresses, the 2D
# ``extent`` outline of a relief component, bounding boxes.
SKIP = frozenset({"appearance", "Envelope", "address", "externalReference",
                  "TexCoordList", "surfaceDataMember", "extent"})
# GML geometry that has no surface to store or tile: reported, not silently dropped.
NOT_SURFACES = {
    "Point": "points", "MultiPoint": "points",
    "LineString": "curves", "Curve": "curves", "MultiCurve": "curves",
    "CompositeCurve": "curves", "OrientableCurve": "curves", "MultiLineString": "curves",
    "ImplicitGeometry": "implicit geometry (a shared template placed by reference), which "
                        "is not expanded",
    "RectifiedGridCoverage": "a raster grid, which is not read",
    "GridCoverage": "a raster grid, which is not read",
}
_LOD = re.compile(r"^lod(\d)(.*)$")
NUMERIC = {"measuredHeight": float, "storeysAboveGround": int, "storeysBelowGround": int,
           "yearOfConstruction": int, "yearOfDemolition": int}
GENERIC = {"stringAttribute": str, "intAttribute": int, "doubleAttribute": float,
           "dateAttribute": str, "uriAttribute": str, "measureAttribute": float,
           "StringAttribute": str, "IntAttribute": int, "DoubleAttribute": float,
           "DateAttribute": str, "UriAttribute": str, "MeasureAttribute": float}
VERSIONS = {"1.0": "1.0", "2.0": "2.0", "3.0": "3.0"}


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _id(el: etree._Element) -> str | None:
    return el.get(GML_ID) or el.get(GML32_ID)


class _BadGeometry(Exception):
    pass


def _coords(ring: etree._Element) -> np.ndarray:
    """Coordinates of a LinearRing: posList, a sequence of pos, or the old gml:coordinates."""
    numbers: list[str] = []
    dim = 3
    for child in ring:
        name = _local(child.tag)
        if name == "posList":
            dim = int(child.get("srsDimension") or child.get("dimension") or 3)
            numbers.extend((child.text or "").split())
        elif name == "pos":
            numbers.extend((child.text or "").split())
        elif name == "coordinates":
            numbers.extend((child.text or "").replace(",", " ").split())
    try:
        arr = np.asarray(numbers, dtype=float)
    except ValueError as exc:
        raise _BadGeometry("ring with non-numeric coordinates") from exc
    if dim != 3 or arr.size % 3:
        raise _BadGeometry(f"ring with {arr.size} numbers is not 3D (srsDimension {dim})")
    return arr.reshape(-1, 3)


def _polygon_rings(poly: etree._Element, reverse: bool) -> list[np.ndarray]:
    rings: list[np.ndarray] = []
    for boundary in poly:
        name = _local(boundary.tag)
        if name not in ("exterior", "interior", "outerBoundaryIs", "innerBoundaryIs"):
            continue
        for ring in boundary:
            if _local(ring.tag) == "LinearRing":
                c = _coords(ring)
                rings.append(c[::-1] if reverse else c)
    if not rings:
        raise _BadGeometry("polygon without an exterior ring")
    return rings


@dataclass
class _Walk:
    objects: list[RawObject] = field(default_factory=list)
    unresolved_links: int = 0
    # polygon gml:id -> semantic class, for writers that put the polygons in the solid and
    # only xlink:href them from the thematic surfaces
    linked: dict[str, str] = field(default_factory=dict)


XLINK = "{http://www.w3.org/1999/xlink}href"
_SEMANTIC_TAGS = tuple(f"{{*}}{n}" for n in SEMANTIC_SURFACES)


def _linked_semantics(member: etree._Element) -> dict[str, str]:
    linked: dict[str, str] = {}
    for surface in member.iter(*_SEMANTIC_TAGS):
        for ref in surface.iter():
            href = ref.get(XLINK)
            if href and href.startswith("#"):
                linked.setdefault(href[1:], _local(surface.tag))
    return linked


def _attributes(el: etree._Element, raw: RawObject) -> None:
    for child in el:
        name = _local(child.tag)
        if name == "name" and raw.name is None and child.text:
            raw.name = child.text.strip()
        elif name in GENERIC:
            key = child.get("name")
            val_el = next((c for c in child if _local(c.tag) == "value"), None)
            if key is None:  # CityGML 3.0: <gen:name> element
                key_el = next((c for c in child if _local(c.tag) == "name"), None)
                key = key_el.text.strip() if key_el is not None and key_el.text else None
            if key and val_el is not None and val_el.text is not None:
                try:
                    raw.attributes[key] = GENERIC[name](val_el.text.strip())
                except ValueError:
                    raw.attributes[key] = val_el.text.strip()
        elif name == "genericAttribute":
            _attributes(child, raw)
        elif len(child) == 0 and child.text and child.text.strip() and name not in SKIP:
            text = child.text.strip()
            conv = NUMERIC.get(name)
            try:
                value: object = conv(float(text)) if conv is int else conv(text) if conv else text
            except ValueError:
                value = text
            if name in raw.attributes:  # repeated property (e.g. several function codes)
                prev = raw.attributes[name]
                raw.attributes[name] = [*(prev if isinstance(prev, list) else [prev]), value]
            else:
                raw.attributes[name] = value
            if child.get("uom"):
                raw.attributes[f"{name}_uom"] = child.get("uom")


def _declared_lod(el: etree._Element) -> str | None:
    """The ``lod`` property of objects whose geometry properties carry no LoD in their name
    (relief: ``dem:lod`` beside ``dem:tin``)."""
    for child in el:
        if _local(child.tag) == "lod" and len(child) == 0 and (child.text or "").strip():
            return child.text.strip()
    return None


def _object(el: etree._Element, parent: str | None, walk: _Walk, counter: list[int]) -> RawObject:
    oid = _id(el)
    if oid is None:
        counter[0] += 1
        oid = f"{_local(el.tag)}_{counter[0]}"
    raw = RawObject(oid, _local(el.tag), parent_id=parent)
    walk.objects.append(raw)
    _attributes(el, raw)
    try:
        _geometry(el, raw, _declared_lod(el), None, False, walk, counter)
    except _BadGeometry as exc:
        raw.error = str(exc)
        raw.geometries.clear()
    return raw


def _has_triangles(tin: etree._Element) -> bool:
    return any(True for _ in tin.iter("{*}Triangle"))


def _geometry(node: etree._Element, raw: RawObject, lod: str | None, semantic: str | None,
              reverse: bool, walk: _Walk, counter: list[int], prop: str | None = None) -> None:
    """Collect the polygons below ``node``. ``prop`` is the geometry property of the object
    (or of its thematic surface) being walked, which is what a skipped geometry is named by."""
    for child in node:
        name = _local(child.tag)
        if not name or name in SKIP:
            continue
        if name in CITY_OBJECTS:
            sub = _object(child, raw.id, walk, counter)
            raw.children.append(sub.id)
        elif name in SEMANTIC_SURFACES:
            _geometry(child, raw, lod, name, reverse, walk, counter)
        elif name in POLYGONS:
            # No LoD known (no lodN property above, no lod of the object): stored without
            # one rather than lost.
            kind = semantic or walk.linked.get(_id(child) or "")
            raw.add(lod, RawSurface(_polygon_rings(child, reverse), kind))
        elif name in NOT_SURFACES:
            raw.skip(f"{prop or _local(node.tag)}: {NOT_SURFACES[name]}")
        elif name == "Tin" and not _has_triangles(child):
            # GML 3.2 TINs may hold only control points and break lines, to be triangulated
            # by the reader; a Delaunay triangulation would ignore the break lines.
            raw.skip(f"{prop or _local(node.tag)}: a gml:Tin of control points without "
                     "triangles, which is not triangulated")
        elif m := _LOD.match(name):
            if "Curve" in m.group(2) or "TerrainIntersection" in m.group(2):
                raw.skip(f"{name}: curves")
                continue
            _geometry(child, raw, m.group(1), semantic, reverse, walk, counter, name)
        elif name == "OrientableSurface":
            flip = child.get("orientation") == "-"
            _geometry(child, raw, lod, semantic, reverse ^ flip, walk, counter, prop)
        else:
            if len(child) == 0 and child.get(XLINK) and name.endswith("Member") \
                    and semantic is None:
                walk.unresolved_links += 1
            _geometry(child, raw, lod, semantic, reverse, walk, counter, prop or name)


def citygml_version(path: Path) -> str:
    """Check that the file is CityGML and say which version; raise CityFileError otherwise."""
    try:
        for _event, el in etree.iterparse(str(path), events=("start",)):
            name, ns = _local(el.tag), el.tag.split("}")[0].lstrip("{")
            if name != "CityModel":
                raise CityFileError(f"not a CityGML file: the root element is <{name}>, "
                                    "not <CityModel>")
            m = re.search(r"citygml/(\d\.\d)", ns)
            if not m or m.group(1) not in VERSIONS:
                raise CityFileError(f"unknown CityGML namespace {ns!r}")
            return VERSIONS[m.group(1)]
    except etree.XMLSyntaxError as exc:
        raise CityFileError(f"invalid XML: {exc}") from exc
    raise CityFileError("empty XML document")


@dataclass
class CityGmlReader:
    """Iterate raw objects; ``srs_name`` becomes known at the latest with the first object."""

    path: Path
    srs_name: str | None = None
    unresolved_links: int = 0

    def __iter__(self) -> Iterator[RawObject]:
        counter = [0]
        tags = ("{*}cityObjectMember", "{*}featureMember", "{*}Envelope")
        try:
            for _event, el in etree.iterparse(str(self.path), events=("end",), tag=tags,
                                              huge_tree=True):
                name = _local(el.tag)
                if name == "Envelope":
                    self.srs_name = self.srs_name or el.get("srsName")
                    continue
                if self.srs_name is None:
                    found = el.xpath(".//@srsName")
                    self.srs_name = str(found[0]) if found else None
                walk = _Walk(linked=_linked_semantics(el))
                for child in el:
                    if _local(child.tag) in CITY_OBJECTS:
                        _object(child, None, walk, counter)
                self.unresolved_links += walk.unresolved_links
                # Free the decoded member and the siblings before it.
                el.clear()
                while el.getprevious() is not None:
                    del el.getparent()[0]
                yield from walk.objects
        except etree.XMLSyntaxError as exc:
            raise CityFileError(f"invalid or truncated XML: {exc}") from exc
