"""Low altitude: vertiports, the route network (versioned nodes and corridor edges) and 4D
reservations of (edge, time slot) capacity.

``network_versions`` is the history: every generation and every planner's edit is a row.
An edge belongs to the versions ``[version_from, version_to)`` and to the times
``[valid_from, valid_to)``; the current network is the edges whose ``version_to`` is NULL.
Nodes are never changed once written (an edge names the two it joins).

``network_slots`` holds what each held reservation occupies of one resource (``kind`` e: a
directed edge, entered then; v: a vertiport, a take-off or landing; n: a junction at one
flight layer, passed then): the headway of the resource around that time. The exclusion
constraint keeps slots of one resource apart, so a resource never carries more than its
capacity, and of two reservations racing for the same time exactly one commits (the second
waits for the first and then fails).

``drone_routes.on_network``: a flight approved as a network reservation. Its volume stays in
drone_routes, so off-network flights are checked against it geometrically as before; the
partial index over off-network flights lets an on-network approval look only at those.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE vertiports (
            id bigserial PRIMARY KEY,
            code text UNIQUE,
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            geom geometry(Point, 4326) NOT NULL,
            pad_m double precision NOT NULL,
            capacity_per_hour integer NOT NULL CHECK (capacity_per_hour BETWEEN 1 AND 3600),
            validation jsonb NOT NULL DEFAULT '{}',
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON COLUMN vertiports.pad_m IS
            'ellipsoidal height (m) of the landing pad: the ground, or a roof';
        COMMENT ON COLUMN vertiports.capacity_per_hour IS
            'take-offs and landings per hour the vertiport handles';
        CREATE INDEX vertiports_geom_idx ON vertiports USING gist (geom);

        CREATE TABLE network_versions (
            id bigserial PRIMARY KEY,
            parent_id bigint REFERENCES network_versions (id),
            change varchar(12) NOT NULL CHECK (change IN ('generate', 'close', 'add')),
            note text,
            params jsonb NOT NULL DEFAULT '{}',
            stats jsonb NOT NULL DEFAULT '{}',
            flags jsonb NOT NULL DEFAULT '[]',
            city_model_version text,
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON COLUMN network_versions.stats IS
            'edges kept and dropped (each dropped edge with the reason), nodes, timings';
        COMMENT ON COLUMN network_versions.flags IS
            'what a planner accepted knowingly: vertiports an edit disconnected';

        CREATE TABLE network_nodes (
            id bigserial PRIMARY KEY,
            version_id bigint NOT NULL REFERENCES network_versions (id),
            kind varchar(12) NOT NULL CHECK (kind IN ('junction', 'vertiport')),
            vertiport_id bigint REFERENCES vertiports (id),
            geom geometry(Point, 4326) NOT NULL,
            ground_m double precision NOT NULL,
            CHECK ((kind = 'vertiport') = (vertiport_id IS NOT NULL))
        );
        CREATE INDEX network_nodes_geom_idx ON network_nodes USING gist (geom);

        CREATE TABLE network_edges (
            id bigserial PRIMARY KEY,
            from_node bigint NOT NULL REFERENCES network_nodes (id),
            to_node bigint NOT NULL REFERENCES network_nodes (id),
            geom geometry(LineStringZ, 4326) NOT NULL,
            heading_deg real NOT NULL,
            layer smallint NOT NULL CHECK (layer BETWEEN 0 AND 15),
            layer_agl_m double precision NOT NULL,
            half_width_m double precision NOT NULL CHECK (half_width_m > 0),
            vertical_half_m double precision NOT NULL CHECK (vertical_half_m > 0),
            length_m double precision NOT NULL CHECK (length_m > 0),
            speed_ms real NOT NULL CHECK (speed_ms > 0),
            capacity_per_hour integer NOT NULL CHECK (capacity_per_hour > 0),
            source varchar(12) NOT NULL CHECK (source IN ('guide', 'connector', 'planner')),
            guide text,
            verdict varchar(16) NOT NULL
                CHECK (verdict IN ('accepted', 'needs_approval', 'refused')),
            validation jsonb NOT NULL DEFAULT '{}',
            version_from bigint NOT NULL REFERENCES network_versions (id),
            version_to bigint REFERENCES network_versions (id),
            valid_from timestamptz NOT NULL DEFAULT now(),
            valid_to timestamptz,
            closed_reason text,
            CHECK (from_node <> to_node),
            CHECK (version_to IS NULL OR version_to > version_from)
        );
        COMMENT ON COLUMN network_edges.geom IS
            'centre line of the corridor at its layer, lon/lat, Z = WGS 84 ellipsoidal (m)';
        COMMENT ON COLUMN network_edges.layer IS
            'heading sector (0 north, 1 east, 2 south, 3 west bound): the flight layer';
        CREATE INDEX network_edges_current_idx ON network_edges (from_node)
            WHERE version_to IS NULL;
        CREATE INDEX network_edges_versions_idx ON network_edges (version_from, version_to);
        CREATE INDEX network_edges_geom_idx ON network_edges USING gist (geom);

        CREATE TABLE network_reservations (
            id bigserial PRIMARY KEY,
            route_id bigint REFERENCES drone_routes (id) ON DELETE SET NULL,
            drone_id bigint NOT NULL REFERENCES drones (id),
            version_id bigint NOT NULL REFERENCES network_versions (id),
            status varchar(12) NOT NULL DEFAULT 'held'
                CHECK (status IN ('held', 'cancelled')),
            time_window tstzrange NOT NULL,
            path jsonb NOT NULL DEFAULT '{}',
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            cancelled_at timestamptz
        );
        CREATE INDEX network_reservations_route_idx ON network_reservations (route_id);

        CREATE TABLE network_slots (
            reservation_id bigint NOT NULL
                REFERENCES network_reservations (id) ON DELETE CASCADE,
            kind varchar(1) NOT NULL CHECK (kind IN ('e', 'v', 'n')),
            ref_id bigint NOT NULL,
            during tstzrange NOT NULL CHECK (NOT isempty(during)),
            -- one flight per resource per headway: a slot is the headway around the time
            -- the flight is there, and no two slots of one resource overlap
            EXCLUDE USING gist (kind WITH =, ref_id WITH =, during WITH &&)
        );
        COMMENT ON COLUMN network_slots.ref_id IS
            'e: network_edges.id; v: vertiports.id; n: network_nodes.id * 16 + level '
            '(the flight layer at the junction)';
        CREATE INDEX network_slots_reservation_idx ON network_slots (reservation_id);

        ALTER TABLE drone_routes ADD COLUMN on_network boolean NOT NULL DEFAULT false;
        CREATE INDEX drone_routes_offnet_airspace_idx ON drone_routes
            USING gist (corridor, time_window, alt_band)
            WHERE status IN ('approved', 'active') AND NOT on_network;
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP INDEX IF EXISTS drone_routes_offnet_airspace_idx;"
        " ALTER TABLE drone_routes DROP COLUMN IF EXISTS on_network;"
        " DROP TABLE IF EXISTS network_slots; DROP TABLE IF EXISTS network_reservations;"
        " DROP TABLE IF EXISTS network_edges; DROP TABLE IF EXISTS network_nodes;"
        " DROP TABLE IF EXISTS network_versions; DROP TABLE IF EXISTS vertiports;"
    )
