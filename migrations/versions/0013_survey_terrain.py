"""The DTM of every modelled survey, for terrain tiles and heights above ground.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE survey_terrain (
            dataset_id bigint PRIMARY KEY REFERENCES datasets(id) ON DELETE CASCADE,
            acquired_at timestamptz,
            crs text NOT NULL,
            x0 double precision NOT NULL,
            y0 double precision NOT NULL,
            cell double precision NOT NULL CHECK (cell > 0),
            rows integer NOT NULL CHECK (rows > 0),
            cols integer NOT NULL CHECK (cols > 0),
            nodata double precision NOT NULL,
            encoding text NOT NULL,
            heights bytea NOT NULL,
            min_h double precision,
            max_h double precision,
            footprint geometry(MultiPolygon, 4326) NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE survey_terrain ALTER COLUMN heights SET STORAGE EXTERNAL;
        COMMENT ON TABLE survey_terrain IS
            'The DTM of a modelled survey (dataset_id): a grid in its metric CRS (crs), cell '
            '(i, j) centred at (x0 + (j + 0.5) cell, y0 + (i + 0.5) cell), row 0 south, of '
            'WGS 84 ellipsoidal heights (m) packed as encoding says, nodata where the survey '
            'did not reach; footprint: where it has data';
        CREATE INDEX survey_terrain_footprint_idx ON survey_terrain USING gist (footprint);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS survey_terrain")
