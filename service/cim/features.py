"""City objects -> generic mesh-tiler features (id, properties, polygons with semantic class)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tiler.mesh.features import MeshFeature, MeshPolygon

from .model import CityObject

FIXED = ("type", "lod", "height", "name", "parent_id")


def feature_properties(obj: CityObject) -> dict[str, Any]:
    """What a dashboard click shows: id (added by the tiler), type, LoD, height, name, parent,
    then the source attributes (renamed ``attr_<name>`` if they clash with the fixed ones)."""
    props: dict[str, Any] = {
        "type": obj.type,
        "lod": obj.lod,
        "height": None if obj.height is None else round(float(obj.height), 3),
        "name": obj.name,
        "parent_id": obj.parent_id,
    }
    for key, value in obj.attributes.items():
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
