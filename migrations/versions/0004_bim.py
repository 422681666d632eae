"""BIM elements: one row per IFC product with geometry, placed on the globe.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE bim_elements (
            id bigserial PRIMARY KEY,
            dataset_id bigint NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            global_id varchar(22) NOT NULL,
            ifc_class varchar(64) NOT NULL,
            class_path text[] NOT NULL DEFAULT '{}',
            name text,
            type_name text,
            assembly_global_id varchar(22),
            assembly_class varchar(64),
            storey text,
            storey_global_id varchar(22),
            storey_elevation double precision,
            psets jsonb NOT NULL DEFAULT '{}',
            footprint geometry(MultiPolygon, 4326),
            bbox3d box3d NOT NULL,
            min_height double precision NOT NULL,
            max_height double precision NOT NULL,
            building_object_id text,
            triangles integer NOT NULL DEFAULT 0,
            UNIQUE (dataset_id, global_id),
            CHECK (min_height <= max_height)
        );
        COMMENT ON COLUMN bim_elements.class_path IS
            'lower-case IFC class and its supertypes, so a query for ifcwall finds '
            'IfcWallStandardCase too';
        COMMENT ON COLUMN bim_elements.assembly_global_id IS
            'the element this one is a part of (a window of members and plates, a stair of '
            'flights), when that element has no body of its own';
        COMMENT ON COLUMN bim_elements.psets IS
            'property and quantity sets: {"Pset_WallCommon": {"IsExternal": true, ...}, ...}';
        COMMENT ON COLUMN bim_elements.footprint IS
            'plan view of the element geometry, lon/lat WGS 84';
        COMMENT ON COLUMN bim_elements.bbox3d IS
            'lon/lat WGS 84 and ellipsoidal height (m) extent of the element geometry';
        COMMENT ON COLUMN bim_elements.building_object_id IS
            'city_objects.object_id of the current CIM building whose footprint it overlaps most';
        CREATE INDEX bim_elements_footprint_idx ON bim_elements USING gist (footprint);
        CREATE INDEX bim_elements_class_idx ON bim_elements USING gin (class_path);
        CREATE INDEX bim_elements_storey_idx ON bim_elements (dataset_id, lower(storey));
        CREATE INDEX bim_elements_psets_idx ON bim_elements USING gin (psets jsonb_path_ops);
        CREATE INDEX bim_elements_global_id_idx ON bim_elements (global_id);
        CREATE INDEX bim_elements_building_idx ON bim_elements (building_object_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS bim_elements")
