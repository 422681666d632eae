"""The live drone layer in the OGC API - Features registry (``drones_live``).

Routes and zones are registered with the other layers in ``service.features.layers``; the
live state is registered here, next to the code that writes it, and only if no one else
registered it. ``silent`` uses the default 15 s here (a fixed SELECT has no settings).
"""

from __future__ import annotations

from service.features.registry import Collection, Prop, get, register

_SILENT = "s.received_at < now() - interval '15 seconds'"

if get("drones_live") is None:
    register(Collection(
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
    ))
