"""LiDAR surveys tiled in chunks by several workers: the split and its chunks.

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE lidar_splits (
            job_id bigint PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
            tileset_id bigint NOT NULL REFERENCES tilesets(id) ON DELETE CASCADE,
            spill text NOT NULL,
            points bigint NOT NULL CHECK (points >= 0),
            chunks integer NOT NULL CHECK (chunks >= 0),
            chunks_done integer NOT NULL DEFAULT 0,
            status text NOT NULL DEFAULT 'tiling'
                CHECK (status IN ('tiling', 'finishing', 'published', 'failed')),
            finisher bigint,
            error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK (chunks_done BETWEEN 0 AND chunks)
        );
        COMMENT ON TABLE lidar_splits IS
            'A LiDAR ingest job (job_id) tiled in chunks: its tileset version, the shared '
            'folder the chunks read (spill), chunks_done counted under this row''s lock; '
            'finisher: the chunk job that counted the last one and publishes';
        CREATE TABLE lidar_chunks (
            split_job_id bigint NOT NULL REFERENCES lidar_splits(job_id) ON DELETE CASCADE,
            chunk integer NOT NULL,
            job_id bigint REFERENCES jobs(id) ON DELETE SET NULL,
            points bigint NOT NULL,
            status text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'done')),
            tiles integer,
            bytes bigint,
            elapsed_s double precision,
            worker text,
            done_at timestamptz,
            PRIMARY KEY (split_job_id, chunk)
        );
        CREATE INDEX lidar_chunks_job_idx ON lidar_chunks (job_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS lidar_chunks; DROP TABLE IF EXISTS lidar_splits")
