"""Read an IFC file into placed elements: identity, properties, triangles on the globe,
footprint; plus the elements that could not be loaded, each with its reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import MultiPolygon

from .errors import IfcInputError
from .footprint import to_lonlat
from .geometry import (
    DEFAULT_GEOMETRY_LIBRARY,
    ElementGeometry,
    GeometryPool,
    has_body,
    has_body_representation,
    mesh_products,
)
from .georef import Anchor, check_near_origin, check_on_globe, resolve
from .placement import Placement
from .properties import ElementInfo, element_info
from .reader import file_schema, open_ifc
from .spaces import (
    BimSpace,
    assign_spaces,
    bounded_spaces,
    contained_elements,
    model_spaces,
    place_spaces,
    space_boundaries,
    space_info,
    take_space_geometry,
)

Progress = Callable[[str, int, int], None]


@dataclass
class BimElement:
    info: ElementInfo
    geometry: ElementGeometry
    llh: np.ndarray  # (n, 3) lon, lat, ellipsoidal height of geometry.verts
    footprint: MultiPolygon  # lon / lat
    space_global_id: str | None = None  # the IfcSpace it is in (see spaces.py)
    bounded_space_global_ids: list[str] = field(default_factory=list)  # the ones it bounds

    @property
    def triangles(self) -> int:
        return len(self.geometry.faces)


@dataclass
class BimModel:
    schema: str
    placement: Placement
    unit_scale: float  # metres per project length unit (psets keep project units)
    elements: list[BimElement]
    colours: list[tuple[int, int, int, int]]
    failures: list[dict[str, Any]] = field(default_factory=list)
    products: int = 0  # products that should have a body
    spaces: list[BimSpace] = field(default_factory=list)  # every IfcSpace, not in elements

    @property
    def spaces_failed(self) -> list[dict[str, Any]]:
        """Spaces kept without geometry because meshing it failed."""
        return [{"global_id": s.global_id, "name": s.name, "long_name": s.long_name,
                 "reason": s.failure} for s in self.spaces if s.failure]

    def bounds(self) -> dict[str, list[float]]:
        """{"min": [lon, lat, h], "max": [...]}, as the other dataset kinds write it."""
        allp = np.concatenate([e.llh for e in self.elements])
        lo, hi = allp.min(axis=0), allp.max(axis=0)
        return {"min": [round(float(v), 9) for v in lo], "max": [round(float(v), 9) for v in hi]}


def read_bim(path: str | Path, *, pool: GeometryPool, anchor: Anchor | None = None,
             crs: str | None = None, vertical: str | None = None,
             progress: Progress | None = None,
             geometry_library: str = DEFAULT_GEOMETRY_LIBRARY) -> BimModel:
    import ifcopenshell.util.unit

    report = progress or (lambda stage, done, total: None)
    path = Path(path)
    if path.is_file():
        file_schema(path)  # refuse a wrong file before the children read it
        pool.prefetch(path)
    model = open_ifc(path)
    placement = resolve(model, anchor=anchor, crs=crs, vertical=vertical)
    unit = float(ifcopenshell.util.unit.calculate_unit_scale(model))
    products = [p for p in model.by_type("IfcProduct") if has_body(p)]
    if not products:
        raise IfcInputError("the model has no geometry: no IfcProduct has a 3D body "
                            "representation (openings and spaces aside)")
    space_entities = model_spaces(model)
    # rooms ride along in the elements' one round through the geometry children
    space_ids = [s.id() for s in space_entities if has_body_representation(s)]
    report("geometry", 0, len(products) + len(space_ids))
    infos: dict[int, ElementInfo] = {}
    spaces: list[BimSpace] = []

    def read_properties() -> None:
        for p in products:
            infos[p.id()] = element_info(model, p, unit)
        spaces.extend(space_info(s) for s in space_entities)

    geo = mesh_products(model, path, [p.id() for p in products] + space_ids, pool=pool,
                        progress=lambda done, total: report("geometry", done, total),
                        while_waiting=read_properties, library=geometry_library)
    if not infos:  # the pool failed before the side work ran
        read_properties()
    space_shapes, space_failures = take_space_geometry(geo, space_ids)
    failures = [{"global_id": infos[i].global_id, "ifc_class": infos[i].ifc_class,
                 "name": infos[i].name, "reason": reason}
                for i, reason in sorted(geo.failures.items())]
    order = [p.id() for p in products if p.id() in geo.elements]
    if not order:
        raise IfcInputError(
            f"no element of the model has usable geometry ({len(failures)} failed; first: "
            f"{failures[0]['global_id']}: {failures[0]['reason']})" if failures else
            "no element of the model has usable geometry")
    counts = [len(geo.elements[i].verts) for i in order]
    allv = np.concatenate([geo.elements[i].verts for i in order])
    check_near_origin(placement, allv)
    llh = placement.to_wgs84(allv)
    check_on_globe(placement, llh)
    parts = np.split(llh, np.cumsum(counts)[:-1])
    footprints = to_lonlat([geo.elements[i].plan for i in order], placement.to_wgs84)
    elements = [BimElement(infos[i], geo.elements[i], part, fp)
                for i, part, fp in zip(order, parts, footprints, strict=True)]
    if spaces:
        place_spaces(spaces, space_shapes, space_failures, placement.to_wgs84)
        global_ids = [e.info.global_id for e in elements]
        assemblies = [e.info.assembly_global_id for e in elements]
        boundaries = space_boundaries(model)
        located = assign_spaces(
            spaces, contained_elements(space_entities), boundaries, global_ids, assemblies,
            [e.geometry.plan for e in elements],
            [(float(e.geometry.verts[:, 2].min()), float(e.geometry.verts[:, 2].max()))
             for e in elements])
        bounded = bounded_spaces(boundaries, global_ids, assemblies)
        for e, space, rooms in zip(elements, located, bounded, strict=True):
            e.space_global_id, e.bounded_space_global_ids = space, rooms
    return BimModel(model.schema_identifier, placement, unit, elements, geo.colours, failures,
                    len(products), spaces)
