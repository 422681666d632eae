"""IfcSpace: the rooms of a model, which room each element is in and which rooms it bounds.

Spaces are not elements: they are left out of the tiles and of ``bim_elements`` (a room's
volume drawn over its furniture would catch every click), but planners ask for rooms and
for "the elements in room X". Their bodies are meshed in the same call to the geometry
children as the elements (``read_bim`` passes their step ids along), so a model with rooms
pays no extra round trip and a model without any pays nothing at all.

A room keeps its plan footprint (lon / lat), its height range (ellipsoidal metres) and its
floor area, computed from the footprint in model metres, so no map projection distorts it.
A room whose geometry fails is kept without them and listed under ``spaces_failed``.

Which room an element is in:

1. what the file says: an element contained in an IfcSpace through
   IfcRelContainedInSpatialStructure (furniture, usually), or a part of an assembly that is;
2. else, for an element the file does not name as a room boundary, the geometry: the room
   whose footprint contains a point inside the element's footprint (shapely's
   ``point_on_surface``) and whose height range holds the middle of the element's height;
   when rooms overlap (a stairwell inside a hall) the smallest wins.

Walls, doors, windows, floor slabs and coverings that IfcRelSpaceBoundary names as the
boundary of a room get no room from the geometry: a partition bounds two rooms and is in
neither, and an outer wall or a floor slab bounds a room without being one of its contents,
so picking "the best one" would be a guess that makes "the elements in room X" wrong. An
element between rooms in a file without boundaries gets none too in the usual case, since
the point inside its body lies in the wall, which the rooms' footprints stop short of.
The height test uses the room's height range, not its shape: under a pitched roof, rafters
in the roof space count as in the room below the ridge.

Which rooms an element bounds is what IfcRelSpaceBoundary says, kept apart from the room
it is in: a partition bounds both rooms, so "the doors of room X" and "the rooms this wall
bounds" are answered from the file, not guessed from geometry. A boundary may be of any
level (IFC4's 1st and 2nd level subtypes) and physical or virtual; a part of an assembly
bounds the rooms its assembly does (a curtain wall's plates), and a boundary that names an
opening is the door or window filling it, which is what some exporters point at. Boundaries
of an IfcExternalSpatialElement (IFC4: the outside) name no room, but their elements still
count as boundaries for the geometric test above.

A room's footprint is the outline of its whole body seen from above, so its floor area is
the gross one (a gallery under a pitched roof gives its area at floor level, not the net
area of its quantity set, which leaves out the low parts).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry

from .footprint import to_lonlat
from .geometry import ElementGeometry, GeometryResult
from .properties import psets_of, storey_of

SPACE_CLASS = "IfcSpace"
Z_TOLERANCE_M = 0.01  # a cabinet standing on the floor starts where the room does


@dataclass
class BimSpace:
    step_id: int
    global_id: str
    name: str | None  # the room number in most authoring tools
    long_name: str | None  # the room's name ("Kitchen")
    storey: str | None
    storey_global_id: str | None
    psets: dict[str, dict[str, Any]] = field(default_factory=dict)
    plan: BaseGeometry | None = None  # model x / y metres
    z_range: tuple[float, float] | None = None  # model metres
    footprint: MultiPolygon | None = None  # lon / lat
    floor_area: float | None = None  # m², of the plan
    llh_min: tuple[float, float, float] | None = None  # lon, lat, ellipsoidal height
    llh_max: tuple[float, float, float] | None = None
    failure: str | None = None


def model_spaces(model) -> list[Any]:
    """The model's IfcSpace entities, one per GlobalId (a second one with the same GlobalId
    could not be stored, and should not fail the ingest)."""
    seen: set[str] = set()
    out = []
    for space in model.by_type(SPACE_CLASS):
        if space.GlobalId not in seen:
            seen.add(space.GlobalId)
            out.append(space)
    return out


def space_info(space) -> BimSpace:
    storey = storey_of(space)
    return BimSpace(
        step_id=space.id(), global_id=space.GlobalId, name=space.Name,
        long_name=getattr(space, "LongName", None),
        storey=storey.Name if storey is not None else None,
        storey_global_id=storey.GlobalId if storey is not None else None,
        psets=psets_of(space))


def take_space_geometry(geo: GeometryResult, step_ids: Iterable[int]
                        ) -> tuple[dict[int, ElementGeometry], dict[int, str]]:
    """Move the spaces' results out of a result meshed together with the elements, so that
    what is left is the elements' alone."""
    shapes: dict[int, ElementGeometry] = {}
    failures: dict[int, str] = {}
    for i in step_ids:
        if i in geo.elements:
            shapes[i] = geo.elements.pop(i)
        if i in geo.failures:
            failures[i] = geo.failures.pop(i)
    return shapes, failures


def place_spaces(spaces: Sequence[BimSpace], shapes: dict[int, ElementGeometry],
                 failures: dict[int, str],
                 to_wgs84: Callable[[np.ndarray], np.ndarray]) -> None:
    """Give the spaces their footprint, height range and area on the globe."""
    meshed = [s for s in spaces if s.step_id in shapes]
    for s in spaces:
        s.failure = failures.get(s.step_id)
    if not meshed:
        return
    verts = [shapes[s.step_id].verts for s in meshed]
    llh = np.split(to_wgs84(np.concatenate(verts)), np.cumsum([len(v) for v in verts])[:-1])
    plans = [_polygonal(shapes[s.step_id].plan) for s in meshed]
    footprints = to_lonlat(plans, to_wgs84)
    for s, v, part, plan, fp in zip(meshed, verts, llh, plans, footprints, strict=True):
        s.plan, s.z_range = plan, (float(v[:, 2].min()), float(v[:, 2].max()))
        lo, hi = part.min(axis=0), part.max(axis=0)
        s.llh_min = (float(lo[0]), float(lo[1]), float(lo[2]))
        s.llh_max = (float(hi[0]), float(hi[1]), float(hi[2]))
        if fp.is_empty:
            s.failure = "geometry has no area seen from above"
        else:
            s.footprint, s.floor_area = fp, round(float(plan.area), 4)


def _polygonal(plan: BaseGeometry | None) -> BaseGeometry:
    return plan if plan is not None else shapely.Polygon()


def contained_elements(entities: Iterable[Any]) -> dict[str, str]:
    """{element GlobalId: space GlobalId} from IfcRelContainedInSpatialStructure."""
    out: dict[str, str] = {}
    for space in entities:
        for rel in getattr(space, "ContainsElements", None) or ():
            for element in rel.RelatedElements or ():
                out.setdefault(element.GlobalId, space.GlobalId)
    return out


def space_boundaries(model) -> dict[str, set[str]]:
    """{element GlobalId: GlobalIds of the IfcSpaces it bounds}, from IfcRelSpaceBoundary
    and its subtypes. Every element the file names as a boundary is a key, even one whose
    only boundary is of an IfcExternalSpatialElement (then with no room)."""
    out: dict[str, set[str]] = {}
    for rel in model.by_type("IfcRelSpaceBoundary"):
        element, space = rel.RelatedBuildingElement, rel.RelatingSpace
        if element is None:
            continue
        room = space.GlobalId if space is not None and space.is_a(SPACE_CLASS) else None
        for e in _boundary_bodies(element):
            rooms = out.setdefault(e.GlobalId, set())
            if room is not None:
                rooms.add(room)
    return out


def _boundary_bodies(element) -> list[Any]:
    """The elements a boundary stands for: an opening has no body and is no element, the
    door or window filling it is."""
    if element.is_a("IfcOpeningElement"):
        fillings = [rel.RelatedBuildingElement for rel in element.HasFillings or ()]
        return [element, *fillings]
    return [element]


def bounded_spaces(boundaries: dict[str, set[str]], global_ids: Sequence[str],
                   assemblies: Sequence[str | None]) -> list[list[str]]:
    """The rooms each element bounds, sorted: its own and its assembly's."""
    out = []
    for g, a in zip(global_ids, assemblies, strict=True):
        rooms = boundaries.get(g, set()) | (boundaries.get(a, set()) if a else set())
        out.append(sorted(rooms))
    return out


def assign_spaces(spaces: Sequence[BimSpace], contained: dict[str, str],
                  boundaries: Container[str],
                  global_ids: Sequence[str], assemblies: Sequence[str | None],
                  plans: Sequence[BaseGeometry | None], z_ranges: Sequence[tuple[float, float]]
                  ) -> list[str | None]:
    """The space of each element (see the module docstring), or None. ``plans`` and
    ``z_ranges`` are the elements' in model metres, like the spaces' own."""
    result: list[str | None] = [
        contained.get(g) or (contained.get(a) if a else None)
        for g, a in zip(global_ids, assemblies, strict=True)]
    located = [(s.global_id, s.plan, s.plan.area, s.z_range) for s in spaces
               if s.plan is not None and not s.plan.is_empty and s.z_range is not None]
    todo = [i for i, r in enumerate(result) if r is None
            and global_ids[i] not in boundaries and assemblies[i] not in boundaries]
    if not located or not todo:
        return result
    tree = shapely.STRtree([plan for _, plan, _, _ in located])
    points = shapely.point_on_surface(np.array([_polygonal(plans[i]) for i in todo],
                                               dtype=object))
    z_mid = [(z_ranges[i][0] + z_ranges[i][1]) / 2 for i in todo]
    best: dict[int, tuple[float, str]] = {}
    for k, j in zip(*(a.tolist() for a in tree.query(points, predicate="within")),
                    strict=True):
        global_id, _, area, (lo, hi) = located[j]
        if lo - Z_TOLERANCE_M <= z_mid[k] <= hi + Z_TOLERANCE_M and (
                k not in best or area < best[k][0]):
            best[k] = (area, global_id)
    for k, (_, global_id) in best.items():
        result[todo[k]] = global_id
    return result
