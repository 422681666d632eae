"""BIM space boundaries: the rooms each element bounds (IfcRelSpaceBoundary).

Rows ingested before this revision get an empty array: the file is not kept in the
database, so only a re-ingest (POST /bim/datasets/{id}/ingest) fills them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE bim_elements
            ADD COLUMN bounded_space_global_ids text[] NOT NULL DEFAULT '{}';
        COMMENT ON COLUMN bim_elements.bounded_space_global_ids IS
            'GlobalIds of the bim_spaces rows (same dataset) the element bounds after '
            'IfcRelSpaceBoundary (its own or its assembly''s), sorted; empty when the file '
            'names it as the boundary of no room';
        -- GIN answers "the boundaries of room X" (@> ARRAY[X]) and the per-room counts
        -- without reading every element of the model
        CREATE INDEX bim_elements_bounded_spaces_idx ON bim_elements
            USING gin (bounded_space_global_ids);
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS bim_elements_bounded_spaces_idx")
    op.execute("ALTER TABLE bim_elements DROP COLUMN IF EXISTS bounded_space_global_ids")
