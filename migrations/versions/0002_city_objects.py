"""CIM city objects, with history (valid_from / valid_to) for the living map.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE city_objects (
            id bigserial PRIMARY KEY,
            object_id text NOT NULL,
            dataset_id bigint NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            type varchar(64) NOT NULL,
            parent_object_id text,
            lod varchar(8),
            name text,
            geom geometry(GeometryZ, 4326),
            footprint geometry(MultiPolygon, 4326),
            height double precision,
            min_z double precision,
            max_z double precision,
            attributes jsonb NOT NULL DEFAULT '{}',
            semantics jsonb NOT NULL DEFAULT '{}',
            other_lods jsonb NOT NULL DEFAULT '{}',
            valid_from timestamptz NOT NULL DEFAULT now(),
            valid_to timestamptz,
            CHECK (valid_to IS NULL OR valid_to >= valid_from)
        );
        COMMENT ON COLUMN city_objects.geom IS
            'MultiPolygonZ (one polygon per surface, the order of semantics.surfaces), '
            'lon/lat with Z = WGS 84 ellipsoidal height (m)';
        COMMENT ON COLUMN city_objects.height IS 'metres, measuredHeight or max z - min z';
        COMMENT ON COLUMN city_objects.lod IS 'LoD of geom: the highest one in the source';
        COMMENT ON COLUMN city_objects.semantics IS
            '{"surfaces": [class of each polygon of geom, in order, or null]}';
        COMMENT ON COLUMN city_objects.other_lods IS
            'the other LoDs of the source: {lod: {"geometry": GeoJSON MultiPolygon Z, '
            '"surfaces": [class of each polygon]}}';
        CREATE INDEX city_objects_footprint_idx ON city_objects USING gist (footprint);
        -- at most one current version of an object: a newer survey supersedes, never doubles
        CREATE UNIQUE INDEX city_objects_current_idx ON city_objects (object_id)
            WHERE valid_to IS NULL;
        CREATE INDEX city_objects_history_idx ON city_objects (object_id, valid_from);
        CREATE INDEX city_objects_type_idx ON city_objects (type) WHERE valid_to IS NULL;
        CREATE INDEX city_objects_dataset_idx ON city_objects (dataset_id);
        CREATE INDEX city_objects_attributes_idx ON city_objects USING gin (attributes);
        CREATE INDEX city_objects_valid_idx ON city_objects (valid_from, valid_to);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS city_objects")
