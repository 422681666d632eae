"""Fleet plans reserved on the route network, and notices for the live stream.

``fleet_plans.reservation``: what the plan's flights hold on the network (per flight: the
network reservation and drone route ids, the reserved departure and arrival), written in the
transaction that stores the plan, so a plan either has every flight reserved or is not
stored. NULL for plans made before (and for plans made without a network: their
``status`` says not_reserved).

``fleet_notices``: what dashboards are told besides drone states (an emergency sent a drone,
flights pre-empted). Its ``seq`` comes from ``drone_state_seq``, the sequence the live
stream's event ids already count, so one ``Last-Event-ID`` resumes both states and notices,
behind any number of API processes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE fleet_plans ADD COLUMN reservation jsonb;
        CREATE TABLE fleet_notices (
            seq bigint PRIMARY KEY DEFAULT nextval('drone_state_seq'),
            kind varchar(24) NOT NULL,
            plan_id bigint REFERENCES fleet_plans(id) ON DELETE SET NULL,
            body jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE fleet_notices IS
            'Notices for the live stream (emergency dispatched, flights pre-empted); seq '
            'shares drone_state_seq with the drone states';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS fleet_notices; "
               "ALTER TABLE fleet_plans DROP COLUMN IF EXISTS reservation")
