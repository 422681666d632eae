"""CIM city objects (with their history) in the OGC API - Features catalogue."""

from __future__ import annotations

from service.features.registry import Collection, Prop

COLLECTIONS: tuple[Collection, ...] = (
    Collection(
        id="city_objects",
        title="City objects (CIM)",
        description="CityJSON/CityGML objects with 3D geometry (lon, lat, ellipsoidal height). "
                    "Only current objects by default; `datetime` selects by validity, so past "
                    "states of the living map stay queryable.",
        source="city_objects",
        geometry_type="Geometry",
        filter_geometry_column="footprint",
        has_z=True,
        properties=(
            Prop("object_id", "string", title="CityJSON/CityGML id"),
            Prop("type", "string", title="City object type"),
            Prop("lod", "string", title="Level of detail"),
            Prop("name", "string", title="Name"),
            Prop("height", "number", title="Height (m)"),
            Prop("min_z", "number", title="Lowest point (m, ellipsoidal)"),
            Prop("max_z", "number", title="Highest point (m, ellipsoidal)"),
            Prop("dataset_id", "integer", title="Source dataset"),
            Prop("valid_from", "datetime", title="Valid from"),
            Prop("valid_to", "datetime", title="Valid to (empty while current)"),
            Prop("attributes", "object", title="Attributes", queryable=False, sortable=False),
        ),
        temporal=("valid_from", "valid_to"),
        current_only="t.valid_to IS NULL",
        keywords=("CIM", "3D", "CityJSON"),
    ),
)
