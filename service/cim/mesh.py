"""City objects -> generic mesh-tiler features (id, properties, polygons with semantic class)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from readers.cim.model import CityObject
from tiler.mesh.features import MeshFeature, MeshPolygon

FIXED = ("type", "lod", "height", "name", "parent_id")


def feature_properties(obj: CityObject) -> dict[str, Any]:
    """What a dashboard click shows: id (added by the tiler), type, LoD, height, name, parent,
    then the source attributes (renamed ``attr_<name>`` if they clash with the fixed ones)."""
    return properties_of(obj.type, obj.lod, obj.height, obj.name, obj.parent_id, obj.attributes)


def properties_of(type_: str, lod: str | None, height: float | None, name: str | None,
                  parent_id: str | None, attributes: dict[str, Any]) -> dict[str, Any]:
    """:func:`feature_properties` from the pieces (the service builds them from stored rows,
    so tiles made from the database carry the same properties as tiles made from a file)."""
    props: dict[str, Any] = {
        "type": type_,
        "lod": lod,
        "height": None if height is None else round(float(height), 3),
        "name": name,
        "parent_id": parent_id,
    }
    for key, value in attributes.items():
        props[f"attr_{key}" if key in FIXED or key == "id" else key] = value
    return props


def to_mesh_feature(obj: CityObject) -> MeshFeature:
    return MeshFeature(
        id=obj.id,
        properties=feature_properties(obj),
        polygons=[MeshPolygon(s.rings, s.semantic) for s in obj.surfaces],
    )


def to_mesh_features(objects: Iterable[CityObject]) -> Iterator[MeshFeature]:
    """Objects with geometry, at their highest LoD, as tiler features."""
    for obj in objects:
        if obj.surfaces:
            yield to_mesh_feature(obj)
