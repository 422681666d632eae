"""The collections this service publishes. BIM elements and spaces, drone routes and
airspace zones register here the same way when their tables exist (a
``register(Collection(...))`` each)."""

from __future__ import annotations

from service.features.registry import Collection, Prop, register
from service.layers.gb3838 import CLASS_LABELS
from service.layers.gbt33171 import ROAD_CLASSES

_CLASS_ARRAY = "ARRAY[" + ",".join(f"'{v}'" for v in CLASS_LABELS.values()) + "]"

register(Collection(
    id="road_segments",
    title="Road segments",
    description="Road network segments (LineString, lon/lat) with class after GB/T 33171-2016, "
                "lanes, speed limit and free-flow speed.",
    source="road_segments",
    geometry_type="LineString",
    properties=(
        Prop("code", "string", title="Segment code"),
        Prop("name", "string", title="Road name"),
        Prop("road_class", "string", title="Road class (GB/T 33171-2016)", enum=ROAD_CLASSES),
        Prop("lanes", "integer", title="Lanes"),
        Prop("speed_limit_kmh", "number", title="Speed limit (km/h)"),
        Prop("free_flow_kmh", "number", title="Free-flow speed (km/h)"),
        Prop("length_m", "number", title="Length (m)"),
        Prop("updated_at", "datetime", title="Last change"),
    ),
    temporal=("updated_at", None),
    tile_geometry_column="geom_3857",  # migration 0006
    keywords=("traffic", "roads"),
))

register(Collection(
    id="water_stations",
    title="Water-quality stations",
    description="Monitoring stations with the GB 3838-2002 class of their latest sample "
                "(single-factor rule), its deciding parameters and exceedance multiples.",
    source=(
        "(SELECT s.id, s.code, s.name, s.water_body, s.body_type, s.geom,"
        " o.observed_at AS latest_observed_at, o.grade AS latest_grade,"
        " o.deciding AS latest_deciding, o.exceedance AS latest_exceedance"
        " FROM water_stations s LEFT JOIN LATERAL (SELECT w.observed_at, w.grade, w.deciding,"
        " w.exceedance FROM water_observations w WHERE w.station_id = s.id"
        " ORDER BY w.observed_at DESC LIMIT 1) o ON true)"
    ),
    geometry_type="Point",
    properties=(
        Prop("code", "string", title="Station code"),
        Prop("name", "string", title="Station name"),
        Prop("water_body", "string", title="Water body"),
        Prop("body_type", "string", title="river, or lake (lakes and reservoirs)",
             enum=("river", "lake")),
        Prop("latest_observed_at", "datetime", title="Time of the latest sample"),
        Prop("latest_grade", "integer", title="Latest class as 1..6 (6 = 劣V)"),
        Prop("latest_class", "string", sql=f"({_CLASS_ARRAY})[t.latest_grade]",
             title="Latest GB 3838-2002 class", enum=tuple(CLASS_LABELS.values())),
        Prop("latest_deciding", "array", title="Parameters that decide the class",
             queryable=False, sortable=False),
        Prop("latest_exceedance", "object", title="Multiples over the class III limit",
             queryable=False, sortable=False),
    ),
    temporal=("latest_observed_at", None),
    keywords=("water quality", "GB 3838-2002"),
))

register(Collection(
    id="surveys",
    title="LiDAR surveys",
    description="Drone LiDAR surveys: footprint, point count, density and acquisition time.",
    source=(
        "(SELECT d.id, d.name, d.status, d.crs, d.footprint, d.acquired_at, d.created_at,"
        " (d.stats->>'points')::bigint AS point_count,"
        " (d.stats->>'density_per_m2')::double precision AS density_per_m2,"
        " d.stats->>'tileset' AS tileset"
        " FROM datasets d WHERE d.kind = 'lidar')"
    ),
    geometry_type="MultiPolygon",
    geometry_column="footprint",
    properties=(
        Prop("name", "string", title="File name"),
        Prop("status", "string", title="Ingest status"),
        Prop("crs", "string", title="Source CRS"),
        Prop("point_count", "integer", title="Points"),
        Prop("density_per_m2", "number", title="Points per m²"),
        Prop("acquired_at", "datetime", title="Acquisition time"),
        Prop("created_at", "datetime", title="Upload time"),
        Prop("tileset", "string", title="3D Tiles", queryable=False, sortable=False),
    ),
    temporal=("acquired_at", None),
    keywords=("lidar", "survey"),
))

register(Collection(
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
))

register(Collection(
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
))

register(Collection(
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
))

register(Collection(
    id="drone_routes",
    title="Drone routes",
    description="Filed low-altitude routes: 3D centre line (lon, lat, ellipsoidal height), "
                "altitude band, time window, status and validation verdict.",
    source=(
        "(SELECT r.id, r.name, r.drone_id, d.serial AS drone_serial, r.status, r.priority,"
        " r.geom, r.half_width_m, r.vertical_half_m, lower(r.alt_band)::float8 AS alt_min_m,"
        " upper(r.alt_band)::float8 AS alt_max_m, lower(r.time_window) AS start_time,"
        " upper(r.time_window) AS end_time, r.length_m, r.verdict"
        " FROM drone_routes r JOIN drones d ON d.id = r.drone_id)"
    ),
    geometry_type="LineString",
    has_z=True,
    properties=(
        Prop("name", "string", title="Name"),
        Prop("drone_id", "integer", title="Drone"),
        Prop("drone_serial", "string", title="Drone serial"),
        Prop("status", "string", title="Status"),
        Prop("priority", "integer", title="Priority (0-9)"),
        Prop("half_width_m", "number", title="Corridor half width (m)"),
        Prop("vertical_half_m", "number", title="Corridor half height (m)"),
        Prop("alt_min_m", "number", title="Lowest altitude (m)"),
        Prop("alt_max_m", "number", title="Highest altitude (m)"),
        Prop("start_time", "datetime", title="Window start"),
        Prop("end_time", "datetime", title="Window end"),
        Prop("length_m", "number", title="Length (m)"),
        Prop("verdict", "string", title="Validation verdict"),
    ),
    temporal=("start_time", "end_time"),
    keywords=("low altitude", "drones"),
))

register(Collection(
    id="airspace_zones",
    title="Airspace zones",
    description="No-fly and restricted zones with floor and ceiling (m) and validity.",
    source=(
        "(SELECT z.id, z.code, z.name, z.zone_type, z.geom, z.floor_m, z.ceiling_m,"
        " z.height_reference, lower(z.valid) AS valid_from, upper(z.valid) AS valid_to,"
        " z.reason, z.authority FROM airspace_zones z)"
    ),
    geometry_type="MultiPolygon",
    properties=(
        Prop("code", "string", title="Code"),
        Prop("name", "string", title="Name"),
        Prop("zone_type", "string", title="Zone type"),
        Prop("floor_m", "number", title="Floor (m)"),
        Prop("ceiling_m", "number", title="Ceiling (m)"),
        Prop("height_reference", "string", title="Height reference (agl or ellipsoid)"),
        Prop("valid_from", "datetime", title="Valid from (empty: always)"),
        Prop("valid_to", "datetime", title="Valid to (empty: open)"),
        Prop("reason", "string", title="Reason"),
        Prop("authority", "string", title="Authority"),
    ),
    temporal=("valid_from", "valid_to"),
    keywords=("low altitude", "airspace"),
))
