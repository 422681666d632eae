"""Fleet plans: task assignment and schedules made by the dispatcher, and their re-plans.

A plan row keeps the request it was made from (``problem``: vertiports, drones, tasks as
posted), the answer (``plan``: trips per drone, tasks left out with their reason) and the
instant its times count from (``epoch``). A re-plan or an emergency makes a new row naming
the one it changed (``parent_id``); rows are never rewritten.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE fleet_plans (
            id bigserial PRIMARY KEY,
            parent_id bigint REFERENCES fleet_plans(id) ON DELETE SET NULL,
            kind varchar(12) NOT NULL CHECK (kind IN ('plan', 'replan', 'emergency')),
            epoch timestamptz NOT NULL,
            problem jsonb NOT NULL,
            plan jsonb NOT NULL,
            planned integer NOT NULL,
            unassigned integer NOT NULL,
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE fleet_plans IS
            'Drone task assignments and schedules (trips per drone with times in seconds '
            'from epoch, tasks left out with their reason); a re-plan or an emergency is a '
            'new row with parent_id';
        CREATE INDEX fleet_plans_parent_idx ON fleet_plans (parent_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS fleet_plans")
