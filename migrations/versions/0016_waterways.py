"""Waterways: rivers and streams as lines (the water layer's stations lie on them), upserted
by code and served as the OGC API - Features collection ``waterways``.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE waterways (
            id bigserial PRIMARY KEY,
            code text UNIQUE,
            name text NOT NULL,
            kind varchar(8) NOT NULL CHECK (kind IN ('river', 'stream', 'canal')),
            parent text,
            geom geometry(LineString, 4326) NOT NULL,
            length_m double precision NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON COLUMN waterways.parent IS
            'the name of the river this one flows into (a tributary), if any';
        CREATE INDEX waterways_geom_idx ON waterways USING gist (geom);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS waterways;")
