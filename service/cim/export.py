"""The city model as CityJSON 2.0 or CityJSONSeq: ``GET /city/export``.

What is exported: the objects valid at one instant (``valid_from <= t < valid_to``; by default
the current ones) whose footprint meets the bbox and whose source is the dataset asked for,
each with its whole family (parents up to the root, and every descendant, valid at the same
instant), so every ``parents`` / ``children`` reference resolves and a ``BuildingPart`` never
comes without its ``Building``.

Geometry: the stored geometry (the highest LoD) and every other stored LoD, each a geometry
object of its own with its semantic surfaces. The store keeps surfaces, not the source's
geometry type, so the type is read from the topology: surfaces whose edges all meet exactly
one reversed edge of another surface (closed, consistently oriented shells, compared on the
millimetre grid of the output) are a ``Solid`` (several shells: a ``MultiSolid`` where the
object type allows one); anything else is a ``MultiSurface`` (a ``CompositeSurface`` for
``TINRelief``, the only type CityJSON allows there). Surfaces keep their order and
orientation.

Coordinates: stored longitude / latitude / WGS 84 ellipsoidal height, transformed with the
inverse of the ingest's own transformation (``tiler.crs.FromWgs84``) to the output CRS, then
stored as integers on a millimetre grid (``transform``) in one shared vertex list (one per
feature in CityJSONSeq, as the format wants).

Heights: the default output CRS, EPSG:4547 (CGCS2000 / 3-degree Gauss-Kruger CM 114E, the
Longgang frame), is 2D and EPSG defines no 3D form of it, while CityJSON asks for a 3D CRS.
The heights are left ellipsoidal (the WGS 84 ellipsoid; CGCS2000's differs by 0.1 mm), as
stored, rather than turned into 1985 National Height Datum heights: that needs China's geoid
model, which PROJ does not have offline, and EGM96 in its place would be off by decimetres
while looking official. ``metadata.referenceSystem`` names EPSG:4547 and ``metadata.title``
says the heights are ellipsoidal. A compound CRS with an EPSG code (e.g. EPSG:7415, RD New +
NAP) gets heights above its vertical datum, with the same geoid the ingest used to lift them
(the title names it), so a file ingested in that CRS comes back at its own heights.

Streaming: objects are read and written in batches. A CityJSON document names its vertices
after its objects (JSON members have no order), so only the vertex list (integers, for the
one shared list) is kept until the end, never the document; its ``metadata`` and
``transform`` come last, with the exact extent. CityJSONSeq keeps nothing: a first line with
``transform`` and ``metadata`` (its extent is that of the stored geometry's lon / lat /
height box, transformed: it contains every vertex, and may be slightly larger than the
tightest box), then one ``CityJSONFeature`` per root object with its descendants.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from pyproj import CRS
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.cim.wkb import polygons_from_wkb
from service.core.errors import BadRequest, Unprocessable
from service.features.params import BBox, parse_datetime
from tiler.crs import (
    CrsError,
    FromWgs84,
    ImplausiblePlacementError,
    check_placement,
    horizontal_part,
    parse_crs,
)

CITYJSON = "application/city+json"
CITYJSONSEQ = "application/city+json-seq"
FORMATS = {"cityjson": CITYJSON, "cityjsonseq": CITYJSONSEQ}
DEFAULT_CRS = "EPSG:4547"
SCALE = 0.001  # metres per vertex unit: millimetres
BATCH = 256  # objects read and converted per step
EPSG_URI = "https://www.opengis.net/def/crs/EPSG/0/{code}"

# CityGML names of types CityJSON 2.0 calls otherwise (the CityGML reader keeps the GML name)
RENAMED_TYPES = {"Room": "BuildingRoom", "IntBuildingInstallation": "BuildingInstallation",
                 "Storey": "BuildingStorey", "Square": "TransportSquare",
                 "BridgeConstructionElement": "BridgeConstructiveElement",
                 "HollowSpace": "TunnelHollowSpace", "IntBridgeInstallation":
                 "BridgeInstallation", "IntTunnelInstallation": "TunnelInstallation"}
# CityJSON 2.0's types and the surface geometry types each may have (cityobjects.schema.json)
_SOLIDS = ("MultiSurface", "CompositeSurface", "Solid", "CompositeSolid")
_ALL = (*_SOLIDS, "MultiSolid")
_SURFACES = ("MultiSurface", "CompositeSurface")
GEOMETRY_TYPES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("Building", "BuildingPart", "BuildingRoom", "BuildingUnit",
                     "BuildingStorey", "Tunnel", "TunnelPart", "TunnelHollowSpace", "Bridge",
                     "BridgePart", "BridgeRoom", "WaterBody"), _SOLIDS),
    **dict.fromkeys(("Road", "Railway", "TransportSquare", "Waterway", "LandUse"), _SURFACES),
    "TINRelief": ("CompositeSurface",),
    **dict.fromkeys(("BuildingInstallation", "BuildingConstructiveElement",
                     "BuildingFurniture", "TunnelInstallation", "TunnelConstructiveElement",
                     "TunnelFurniture", "BridgeInstallation", "BridgeConstructiveElement",
                     "BridgeFurniture", "CityObjectGroup", "GenericCityObject",
                     "OtherConstruction", "PlantCover", "SolitaryVegetationObject",
                     "CityFurniture"), _ALL),
}
# second-level types CityJSON requires a parent of, and what one without a parent becomes
NEEDS_PARENT = {
    "BuildingPart": "Building", "BridgePart": "Bridge", "TunnelPart": "Tunnel",
    **dict.fromkeys(("BuildingInstallation", "BuildingConstructiveElement",
                     "BuildingFurniture", "BuildingRoom", "BuildingUnit", "BuildingStorey",
                     "TunnelInstallation", "TunnelConstructiveElement", "TunnelFurniture",
                     "TunnelHollowSpace", "BridgeInstallation", "BridgeConstructiveElement",
                     "BridgeFurniture", "BridgeRoom"), "GenericCityObject"),
}
SEMANTIC_TYPES = frozenset({
    "RoofSurface", "GroundSurface", "WallSurface", "ClosureSurface", "OuterCeilingSurface",
    "OuterFloorSurface", "Window", "Door", "InteriorWallSurface", "CeilingSurface",
    "FloorSurface", "WaterSurface", "WaterGroundSurface", "WaterClosureSurface", "TrafficArea",
    "AuxiliaryTrafficArea", "TransportationHole", "TransportationMarking"})
RENAMED_SEMANTICS = {"Marking": "TransportationMarking", "HoleSurface": "TransportationHole"}
LODS = frozenset(f"{a}{b}" for a in "0123" for b in ("", ".0", ".1", ".2", ".3"))


# ---------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class OutputCrs:
    crs: CRS
    code: int
    label: str
    to_out: FromWgs84
    heights: str  # what the heights are, for the metadata

    @property
    def uri(self) -> str:
        return EPSG_URI.format(code=self.code)


def output_crs(value: str | None) -> OutputCrs:
    """The output CRS: projected, in metres, with an EPSG code (CityJSON names it by one)."""
    given = (value or "").strip() or DEFAULT_CRS
    try:
        crs = parse_crs(given)
    except CrsError as exc:
        raise BadRequest(f"crs {given!r} is not a CRS PROJ knows ({exc}); give an EPSG code "
                         f"of a projected CRS in metres, e.g. {DEFAULT_CRS}") from None
    horizontal = horizontal_part(crs)
    if not horizontal.is_projected:
        kind = "geographic (degrees)" if horizontal.is_geographic else (
            "geocentric" if horizontal.is_geocentric else horizontal.type_name)
        raise BadRequest(f"crs {given!r} is {kind}: CityJSON vertices are integers on a "
                         "millimetre grid of a projected CRS in metres; ask for one, e.g. "
                         f"{DEFAULT_CRS} (Longgang) or the UTM zone of the area")
    for part in crs.sub_crs_list if crs.is_compound else [crs]:
        for axis in part.axis_info:
            if abs(axis.unit_conversion_factor - 1.0) > 1e-12:
                raise BadRequest(f"crs {given!r} has its {axis.name.lower()} in "
                                 f"{axis.unit_name}: ask for a CRS in metres")
    code = crs.to_epsg(min_confidence=100)
    if code is None:
        raise BadRequest(f"crs {given!r} has no EPSG code, which CityJSON's referenceSystem "
                         "needs: ask for a CRS EPSG defines (a compound one such as EPSG:7415 "
                         "for heights above a vertical datum)")
    to_out = FromWgs84(crs)
    label = f"EPSG:{code}"
    if to_out.policy.orthometric:
        vertical = next((s.name for s in crs.sub_crs_list if s.is_vertical), "its datum")
        heights = (f"heights in metres above {vertical}: the stored WGS 84 ellipsoidal heights "
                   f"less the geoid the ingest added ({to_out.policy.note})")
    else:
        datum = horizontal.datum.name if horizontal.datum is not None else ""
        same = " (CGCS2000's ellipsoid differs by 0.1 mm)" if datum == "China 2000" else ""
        heights = (f"heights are WGS 84 ellipsoidal heights in metres{same}, not above a "
                   f"vertical datum: {label} is 2D and EPSG defines no 3D form of it")
    return OutputCrs(crs, code, label, to_out, heights)


def export_instant(value: str | None) -> datetime | None:
    """``datetime``: one instant (the city as it was then), or a date (the city at the end of
    that day, UTC). An interval is refused: the city of an interval is no one model."""
    if value is not None and "/" in value:
        raise BadRequest(f"datetime {value!r} is an interval; an export is the city at one "
                         "instant: give one date-time (e.g. 2026-03-01T12:00:00Z) or a date")
    parsed = parse_datetime(value)
    return None if parsed is None else parsed[1]


# ---------------------------------------------------------------------------- selection

@dataclass
class Selection:
    """The rows to export, in order: each root, then its descendants (families are
    contiguous, as a CityJSONFeature needs them)."""

    ids: list[int] = field(default_factory=list)
    object_ids: list[str] = field(default_factory=list)
    parents: list[str | None] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    datasets: list[int] = field(default_factory=list)
    # lon / lat / height box of the rows that have geometry, or None
    box: tuple[float, float, float, float, float, float] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        present = set(self.object_ids)
        for oid, parent in zip(self.object_ids, self.parents, strict=True):
            if parent is not None and parent in present:
                out.setdefault(parent, []).append(oid)
        return out

    def families(self, size: int) -> Iterator[tuple[list[int], list[str]]]:
        """Row ids in batches of about ``size`` rows that never split a family, with the
        root of each row."""
        ids: list[int] = []
        roots: list[str] = []
        for row_id, root in zip(self.ids, self.roots, strict=True):
            if len(ids) >= size and root != roots[-1]:
                yield ids, roots
                ids, roots = [], []
            ids.append(row_id)
            roots.append(root)
        if ids:
            yield ids, roots


def _valid(at: datetime | None) -> str:
    if at is None:
        return "c.valid_to IS NULL"
    return "c.valid_from <= :at AND (c.valid_to IS NULL OR c.valid_to > :at)"


def selection_sql(at: datetime | None, bbox: tuple[BBox, Any] | None,
                  dataset: int | None) -> tuple[str, dict[str, Any]]:
    """Rows matching the filters, their ancestors and every descendant of those, valid at
    ``at``: (row id, object id, parent, root, depth, dataset), ordered by family."""
    binds: dict[str, Any] = {}
    valid = _valid(at)
    if at is not None:
        binds["at"] = at
    picked = [valid]
    if dataset is not None:
        picked.append("c.dataset_id = :dataset")
        binds["dataset"] = dataset
    if bbox is not None:
        box, bcrs = bbox
        env = "ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, :bbox_srid)"
        if bcrs.srid != 4326:
            env = f"ST_Transform({env}, 4326)"
        picked.append(f"ST_Intersects(c.footprint, {env})")
        binds.update(minx=box.minx, miny=box.miny, maxx=box.maxx, maxy=box.maxy,
                     bbox_srid=bcrs.srid)
        if box.minz is not None:
            picked.append("c.max_z >= :minz AND c.min_z <= :maxz")
            binds.update(minz=box.minz, maxz=box.maxz)
    # A parent cycle (bad data) has no root and is left out; depth bounds the descent.
    sql = f"""
        WITH RECURSIVE
        valid AS MATERIALIZED (
            SELECT c.id, c.object_id, c.parent_object_id, c.dataset_id
            FROM city_objects c WHERE {valid}),
        picked AS (
            SELECT c.object_id, c.parent_object_id FROM city_objects c
            WHERE {" AND ".join(picked)}),
        up AS (
            SELECT object_id, parent_object_id FROM picked
            UNION
            SELECT v.object_id, v.parent_object_id FROM valid v
            JOIN up ON v.object_id = up.parent_object_id),
        roots AS (
            SELECT up.object_id FROM up
            WHERE up.parent_object_id IS NULL
               OR NOT EXISTS (SELECT 1 FROM valid v WHERE v.object_id = up.parent_object_id)),
        tree AS (
            SELECT object_id, object_id AS root, 0 AS depth FROM roots
            UNION ALL
            SELECT v.object_id, t.root, t.depth + 1 FROM valid v
            JOIN tree t ON v.parent_object_id = t.object_id WHERE t.depth < 32)
        SELECT DISTINCT ON (t.root, v.object_id)
               v.id, v.object_id, v.parent_object_id, t.root, t.depth, v.dataset_id
        FROM tree t JOIN valid v USING (object_id)
        ORDER BY t.root, v.object_id, t.depth"""
    return sql, binds


async def select_rows(conn: AsyncConnection, at: datetime | None,
                      bbox: tuple[BBox, Any] | None, dataset: int | None) -> Selection:
    sql, binds = selection_sql(at, bbox, dataset)
    rows = (await conn.execute(text(sql), binds)).all()
    # one root's family: the root first, then by depth, then by id
    rows.sort(key=lambda r: (r.root, r.depth, r.object_id))
    sel = Selection()
    for r in rows:
        sel.ids.append(r.id)
        sel.object_ids.append(r.object_id)
        sel.parents.append(r.parent_object_id)
        sel.roots.append(r.root)
        sel.datasets.append(r.dataset_id)
    if sel.ids:
        sel.box = await _lonlat_box(conn, sel.ids)
    return sel


async def _lonlat_box(conn: AsyncConnection, ids: list[int]
                      ) -> tuple[float, float, float, float, float, float] | None:
    """The lon / lat / height box of the rows' geometry, every stored LoD included."""
    sql = """
        SELECT ST_XMin(e), ST_YMin(e), ST_ZMin(e), ST_XMax(e), ST_YMax(e), ST_ZMax(e)
        FROM (SELECT ST_3DExtent(g) AS e FROM (
            SELECT geom AS g FROM city_objects WHERE id = ANY(:ids) AND geom IS NOT NULL
            UNION ALL
            SELECT ST_GeomFromGeoJSON(o.value -> 'geometry') FROM city_objects c,
                   jsonb_each(c.other_lods) o
            WHERE c.id = ANY(:ids) AND jsonb_typeof(o.value -> 'geometry') = 'object') g) s"""
    row = (await conn.execute(text(sql), {"ids": ids})).first()
    if row is None or row[0] is None:
        return None
    return tuple(float(v) for v in row)  # type: ignore[return-value]


def check_area(out: OutputCrs, sel: Selection, dataset_crs: list[str]) -> None:
    """Refuse an output CRS whose area of use is far from the objects (a Gauss-Kruger zone
    115 degrees of longitude away gives no usable coordinates, if any)."""
    if sel.box is None:
        return
    x0, y0, _, x1, y1, _ = sel.box
    lon, lat = np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1])
    try:
        check_placement(out.crs, lon, lat, label=out.label)
        x, y, _ = out.to_out(lon, lat, np.zeros(4))
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ImplausiblePlacementError(f"the objects cannot be given in {out.label}")
    except ImplausiblePlacementError as exc:
        hint = f" (the sources are in {', '.join(dataset_crs)})" if dataset_crs else ""
        raise Unprocessable(f"the objects lie at lon {x0:.4f}..{x1:.4f}, lat {y0:.4f}..{y1:.4f},"
                            f" outside where {out.label} is used: ask for a CRS that covers "
                            f"them{hint}", reason=str(exc)) from None


# ---------------------------------------------------------------------------- geometry

def box_extent(out: OutputCrs, box: tuple[float, ...]) -> np.ndarray:
    """[minx, miny, minz, maxx, maxy, maxz] in the output CRS of a lon / lat / height box.

    The extreme eastings and northings of a map projection of a box lie on its edges (the
    projection has no critical point); a grid over the box catches the geoid's undulation,
    which bends the heights of a CRS with a vertical datum."""
    x0, y0, z0, x1, y1, z1 = box
    g = np.linspace(0.0, 1.0, 17)
    lon, lat = np.meshgrid(x0 + (x1 - x0) * g, y0 + (y1 - y0) * g)
    lon, lat = np.tile(lon.ravel(), 2), np.tile(lat.ravel(), 2)
    h = np.repeat([z0, z1], g.size ** 2)
    x, y, z = out.to_out(lon, lat, h)
    pad = 0.01 if out.to_out.policy.orthometric else 0.0
    return np.array([x.min(), y.min(), z.min() - pad, x.max(), y.max(), z.max() + pad])


class VertexPool:
    """A shared vertex list: integer (millimetre) vertices, each stored once."""

    def __init__(self) -> None:
        self._index: dict[bytes, int] = {}
        self._chunks: list[np.ndarray] = []
        self.count = 0

    def add(self, q: np.ndarray) -> np.ndarray:
        """The index of each row of ``q`` ((n, 3) int64), new rows appended."""
        if not len(q):
            return np.zeros(0, np.int64)
        uniq, inverse = np.unique(q, axis=0, return_inverse=True)
        keys = np.ascontiguousarray(uniq).view(np.dtype((np.void, 24))).ravel().tolist()
        ids = np.empty(len(uniq), np.int64)
        new: list[int] = []
        index = self._index
        for i, key in enumerate(keys):
            j = index.get(key)
            if j is None:
                j = index[key] = self.count + len(new)
                new.append(i)
            ids[i] = j
        if new:
            self._chunks.append(uniq[new])
            self.count += len(new)
        return ids[inverse.reshape(-1)]

    def vertices(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros((0, 3), np.int64)


@dataclass
class _Geometry:
    lod: str | None
    wkb: bytes  # MultiPolygon Z of lon / lat / h, one polygon per surface
    semantics: list[str | None]


@dataclass
class _Object:
    object_id: str
    type: str
    parent: str | None
    attributes: dict[str, Any]
    geometries: list[_Geometry]


def export_lod(lod: str | None) -> str:
    """A stored LoD as CityJSON 2.0 has it: "0" to "3.3". CityGML's LoD4 (interiors) is
    closest to LoD3. CityJSON requires a LoD of every geometry; one stored without (only a
    file that broke the rule gives that) is written as LoD 1, the least that has heights."""
    text_ = "" if lod is None else str(lod).strip()
    if text_ in LODS:
        return text_
    if text_[:1] == "4" and (text_ == "4" or text_[1:2] == "."):
        return "3" + text_[1:] if ("3" + text_[1:]) in LODS else "3"
    return "1"


def _lod_key(lod: str) -> tuple[float, str]:
    try:
        return float(lod), lod
    except ValueError:
        return -1.0, lod


def object_of(row: Any, lods: list[Any]) -> _Object:
    """A stored row (and its other LoDs' rows) as the object to write: the main geometry
    and the other LoDs, lowest LoD first."""
    geometries: list[_Geometry] = []
    if row.wkb is not None:
        sems = list((row.semantics or {}).get("surfaces") or [])
        geometries.append(_Geometry(row.lod, bytes(row.wkb), sems))
    for other in lods:
        if other.wkb is not None:
            geometries.append(_Geometry(other.lod, bytes(other.wkb),
                                        list(other.surfaces or [])))
    geometries.sort(key=lambda g: _lod_key(export_lod(g.lod)))
    attributes = dict(row.attributes or {})
    if row.name is not None and "name" not in attributes:
        attributes["name"] = row.name
    return _Object(row.object_id, row.type, row.parent_object_id, attributes, geometries)


def cityjson_type(type_: str, has_parent: bool, has_children: bool
                  ) -> tuple[str, str | None]:
    """(the CityJSON 2.0 type, the stored type when it had to change): CityGML names
    renamed, a type CityJSON does not know (an Extension's, CityGML 3's Section) generic,
    a part without its whole or a group without members its first-level counterpart."""
    out = RENAMED_TYPES.get(type_, type_)
    if out not in GEOMETRY_TYPES:
        out = "GenericCityObject"
    if not has_parent and out in NEEDS_PARENT:
        out = NEEDS_PARENT[out]
    if out == "CityObjectGroup" and not has_children:
        out = "GenericCityObject"
    return out, (None if out == type_ else type_)


@dataclass
class _Rings:
    """The surfaces of many geometries as flat arrays: every ring's open coordinates, the
    vertex count of each ring, the ring count of each face, the face count of each
    geometry (faces in stored order, exterior ring first)."""

    coords: np.ndarray  # (n, 3) lon, lat, h
    ring_sizes: np.ndarray
    face_rings: np.ndarray
    geom_faces: np.ndarray


def read_rings(wkbs: list[bytes]) -> _Rings:
    """Decode the stored MultiPolygon Z WKB of many geometries at once (shapely's
    vectorised functions: a Python loop over rings cost most of an export's time); a WKB
    GEOS refuses goes through the project's own reader."""
    shapes = shapely.from_wkb(np.array(wkbs, dtype=object), on_invalid="ignore")
    bad = [i for i, g in enumerate(shapes) if g is None]
    for i in bad:  # an empty stand-in keeps the numbering; its faces are added below
        shapes[i] = shapely.MultiPolygon()
    parts, part_geom = shapely.get_parts(shapes, return_index=True)
    rings, ring_face = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, include_z=True, return_index=True)
    sizes = np.bincount(coord_ring, minlength=len(rings))
    # WKB rings are closed: drop each ring's last vertex
    ends = np.cumsum(sizes) - 1
    keep = np.ones(len(coords), bool)
    keep[ends[sizes > 0]] = False
    out = _Rings(coords[keep], np.maximum(sizes - 1, 0),
                 np.bincount(ring_face, minlength=len(parts)),
                 np.bincount(part_geom, minlength=len(shapes)))
    if bad:
        out = _with_fallback(out, wkbs, bad)
    return out


def _with_fallback(r: _Rings, wkbs: list[bytes], bad: list[int]) -> _Rings:
    """``r`` with the faces of the geometries ``bad`` read by :func:`polygons_from_wkb`."""
    face_end = np.cumsum(r.geom_faces)
    ring_end = np.cumsum(r.face_rings)
    coord_end = np.cumsum(r.ring_sizes)
    coords, sizes, face_rings, geom_faces = [], [], [], []
    for g in range(len(r.geom_faces)):
        if g in bad:
            faces = polygons_from_wkb(wkbs[g])
            coords += [ring for face in faces for ring in face]
            sizes += [len(ring) for face in faces for ring in face]
            face_rings += [len(face) for face in faces]
            geom_faces.append(len(faces))
            continue
        f0 = face_end[g] - r.geom_faces[g]
        r0 = ring_end[f0 - 1] if f0 else 0
        r1 = ring_end[face_end[g] - 1] if r.geom_faces[g] else r0
        c0 = coord_end[r0 - 1] if r0 else 0
        c1 = coord_end[r1 - 1] if r1 else c0
        coords.append(r.coords[c0:c1])
        sizes += r.ring_sizes[r0:r1].tolist()
        face_rings += r.face_rings[f0:face_end[g]].tolist()
        geom_faces.append(int(r.geom_faces[g]))
    return _Rings(np.concatenate(coords) if coords else np.zeros((0, 3)),
                  np.asarray(sizes, np.int64), np.asarray(face_rings, np.int64),
                  np.asarray(geom_faces, np.int64))


def clean_rings(idx: np.ndarray, sizes: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Vertex indices of open rings without a repeat of the vertex before (two vertices
    closer than the grid become one, the first vertex counting as after the last): the
    kept indices and each ring's new size; a ring left with fewer than 3 distinct vertices
    is dropped: size 0 when nothing is left of it, else minus the count of its indices
    still in the kept list."""
    if not len(idx):
        return [], np.zeros(len(sizes), np.int64)
    ring = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.cumsum(sizes) - sizes
    prev = np.arange(len(idx)) - 1
    prev[starts[sizes > 0]] = (starts + sizes - 1)[sizes > 0]  # cyclic: first after last
    keep = idx != idx[prev]
    new = np.bincount(ring[keep], minlength=len(sizes))
    kept = idx[keep].tolist()
    small = np.flatnonzero((new > 0) & (new < 5))
    if len(small):
        offsets = np.cumsum(new) - new
        for r in small.tolist():
            o = int(offsets[r])
            if len(set(kept[o:o + int(new[r])])) < 3:
                new[r] = -new[r]  # marked: dropped below, its indices skipped
    return kept, new


def shells(faces: list[list[list[int]]]) -> list[list[int]] | None:
    """Faces grouped into closed shells, each edge met by exactly one reversed edge of
    another face (or of the same face's other ring); None when the faces are not that."""
    owner: dict[tuple[int, int], int] = {}
    for fi, face in enumerate(faces):
        for ring in face:
            for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
                if (a, b) in owner:
                    return None  # an edge used twice the same way: open or mis-oriented
                owner[(a, b)] = fi
    parent = list(range(len(faces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (a, b), fi in owner.items():
        fj = owner.get((b, a))
        if fj is None:
            return None
        parent[find(fi)] = find(fj)
    groups: dict[int, list[int]] = {}
    for fi in range(len(faces)):
        groups.setdefault(find(fi), []).append(fi)
    return list(groups.values())


def geometry_object(type_: str, lod: str, faces: list[list[list[int]]],
                    semantics: list[str | None]) -> dict[str, Any]:
    """A CityJSON geometry object of surfaces given as rings of vertex indices."""
    allowed = GEOMETRY_TYPES.get(type_, _ALL)
    found = shells(faces) if "Solid" in allowed else None
    kinds: list[str] = []
    values_of: dict[str, int] = {}
    values: list[int | None] = []
    for s in semantics:
        s = RENAMED_SEMANTICS.get(s, s) if s is not None else None
        if s not in SEMANTIC_TYPES:
            values.append(None)
            continue
        if s not in values_of:
            values_of[s] = len(kinds)
            kinds.append(s)
        values.append(values_of[s])

    def pick(group: list[int]) -> tuple[list[Any], list[int | None]]:
        return [faces[i] for i in group], [values[i] for i in group]

    geom: dict[str, Any]
    if found is not None and len(found) == 1:
        b, v = pick(found[0])
        geom = {"type": "Solid", "lod": lod, "boundaries": [b]}
        sem_values: Any = [v]
    elif found is not None and "MultiSolid" in allowed:
        parts = [pick(g) for g in found]
        geom = {"type": "MultiSolid", "lod": lod, "boundaries": [[b] for b, _ in parts]}
        sem_values = [[v] for _, v in parts]
    else:
        kind = "MultiSurface" if "MultiSurface" in allowed else "CompositeSurface"
        geom = {"type": kind, "lod": lod, "boundaries": faces}
        sem_values = values
    if kinds:
        geom["semantics"] = {"surfaces": [{"type": k} for k in kinds], "values": sem_values}
    return geom


class Converter:
    """Stored rows to CityJSON objects whose vertices go to a :class:`VertexPool`."""

    def __init__(self, out: OutputCrs, translate: np.ndarray) -> None:
        self.out = out
        self.translate = translate
        self.lo = np.full(3, np.inf)  # the extent of what was written, output CRS
        self.hi = np.full(3, -np.inf)

    def quantize(self, lonlath: np.ndarray) -> np.ndarray:
        x, y, z = self.out.to_out(lonlath[:, 0], lonlath[:, 1], lonlath[:, 2])
        xyz = np.column_stack([x, y, z])
        if not np.isfinite(xyz).all():
            raise ValueError(f"coordinates that {self.out.label} cannot represent")
        return np.rint((xyz - self.translate) / SCALE).astype(np.int64)

    def objects(self, objects: list[_Object], pool: VertexPool, present: set[str],
                children: dict[str, list[str]]) -> list[tuple[str, dict[str, Any]]]:
        """The objects as (id, CityJSON object); their vertices added to ``pool``."""
        geoms = [g for o in objects for g in o.geometries]
        r = read_rings([g.wkb for g in geoms])
        if len(r.coords):
            q = self.quantize(r.coords)
            written = q * SCALE + self.translate
            self.lo = np.minimum(self.lo, written.min(axis=0))
            self.hi = np.maximum(self.hi, written.max(axis=0))
            kept, new = clean_rings(pool.add(q), r.ring_sizes)
        else:
            kept, new = [], np.zeros(len(r.ring_sizes), np.int64)
        sizes = new.tolist()
        face_rings = r.face_rings.tolist()
        geom_faces = r.geom_faces.tolist()
        at = ring_no = face_no = geom_no = 0
        out: list[tuple[str, dict[str, Any]]] = []
        for o in objects:
            parent = o.parent if o.parent in present else None
            type_, source_type = cityjson_type(o.type, parent is not None,
                                               bool(children.get(o.object_id)))
            attributes = dict(o.attributes)
            if source_type is not None:
                attributes.setdefault("sourceType", source_type)
            obj: dict[str, Any] = {"type": type_}
            if attributes:
                obj["attributes"] = attributes
            geometry = []
            for g in o.geometries:
                faces: list[list[list[int]]] = []
                sems: list[str | None] = []
                n_faces = geom_faces[geom_no]
                geom_no += 1
                for k in range(n_faces):
                    face: list[list[int]] = []
                    for j in range(face_rings[face_no]):
                        n = sizes[ring_no]
                        ring_no += 1
                        if n > 0:
                            face.append(kept[at:at + n])
                        elif j == 0:
                            face.append([])  # the exterior shrank below the grid
                        at += abs(n)
                    face_no += 1
                    if face and face[0]:
                        faces.append(face)
                        sems.append(g.semantics[k] if k < len(g.semantics)
                                    and isinstance(g.semantics[k], str) else None)
                if faces:
                    geometry.append(geometry_object(type_, export_lod(g.lod), faces, sems))
            if geometry:
                obj["geometry"] = geometry
            if parent is not None:
                obj["parents"] = [parent]
            if children.get(o.object_id):
                obj["children"] = children[o.object_id]
            out.append((o.object_id, obj))
        return out


# ---------------------------------------------------------------------------- writing

ROW_SQL = """
    SELECT id, object_id, type, parent_object_id, lod, name, ST_AsBinary(geom, 'NDR') AS wkb,
           attributes, semantics
    FROM city_objects WHERE id = ANY(:ids)"""
# the other LoDs are kept as GeoJSON: PostGIS turns them into WKB, read like the main one
LODS_SQL = """
    SELECT c.id, o.key AS lod, o.value -> 'surfaces' AS surfaces,
           ST_AsBinary(ST_GeomFromGeoJSON(o.value -> 'geometry'), 'NDR') AS wkb
    FROM city_objects c CROSS JOIN LATERAL jsonb_each(c.other_lods) o
    WHERE c.id = ANY(:ids) AND jsonb_typeof(o.value -> 'geometry') = 'object'"""


async def _rows(conn: AsyncConnection, ids: list[int]) -> list[tuple[Any, list[Any]]]:
    rows = {r.id: r for r in (await conn.execute(text(ROW_SQL), {"ids": ids})).all()}
    lods: dict[int, list[Any]] = {}
    for r in (await conn.execute(text(LODS_SQL), {"ids": ids})).all():
        lods.setdefault(r.id, []).append(r)
    return [(rows[i], lods.get(i, [])) for i in ids]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def metadata(out: OutputCrs, at: datetime | None, extent: Iterable[float] | None
             ) -> dict[str, Any]:
    when = (at or datetime.now(UTC)).astimezone(UTC)
    meta: dict[str, Any] = {
        "identifier": str(uuid.uuid4()),
        "referenceSystem": out.uri,
        "referenceDate": when.date().isoformat(),
        "title": (f"Twinbase city model as it was at {when.isoformat()}"
                  if at is not None else f"Twinbase city model, current at {when.isoformat()}")
                 + f", in {out.label}; {out.heights}",
    }
    if extent is not None:
        meta["geographicalExtent"] = [round(float(v), 3) for v in extent]
    return meta


def _translate(out: OutputCrs, sel: Selection) -> np.ndarray:
    if sel.box is None:
        return np.zeros(3)
    return np.floor(box_extent(out, sel.box)[:3])


async def write_cityjson(conn: AsyncConnection, sel: Selection, out: OutputCrs,
                         at: datetime | None, run: Any) -> AsyncIterator[bytes]:
    """One CityJSON 2.0 document; ``run`` runs CPU work off the event loop."""
    translate = _translate(out, sel)
    conv = Converter(out, translate)
    pool = VertexPool()
    present = set(sel.object_ids)
    children = sel.children()
    yield b'{"type":"CityJSON","version":"2.0","CityObjects":{'
    first = True
    for ids, _ in sel.families(BATCH):
        rows = await _rows(conn, ids)
        written = await run(lambda rows=rows: conv.objects(
            [object_of(*r) for r in rows], pool, present, children))
        parts = []
        for oid, obj in written:
            parts.append(("" if first else ",") + _dumps(oid) + ":" + _dumps(obj))
            first = False
        yield "".join(parts).encode()
    verts = pool.vertices()
    extent = None
    if len(verts):
        # the translate becomes the lowest vertex (on the same grid), the extent exact
        shift = verts.min(axis=0)
        verts = verts - shift
        translate = translate + shift * SCALE
        extent = [*conv.lo, *conv.hi]
    yield b'},"vertices":['
    for i in range(0, len(verts), 100_000):
        chunk = verts[i:i + 100_000].tolist()
        body = _dumps(chunk)[1:-1]
        yield (("," if i else "") + body).encode()
    tail = {"transform": {"scale": [SCALE] * 3, "translate": _floats(translate)},
            "metadata": metadata(out, at, extent)}
    yield ("]," + _dumps(tail)[1:]).encode()


async def write_cityjsonseq(conn: AsyncConnection, sel: Selection, out: OutputCrs,
                            at: datetime | None, run: Any) -> AsyncIterator[bytes]:
    """CityJSONSeq: a CityJSON header line, then one CityJSONFeature per root object."""
    extent = None
    if sel.box is not None:
        box = box_extent(out, sel.box)  # outward to the millimetre: it must hold every vertex
        extent = np.concatenate([np.floor(box[:3] / SCALE), np.ceil(box[3:] / SCALE)]) * SCALE
    translate = np.floor(extent[:3]) if extent is not None else np.zeros(3)
    header = {"type": "CityJSON", "version": "2.0",
              "transform": {"scale": [SCALE] * 3, "translate": _floats(translate)},
              "metadata": metadata(out, at, extent), "CityObjects": {}, "vertices": []}
    yield (_dumps(header) + "\n").encode()
    conv = Converter(out, translate)
    present = set(sel.object_ids)
    children = sel.children()
    for ids, roots in sel.families(BATCH):
        rows = await _rows(conn, ids)

        def features(rows: list[Any] = rows, roots: list[str] = roots) -> str:
            objects = [object_of(*r) for r in rows]
            lines = []
            start = 0
            for end in range(1, len(rows) + 1):
                if end < len(rows) and roots[end] == roots[start]:
                    continue
                pool = VertexPool()  # a feature's vertices are its own
                written = conv.objects(objects[start:end], pool, present, children)
                lines.append(_dumps({"type": "CityJSONFeature", "id": roots[start],
                                     "CityObjects": dict(written),
                                     "vertices": pool.vertices().tolist()}) + "\n")
                start = end
            return "".join(lines)

        yield (await run(features)).encode()


def _floats(v: np.ndarray) -> list[float]:
    return [round(float(x), 3) for x in v]
