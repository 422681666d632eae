"""What a BIM element says about itself: identity, type, storey and its property and quantity
sets, as JSON-safe values ready for a JSONB column and a tile property table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

# A few properties that dashboards show on click travel in the tiles too (the API has all).
TILE_PROPERTIES = (
    ("Pset_WallCommon", "IsExternal"),
    ("Pset_WallCommon", "LoadBearing"),
    ("Pset_WallCommon", "FireRating"),
    ("Pset_DoorCommon", "FireRating"),
    ("Pset_DoorCommon", "IsExternal"),
    ("Pset_WindowCommon", "IsExternal"),
    ("Pset_SlabCommon", "IsExternal"),
    ("Pset_SlabCommon", "LoadBearing"),
)


@dataclass
class ElementInfo:
    step_id: int
    global_id: str
    ifc_class: str
    class_path: list[str]  # lower case, the class first, then its supertypes
    name: str | None
    type_name: str | None
    assembly_global_id: str | None  # the aggregate this is a part of (a window's member)
    assembly_class: str | None
    storey: str | None
    storey_global_id: str | None
    storey_elevation: float | None  # metres
    psets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tile_row(self) -> dict[str, Any]:
        """Properties written to the tile's property table (id = GlobalId is added there)."""
        row: dict[str, Any] = {"class": self.ifc_class, "name": self.name or "",
                               "type": self.type_name or "", "storey": self.storey or "",
                               "assembly": self.assembly_global_id or "",
                               "assembly_class": self.assembly_class or ""}
        for pset, prop in TILE_PROPERTIES:
            value = self.psets.get(pset, {}).get(prop)
            if value is not None and not isinstance(value, dict | list):
                row[prop] = value if isinstance(value, bool) else str(value)
        return row


def json_safe(value: Any) -> Any:
    """IFC values as JSON: tuples to lists, entities to their names, NaN / inf to None."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if hasattr(value, "is_a"):  # an entity (e.g. a referenced material or person)
        name = getattr(value, "Name", None)
        return name if isinstance(name, str) else f"{value.is_a()}#{value.id()}"
    return str(value)


@lru_cache(maxsize=4096)
def _class_path(schema: str, cls: str) -> tuple[str, ...]:
    import ifcopenshell.ifcopenshell_wrapper as wrapper

    try:
        decl = wrapper.schema_by_name(schema).declaration_by_name(cls)
    except Exception:  # an unknown class name still gets itself
        return (cls.lower(),)
    path = []
    while decl is not None:
        path.append(decl.name().lower())
        decl = decl.supertype()
    return tuple(path)


def storey_of(element) -> Any:
    import ifcopenshell.util.element as ue

    node = ue.get_container(element)
    if node is None and element.is_a("IfcSpace"):
        node = ue.get_aggregate(element)  # rooms are parts of their storey, not contained
    seen = 0
    while node is not None and seen < 32:  # spaces and zones sit inside storeys
        if node.is_a("IfcBuildingStorey"):
            return node
        node = ue.get_aggregate(node) or ue.get_container(node)
        seen += 1
    return None


def psets_of(element) -> dict[str, dict[str, Any]]:
    import ifcopenshell.util.element as ue

    out: dict[str, dict[str, Any]] = {}
    for name, props in ue.get_psets(element).items():
        out[str(name)] = {str(k): json_safe(v) for k, v in props.items() if k != "id"}
    return out


def element_info(model, element, unit_scale: float) -> ElementInfo:
    import ifcopenshell.util.element as ue

    storey = storey_of(element)
    assembly = ue.get_aggregate(element)
    if assembly is not None and (assembly.is_a("IfcSpatialElement")
                                 or assembly.is_a("IfcSpatialStructureElement")):
        assembly = None  # a storey or building aggregates its parts too: not an assembly
    elevation = getattr(storey, "Elevation", None) if storey is not None else None
    element_type = ue.get_type(element)
    type_name = getattr(element_type, "Name", None) if element_type is not None else None
    schema = model.schema_identifier
    return ElementInfo(
        step_id=element.id(), global_id=element.GlobalId, ifc_class=element.is_a(),
        class_path=list(_class_path(schema, element.is_a())), name=element.Name,
        type_name=type_name or getattr(element, "ObjectType", None),
        assembly_global_id=assembly.GlobalId if assembly is not None else None,
        assembly_class=assembly.is_a() if assembly is not None else None,
        storey=storey.Name if storey is not None else None,
        storey_global_id=storey.GlobalId if storey is not None else None,
        storey_elevation=float(elevation) * unit_scale if elevation is not None else None,
        psets=psets_of(element),
    )
