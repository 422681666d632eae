"""BIM spaces: one row per IfcSpace (room) of a model, and the room each element is in.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE bim_spaces (
            id bigserial PRIMARY KEY,
            dataset_id bigint NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            global_id varchar(22) NOT NULL,
            name text,
            long_name text,
            storey text,
            storey_global_id varchar(22),
            psets jsonb NOT NULL DEFAULT '{}',
            footprint geometry(MultiPolygon, 4326),
            bbox3d box3d,
            min_height double precision,
            max_height double precision,
            floor_area double precision,
            UNIQUE (dataset_id, global_id),
            CHECK (min_height <= max_height),
            CHECK (floor_area >= 0)
        );
        COMMENT ON TABLE bim_spaces IS
            'IfcSpace (rooms) of BIM models; not in bim_elements nor in the tiles';
        COMMENT ON COLUMN bim_spaces.name IS 'IfcSpace Name, the room number in most tools';
        COMMENT ON COLUMN bim_spaces.long_name IS 'IfcSpace LongName, e.g. Kitchen';
        COMMENT ON COLUMN bim_spaces.footprint IS
            'plan view of the space body, lon/lat WGS 84; NULL when its geometry failed';
        COMMENT ON COLUMN bim_spaces.bbox3d IS
            'lon/lat WGS 84 and ellipsoidal height (m) extent of the space body';
        COMMENT ON COLUMN bim_spaces.floor_area IS
            'm², area of the footprint computed in model metres (gross: the whole body seen '
            'from above)';
        -- the unique index leads with dataset_id, so it serves the per-dataset lookups too
        CREATE INDEX bim_spaces_global_id_idx ON bim_spaces (global_id);
        CREATE INDEX bim_spaces_storey_idx ON bim_spaces (dataset_id, lower(storey));
        CREATE INDEX bim_spaces_footprint_idx ON bim_spaces USING gist (footprint);

        ALTER TABLE bim_elements ADD COLUMN space_global_id varchar(22);
        COMMENT ON COLUMN bim_elements.space_global_id IS
            'GlobalId of the bim_spaces row (same dataset) the element is in: the IFC '
            'containment, else its position; NULL for walls and other room boundaries';
        CREATE INDEX bim_elements_space_idx ON bim_elements (space_global_id, dataset_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS bim_elements_space_idx")
    op.execute("ALTER TABLE bim_elements DROP COLUMN IF EXISTS space_global_id")
    op.execute("DROP TABLE IF EXISTS bim_spaces")
