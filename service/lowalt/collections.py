"""Drone routes, airspace zones, the live drone layer (``drones_live``), the route network
(``route_network``: its corridor edges, current ones unless a datetime asks for the history)
and vertiports in the OGC API - Features catalogue. ``silent`` uses the default 15 s here
(a fixed SELECT has no settings).
"""

from __future__ import annotations

from service.features.registry import Collection, Prop

_SILENT = "s.received_at < now() - interval '15 seconds'"

COLLECTIONS: tuple[Collection, ...] = (
    Collection(
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
    ),
    Collection(
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
    ),
    Collection(
        id="drones_live",
        title="Drones, live",
        description="Latest report of every drone (lon, lat, ellipsoidal height) with its "
                    "conformance flags: outside_corridor, outside_altitude_band, "
                    "outside_time_window, no_approved_route, above_height_limit (higher "
                    "above ground than 120 m, 50 m for micro drones, off an authorised "
                    "route), silent (no report for 15 s). ground_reference says what "
                    "height_agl_m is measured from: city_model, lidar_survey, or "
                    "egm96_sea_level where no ground is known.",
        source=(
            "(SELECT s.drone_id AS id, d.serial, d.operator, d.class AS drone_class, s.t,"
            " s.geom, s.speed_ms, s.track_deg, s.battery_pct, s.route_id, s.height_agl_m,"
            " s.ground_source AS ground_reference,"
            " s.received_at, s.flags || CASE WHEN " + _SILENT + " THEN ARRAY['silent']"
            " ELSE '{}'::text[] END AS flags,"
            " (cardinality(s.flags) = 0 AND NOT (" + _SILENT + ")) AS conforming"
            " FROM drone_state s JOIN drones d ON d.id = s.drone_id)"
        ),
        geometry_type="Point",
        has_z=True,
        properties=(
            Prop("serial", "string", title="Drone serial"),
            Prop("operator", "string", title="Operator"),
            Prop("drone_class", "string", title="UAV class",
                 enum=("micro", "light", "small", "medium", "large")),
            Prop("t", "datetime", title="Time of the report"),
            Prop("speed_ms", "number", title="Ground speed (m/s)"),
            Prop("track_deg", "number", title="Track (degrees)"),
            Prop("battery_pct", "number", title="Battery (%)"),
            Prop("route_id", "integer", title="Route flown"),
            Prop("height_agl_m", "number", title="Height above ground (m)"),
            Prop("ground_reference", "string", title="Ground the height is measured from",
                 enum=("city_model", "lidar_survey", "egm96_sea_level")),
            Prop("received_at", "datetime", title="Received"),
            Prop("conforming", "boolean", title="No flags"),
            Prop("flags", "array", title="Conformance flags", queryable=False,
                 sortable=False),
        ),
        temporal=("t", None),
        keywords=("low altitude", "drones", "live"),
    ),
    Collection(
        id="route_network",
        title="Route network",
        description="Corridor edges of the low-altitude route network: directed centre lines "
                    "(lon, lat, ellipsoidal height) at the flight layer of their heading "
                    "(layer 0 north, 1 east, 2 south, 3 west bound), with capacity in "
                    "flights per hour. Without a datetime the current network; with one, "
                    "the edges valid then (every edit is a version: valid_from/valid_to).",
        source=(
            "(SELECT e.id, e.from_node, e.to_node, e.geom, e.heading_deg, e.layer,"
            " e.layer_agl_m, e.half_width_m, e.vertical_half_m, e.length_m, e.speed_ms,"
            " e.capacity_per_hour, e.source, e.guide, e.verdict, e.version_from,"
            " e.version_to, e.valid_from, e.valid_to, e.closed_reason"
            " FROM network_edges e)"
        ),
        geometry_type="LineString",
        has_z=True,
        properties=(
            Prop("from_node", "integer", title="From node"),
            Prop("to_node", "integer", title="To node"),
            Prop("heading_deg", "number", title="Heading (degrees from grid north)"),
            Prop("layer", "integer", title="Layer (0 N, 1 E, 2 S, 3 W bound)"),
            Prop("layer_agl_m", "number", title="Layer above ground (m)"),
            Prop("half_width_m", "number", title="Corridor half width (m)"),
            Prop("vertical_half_m", "number", title="Corridor half height (m)"),
            Prop("length_m", "number", title="Length (m)"),
            Prop("speed_ms", "number", title="Speed (m/s)"),
            Prop("capacity_per_hour", "integer", title="Capacity (flights per hour)"),
            Prop("source", "string", title="Made from",
                 enum=("guide", "connector", "planner")),
            Prop("guide", "string", title="Guide line"),
            Prop("verdict", "string", title="Validation verdict"),
            Prop("version_from", "integer", title="First version"),
            Prop("version_to", "integer", title="Closed in version"),
            Prop("valid_from", "datetime", title="Valid from"),
            Prop("valid_to", "datetime", title="Valid to (empty: current)"),
            Prop("closed_reason", "string", title="Why closed"),
        ),
        temporal=("valid_from", "valid_to"),
        current_only="t.version_to IS NULL",
        keywords=("low altitude", "route network"),
    ),
    Collection(
        id="vertiports",
        title="Vertiports",
        description="Vertiports and landing points: pad (lon, lat, ellipsoidal height) and "
                    "capacity in take-offs and landings per hour.",
        source=(
            "(SELECT v.id, v.code, v.name, v.geom, v.pad_m, v.capacity_per_hour,"
            " v.created_at FROM vertiports v)"
        ),
        geometry_type="Point",
        properties=(
            Prop("code", "string", title="Code"),
            Prop("name", "string", title="Name"),
            Prop("pad_m", "number", title="Pad height (m, ellipsoidal)"),
            Prop("capacity_per_hour", "integer", title="Movements per hour"),
            Prop("created_at", "datetime", title="Created"),
        ),
        keywords=("low altitude", "vertiports"),
    ),
)
