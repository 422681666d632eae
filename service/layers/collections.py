"""The city layers in the OGC API - Features catalogue: roads (GB/T 33171 classes),
water-quality stations (GB 3838 classes) and the waterways they lie on."""

from __future__ import annotations

from service.features.registry import Collection, Prop
from service.layers.gb3838 import CLASS_LABELS
from service.layers.gbt33171 import ROAD_CLASSES
from service.layers.tables import WATERWAY_KINDS

_CLASS_ARRAY = "ARRAY[" + ",".join(f"'{v}'" for v in CLASS_LABELS.values()) + "]"

COLLECTIONS: tuple[Collection, ...] = (
    Collection(
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
    ),
    Collection(
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
    ),
    Collection(
        id="waterways",
        title="Waterways",
        description="Rivers, streams and canals (LineString, lon/lat) by name; a tributary "
                    "names the river it joins in parent. Water-quality stations lie on them.",
        source="waterways",
        geometry_type="LineString",
        properties=(
            Prop("code", "string", title="Waterway code"),
            Prop("name", "string", title="Name"),
            Prop("kind", "string", title="river, stream or canal", enum=WATERWAY_KINDS),
            Prop("parent", "string", title="The river it flows into"),
            Prop("length_m", "number", title="Length (m)"),
            Prop("updated_at", "datetime", title="Last change"),
        ),
        temporal=("updated_at", None),
        keywords=("water", "rivers"),
    ),
)
