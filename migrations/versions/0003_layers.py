"""Layers: traffic (road segments, observations) and water quality (stations, observations).

Geometry is EPSG:4326 lon/lat. Observations are keyed by (feature, time) so a re-sent
reading replaces the earlier one instead of duplicating it. The GB 3838-2002 class of each
water observation is computed on ingest (service/layers/gb3838.py holds the limits) and
stored with it, so every read path shows the same class without recomputing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# GB 3838-2002 Table 1 parameters (mg/L unless noted), one column each
WATER_PARAMETERS = (
    "ph", "dissolved_oxygen", "codmn", "cod", "bod5", "nh3_n", "tp", "tn", "copper", "zinc",
    "fluoride", "selenium", "arsenic", "mercury", "cadmium", "chromium_vi", "lead", "cyanide",
    "volatile_phenol", "petroleum", "las", "sulfide", "fecal_coliform",
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE road_segments (
            id bigserial PRIMARY KEY,
            code text UNIQUE,
            name text,
            road_class varchar(16) NOT NULL
                CHECK (road_class IN ('expressway', 'primary', 'secondary', 'branch')),
            lanes smallint NOT NULL CHECK (lanes BETWEEN 1 AND 16),
            speed_limit_kmh real NOT NULL CHECK (speed_limit_kmh > 0 AND speed_limit_kmh <= 150),
            free_flow_kmh real NOT NULL CHECK (free_flow_kmh > 0 AND free_flow_kmh <= 150),
            length_m double precision NOT NULL,
            geom geometry(LineString, 4326) NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE road_segments IS
            'road_class after GB/T 33171-2016: expressway 快速路, primary 主干路, '
            'secondary 次干路, branch 支路';
        CREATE INDEX road_segments_geom_idx ON road_segments USING gist (geom);
        CREATE INDEX road_segments_class_idx ON road_segments (road_class);

        CREATE TABLE traffic_observations (
            segment_id bigint NOT NULL REFERENCES road_segments (id) ON DELETE CASCADE,
            observed_at timestamptz NOT NULL,
            volume integer NOT NULL CHECK (volume >= 0),
            speed_kmh real NOT NULL CHECK (speed_kmh >= 0 AND speed_kmh <= 250),
            occupancy real CHECK (occupancy >= 0 AND occupancy <= 100),
            PRIMARY KEY (segment_id, observed_at)
        );
        COMMENT ON COLUMN traffic_observations.volume IS 'vehicles counted in the interval';
        COMMENT ON COLUMN traffic_observations.occupancy IS 'detector occupancy, percent';
        -- area/time-window queries scan by time; BRIN stays tiny on append-mostly data
        CREATE INDEX traffic_observations_time_brin ON traffic_observations
            USING brin (observed_at);

        CREATE TABLE water_stations (
            id bigserial PRIMARY KEY,
            code text UNIQUE,
            name text NOT NULL,
            water_body text NOT NULL,
            body_type varchar(8) NOT NULL CHECK (body_type IN ('river', 'lake')),
            geom geometry(Point, 4326) NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON COLUMN water_stations.body_type IS
            'river, or lake for lakes and reservoirs (GB 3838-2002 TP and TN limits differ)';
        CREATE INDEX water_stations_geom_idx ON water_stations USING gist (geom);
        """
    )
    columns = ",\n".join(f"{p} double precision" for p in WATER_PARAMETERS)
    op.execute(
        f"""
        CREATE TABLE water_observations (
            station_id bigint NOT NULL REFERENCES water_stations (id) ON DELETE CASCADE,
            observed_at timestamptz NOT NULL,
            water_temp double precision,
            {columns},
            grade smallint NOT NULL CHECK (grade BETWEEN 1 AND 6),
            deciding text[] NOT NULL DEFAULT '{{}}',
            exceedance jsonb NOT NULL DEFAULT '{{}}',
            PRIMARY KEY (station_id, observed_at)
        );
        COMMENT ON COLUMN water_observations.grade IS
            'GB 3838-2002 single-factor class: 1..5 = I..V, 6 = 劣V (worse than V)';
        COMMENT ON COLUMN water_observations.exceedance IS
            'multiples over the class III limit of the parameters above it';
        CREATE INDEX water_observations_time_brin ON water_observations
            USING brin (observed_at);
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS water_observations; DROP TABLE IF EXISTS water_stations; "
        "DROP TABLE IF EXISTS traffic_observations; DROP TABLE IF EXISTS road_segments;"
    )
