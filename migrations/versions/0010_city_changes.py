"""The change list of modelled surveys: per building new / changed / unchanged / demolished.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE city_changes (
            id bigserial PRIMARY KEY,
            dataset_id bigint NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            object_id text NOT NULL,
            change varchar(16) NOT NULL
                CHECK (change IN ('new', 'changed', 'unchanged', 'demolished', 'skipped')),
            lod varchar(8),
            rmse_m double precision,
            points bigint,
            density double precision,
            reason text,
            footprint geometry(MultiPolygon, 4326),
            detected_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE city_changes IS
            'What the modelling of a survey (dataset_id) found per building of the city model '
            '(object_id of city_objects): its change, the LoD reached, RMSE of the roof points '
            'to the model (m), points and density (points/m2) and why';
        CREATE INDEX city_changes_dataset_idx ON city_changes (dataset_id, change);
        CREATE INDEX city_changes_object_idx ON city_changes (object_id);
        CREATE INDEX city_changes_footprint_idx ON city_changes USING gist (footprint);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS city_changes")
