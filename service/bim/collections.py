"""BIM elements and spaces in the OGC API - Features catalogue."""

from __future__ import annotations

from service.features.registry import Collection, Prop

COLLECTIONS: tuple[Collection, ...] = (
    Collection(
        id="bim_elements",
        title="BIM elements",
        description="IFC products placed on the globe: class, storey, heights (ellipsoidal, m) and "
                    "property sets, with their plan-view footprint.",
        source="bim_elements",
        geometry_type="MultiPolygon",
        geometry_column="footprint",
        properties=(
            Prop("global_id", "string", title="IFC GlobalId"),
            Prop("ifc_class", "string", title="IFC class"),
            Prop("name", "string", title="Name"),
            Prop("type_name", "string", title="Type"),
            Prop("storey", "string", title="Storey"),
            Prop("storey_elevation", "number", title="Storey elevation (m)"),
            Prop("min_height", "number", title="Lowest point (m, ellipsoidal)"),
            Prop("max_height", "number", title="Highest point (m, ellipsoidal)"),
            Prop("building_object_id", "string", title="CIM building (city_objects.object_id)"),
            Prop("space_global_id", "string", title="Space (room) the element is in (GlobalId)"),
            # CQL2 here has no array operators; /bim/elements?space=X&space_relation=boundary
            # is the query by bounded room
            Prop("bounded_space_global_ids", "array",
                 title="Spaces (rooms) the element bounds (GlobalIds, IfcRelSpaceBoundary)",
                 queryable=False, sortable=False),
            Prop("dataset_id", "integer", title="Source dataset"),
            Prop("psets", "object", title="Property sets", queryable=False, sortable=False),
        ),
        keywords=("BIM", "IFC"),
    ),
    Collection(
        id="bim_spaces",
        title="BIM spaces (rooms)",
        description="IfcSpace rooms of the BIM models: plan-view footprint of the room body "
                    "(lon/lat), storey, gross floor area (m², of the footprint) and height range "
                    "(ellipsoidal, m). Rooms are not in the 3D tiles; a room whose geometry "
                    "failed has no footprint.",
        source="bim_spaces",
        geometry_type="MultiPolygon",
        geometry_column="footprint",
        properties=(
            Prop("global_id", "string", title="IFC GlobalId"),
            Prop("name", "string", title="Name (the room number in most tools)"),
            Prop("long_name", "string", title="Long name (what the room is)"),
            Prop("storey", "string", title="Storey"),
            Prop("storey_global_id", "string", title="Storey GlobalId"),
            Prop("floor_area", "number", title="Gross floor area (m²)"),
            Prop("min_height", "number", title="Lowest point (m, ellipsoidal)"),
            Prop("max_height", "number", title="Highest point (m, ellipsoidal)"),
            Prop("dataset_id", "integer", title="Source dataset"),
            Prop("psets", "object", title="Property sets", queryable=False, sortable=False),
        ),
        keywords=("BIM", "IFC", "rooms"),
    ),
)
