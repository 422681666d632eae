"""Low altitude: the half-width of a route filed with its own corridor polygon is the
corridor's reach from the centre line; a drone's live state says which ground its height
above ground is measured from.

Routes filed before this revision took it from a distance at the corridor's vertices only,
so a V-shaped line in a triangle was checked, searched for conflicts and monitored with a
tube far narrower than the corridor filed. The reach is measured again here (boundary
densified to a thousandth of each edge, in the metric CRS of the low-altitude settings) and
the half-width raised where the corridor reaches farther. Nothing is lowered.

``drone_state.ground_source`` is one of city_model, lidar_survey, egm96_sea_level (see
``service.lowalt.ground``); states stored before have none until the drone reports again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _metric_srid() -> int:
    from service.lowalt.settings import get_lowalt_settings

    crs = get_lowalt_settings().metric_crs
    auth, _, code = crs.partition(":")
    return int(code) if auth.upper() == "EPSG" and code.isdigit() else 4547


def upgrade() -> None:
    # a polygon's vertices against the line (a line vertex inside the polygon is at 0): the
    # distance that matters, densified so the middle of an edge counts; + half a step
    # (at most an edge's thousandth: the perimeter's is more)
    op.get_bind().execute(sa.text(
        "UPDATE drone_routes r SET half_width_m = s.reach + s.step / 2 FROM ("
        " SELECT id, ST_HausdorffDistance(ST_Transform(corridor, :srid),"
        "  ST_Transform(ST_Force2D(geom), :srid), 0.001) AS reach,"
        "  ST_Perimeter(ST_Transform(corridor, :srid)) / 1000.0 AS step"
        " FROM drone_routes) s WHERE r.id = s.id AND s.reach > r.half_width_m * 1.01 + 0.5"),
        {"srid": _metric_srid()})
    op.execute(
        """
        ALTER TABLE drone_state ADD COLUMN ground_source text;
        COMMENT ON COLUMN drone_state.ground_source IS
            'what height_agl_m is measured from: city_model, lidar_survey or '
            'egm96_sea_level (no ground known there: height above sea level)';
        """
    )


def downgrade() -> None:
    # the wider half-widths are the true ones: they stay
    op.execute("ALTER TABLE drone_state DROP COLUMN IF EXISTS ground_source")
