"""Foundation: PostGIS, the job queue, datasets, jobs, tilesets, uploads, api keys, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    # procrastinate's schema (queue tables, functions, triggers) as shipped by the pinned
    # version; it holds '%' and ':' so it goes to the driver untouched.
    bind = op.get_bind()
    bind.connection.driver_connection.execute(SchemaManager.get_schema())
    op.execute(
        """
        CREATE TABLE datasets (
            id bigserial PRIMARY KEY,
            kind varchar(32) NOT NULL,
            name text NOT NULL,
            status varchar(16) NOT NULL DEFAULT 'uploaded'
                CHECK (status IN ('uploaded', 'ingesting', 'ready', 'failed')),
            crs text,
            height_note text,
            stats jsonb NOT NULL DEFAULT '{}',
            footprint geometry(MultiPolygon, 4326),
            bounds3d jsonb,
            acquired_at timestamptz,
            source_path text,
            sha256 varchar(64),
            size_bytes bigint,
            options jsonb NOT NULL DEFAULT '{}',
            uploaded_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX datasets_footprint_idx ON datasets USING gist (footprint);
        CREATE INDEX datasets_kind_idx ON datasets (kind, created_at);

        CREATE TABLE jobs (
            id bigserial PRIMARY KEY,
            kind varchar(32) NOT NULL,
            dataset_id bigint REFERENCES datasets (id) ON DELETE CASCADE,
            status varchar(16) NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            stage text NOT NULL DEFAULT 'queued',
            progress double precision NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
            items_done bigint NOT NULL DEFAULT 0,
            items_total bigint,
            attempts integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL DEFAULT 3,
            error text,
            report jsonb NOT NULL DEFAULT '{}',
            params jsonb NOT NULL DEFAULT '{}',
            queue_job_id bigint,
            worker text,
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        );
        CREATE INDEX jobs_status_idx ON jobs (status, created_at);
        CREATE INDEX jobs_dataset_idx ON jobs (dataset_id);

        CREATE TABLE tilesets (
            id bigserial PRIMARY KEY,
            name varchar(128) NOT NULL,
            version integer NOT NULL,
            kind varchar(32) NOT NULL,
            dataset_id bigint REFERENCES datasets (id) ON DELETE SET NULL,
            job_id bigint REFERENCES jobs (id) ON DELETE SET NULL,
            status varchar(16) NOT NULL DEFAULT 'building'
                CHECK (status IN ('building', 'preview', 'published', 'failed', 'retired')),
            is_current boolean NOT NULL DEFAULT false,
            path text NOT NULL,
            stats jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz,
            UNIQUE (name, version)
        );
        -- at most one current version per tileset name: the publish switch is one UPDATE pair
        CREATE UNIQUE INDEX tilesets_current_idx ON tilesets (name) WHERE is_current;

        CREATE TABLE api_keys (
            id bigserial PRIMARY KEY,
            name varchar(128) NOT NULL UNIQUE,
            role varchar(16) NOT NULL CHECK (role IN ('viewer', 'operator', 'planner', 'admin')),
            key_hash varchar(64) NOT NULL UNIQUE,
            prefix varchar(16) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at timestamptz
        );

        CREATE TABLE audit_log (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            key_name text,
            role varchar(16),
            method varchar(8) NOT NULL,
            path text NOT NULL,
            status integer NOT NULL,
            client text,
            detail jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_log_at_idx ON audit_log (at);

        CREATE TABLE uploads (
            id varchar(32) PRIMARY KEY,
            filename text NOT NULL,
            kind varchar(32) NOT NULL,
            length bigint NOT NULL CHECK (length > 0),
            sha256 varchar(64),
            options jsonb NOT NULL DEFAULT '{}',
            status varchar(16) NOT NULL DEFAULT 'receiving'
                CHECK (status IN ('receiving', 'complete', 'failed', 'cancelled')),
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            completed_at timestamptz,
            dataset_id bigint REFERENCES datasets (id) ON DELETE SET NULL,
            job_id bigint REFERENCES jobs (id) ON DELETE SET NULL
        );
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS uploads, audit_log, api_keys, tilesets, jobs, datasets CASCADE"
    )
    op.execute(
        """
        DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
            procrastinate_jobs, procrastinate_workers CASCADE;
        DO $$ DECLARE r record; BEGIN
            FOR r IN SELECT oid::regprocedure AS f FROM pg_proc
                     WHERE proname LIKE 'procrastinate%' LOOP
                EXECUTE 'DROP FUNCTION IF EXISTS ' || r.f || ' CASCADE';
            END LOOP;
        END $$;
        DROP TYPE IF EXISTS procrastinate_job_status, procrastinate_job_event_type,
            procrastinate_job_to_defer_v1 CASCADE;
        """
    )
