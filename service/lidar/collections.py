"""The LiDAR surveys (datasets of kind lidar) in the OGC API - Features catalogue."""

from __future__ import annotations

from service.features.registry import Collection, Prop

COLLECTIONS: tuple[Collection, ...] = (
    Collection(
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
    ),
)
