"""Low altitude: drones, airspace zones, routes, telemetry and the latest state per drone.

Vertical reference: every stored height is metres above the WGS 84 ellipsoid (as ASTM F3548
volumes are), except an airspace zone whose ``height_reference`` is 'agl': its floor and
ceiling are metres above ground, compared with a route's height above ground at each point.

A route is a centre line (LineStringZ) with a horizontal corridor (half-width, or a polygon
the filer gives) and a vertical half-height around the line; ``alt_band`` is the envelope of
that volume and ``time_window`` its reservation. The partial GiST index over (corridor,
time_window, alt_band) of approved and active routes is what the conflict check reads: one
index scan narrows 50,000 routes to the few near the new one in space, altitude and time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE EXTENSION IF NOT EXISTS btree_gist;

        CREATE TABLE drones (
            id bigserial PRIMARY KEY,
            serial text NOT NULL UNIQUE CHECK (length(serial) BETWEEN 1 AND 64),
            operator text NOT NULL CHECK (length(operator) BETWEEN 1 AND 200),
            class varchar(8) NOT NULL
                CHECK (class IN ('micro', 'light', 'small', 'medium', 'large')),
            model text,
            max_speed_ms real CHECK (max_speed_ms > 0 AND max_speed_ms <= 150),
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON COLUMN drones.class IS
            'UAV class of the 2024 Interim Regulations on UAV Flight Management: '
            'micro 微型, light 轻型, small 小型, medium 中型, large 大型';

        CREATE TABLE airspace_zones (
            id bigserial PRIMARY KEY,
            code text UNIQUE,
            name text NOT NULL,
            zone_type varchar(24) NOT NULL
                CHECK (zone_type IN ('prohibited', 'needs_authorisation', 'conditional')),
            geom geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom)),
            floor_m double precision NOT NULL,
            ceiling_m double precision NOT NULL,
            height_reference varchar(8) NOT NULL DEFAULT 'agl'
                CHECK (height_reference IN ('agl', 'wgs84')),
            valid tstzrange NOT NULL DEFAULT tstzrange(NULL, NULL) CHECK (NOT isempty(valid)),
            reason text,
            authority text,
            conditions text,
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK (floor_m < ceiling_m)
        );
        COMMENT ON COLUMN airspace_zones.floor_m IS
            'metres above ground (height_reference agl) or above the WGS 84 ellipsoid (wgs84)';
        CREATE INDEX airspace_zones_geom_idx ON airspace_zones USING gist (geom);
        CREATE INDEX airspace_zones_valid_idx ON airspace_zones USING gist (valid);

        CREATE TABLE drone_routes (
            id bigserial PRIMARY KEY,
            name text,
            drone_id bigint NOT NULL REFERENCES drones (id),
            status varchar(12) NOT NULL DEFAULT 'planned'
                CHECK (status IN ('planned', 'approved', 'active', 'suspended', 'retired')),
            priority smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
            geom geometry(LineStringZ, 4326) NOT NULL,
            corridor geometry(Polygon, 4326) NOT NULL CHECK (ST_IsValid(corridor)),
            half_width_m double precision NOT NULL
                CHECK (half_width_m > 0 AND half_width_m <= 500),
            vertical_half_m double precision NOT NULL
                CHECK (vertical_half_m > 0 AND vertical_half_m <= 200),
            alt_band numrange NOT NULL CHECK (NOT isempty(alt_band)),
            time_window tstzrange NOT NULL
                CHECK (NOT isempty(time_window) AND NOT lower_inf(time_window)
                       AND NOT upper_inf(time_window)),
            length_m double precision NOT NULL,
            verdict varchar(16) NOT NULL
                CHECK (verdict IN ('accepted', 'needs_approval', 'refused')),
            validation jsonb NOT NULL DEFAULT '{}',
            city_model_version text,
            validated_at timestamptz,
            authorisation text,
            approved_by text,
            approved_at timestamptz,
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            -- one drone cannot hold two live reservations at the same time
            EXCLUDE USING gist (drone_id WITH =, time_window WITH &&)
                WHERE (status IN ('approved', 'active'))
        );
        COMMENT ON COLUMN drone_routes.geom IS
            'centre line, lon/lat with Z = WGS 84 ellipsoidal height (m)';
        COMMENT ON COLUMN drone_routes.alt_band IS
            'lowest and highest ellipsoidal height (m) of the reserved volume';
        CREATE INDEX drone_routes_airspace_idx ON drone_routes
            USING gist (corridor, time_window, alt_band)
            WHERE status IN ('approved', 'active');
        CREATE INDEX drone_routes_corridor_idx ON drone_routes USING gist (corridor);
        CREATE INDEX drone_routes_drone_idx ON drone_routes (drone_id, status);

        CREATE TABLE drone_telemetry (
            drone_id bigint NOT NULL REFERENCES drones (id) ON DELETE CASCADE,
            t timestamptz NOT NULL,
            geom geometry(PointZ, 4326) NOT NULL,
            speed_ms real,
            track_deg real,
            battery_pct real,
            route_id bigint REFERENCES drone_routes (id) ON DELETE SET NULL,
            flags text[] NOT NULL DEFAULT '{}',
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (drone_id, t)
        );
        COMMENT ON COLUMN drone_telemetry.geom IS 'lon/lat, Z = WGS 84 ellipsoidal height (m)';
        COMMENT ON COLUMN drone_telemetry.flags IS
            'conformance at that time: outside_corridor, outside_altitude_band, '
            'outside_time_window, no_approved_route';
        CREATE INDEX drone_telemetry_t_brin ON drone_telemetry USING brin (t);

        -- the latest report of each drone, kept on ingest so dashboards read one row per
        -- drone; seq orders changes for the live stream
        CREATE SEQUENCE drone_state_seq;
        CREATE TABLE drone_state (
            drone_id bigint PRIMARY KEY REFERENCES drones (id) ON DELETE CASCADE,
            t timestamptz NOT NULL,
            geom geometry(PointZ, 4326) NOT NULL,
            speed_ms real,
            track_deg real,
            battery_pct real,
            route_id bigint REFERENCES drone_routes (id) ON DELETE SET NULL,
            flags text[] NOT NULL DEFAULT '{}',
            height_agl_m double precision,
            received_at timestamptz NOT NULL DEFAULT now(),
            seq bigint NOT NULL DEFAULT nextval('drone_state_seq')
        );
        CREATE INDEX drone_state_geom_idx ON drone_state USING gist (geom);
        CREATE INDEX drone_state_seq_idx ON drone_state (seq);
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS drone_state; DROP SEQUENCE IF EXISTS drone_state_seq;"
        " DROP TABLE IF EXISTS drone_telemetry; DROP TABLE IF EXISTS drone_routes;"
        " DROP TABLE IF EXISTS airspace_zones; DROP TABLE IF EXISTS drones;"
    )
