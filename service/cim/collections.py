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
    Collection(
        id="city_changes",
        title="City changes from surveys (fly and model)",
        description="Per modelled survey (dataset_id), each building of the city model it "
                    "found new, changed, unchanged or demolished (or could not tell: skipped), "
                    "with the LoD reached, the RMSE of its roof points to the model, points, "
                    "density and reason. The city-appearance review list: filter change=new.",
        source="city_changes",
        geometry_type="MultiPolygon",
        geometry_column="footprint",
        properties=(
            Prop("dataset_id", "integer", title="Survey (dataset)"),
            Prop("object_id", "string", title="City object id"),
            Prop("change", "string", title="new, changed, unchanged, demolished or skipped"),
            Prop("lod", "string", title="LoD reached"),
            Prop("rmse_m", "number", title="RMSE of the roof points to the model (m)"),
            Prop("points", "integer", title="Points"),
            Prop("density", "number", title="Points per m2"),
            Prop("reason", "string", title="Why"),
            Prop("detected_at", "datetime", title="Modelled at"),
        ),
        temporal=("detected_at", None),
        default_sort=("dataset_id", "object_id"),
        keywords=("CIM", "change detection", "LiDAR"),
    ),
)
