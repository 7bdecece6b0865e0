"""The patient space lifecycle: one row per space, keyed by patient.

Revision ID: 9_1
Revises: 8_1

Patients stored before the lifecycle existed get an `active` space (they were receiving
documents already); their Patient resource shows no space until its next write.
"""

from alembic import op

revision = "9_1"
down_revision = "8_1"
branch_labels = None
depends_on = None

UPGRADE = (
    """
CREATE TABLE patient_spaces (
    patient_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('notified', 'active', 'opposed', 'closed')),
    notified_at TIMESTAMP WITH TIME ZONE,
    opposition_deadline TIMESTAMP WITH TIME ZONE,
    activated_at TIMESTAMP WITH TIME ZONE,
    opposed_at TIMESTAMP WITH TIME ZONE,
    closed_at TIMESTAMP WITH TIME ZONE,
    closure_reason TEXT,
    purge_after TIMESTAMP WITH TIME ZONE,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL
)
""",
    "CREATE INDEX ix_patient_spaces_due ON patient_spaces (state, opposition_deadline)",
    "CREATE INDEX ix_patient_spaces_purge ON patient_spaces (purge_after)",
    """
INSERT INTO patient_spaces (patient_id, state, activated_at, updated_at)
SELECT id, 'active', last_updated, now() FROM resources
WHERE resource_type = 'Patient' AND NOT deleted
""",
)


def upgrade() -> None:
    for statement in UPGRADE:  # asyncpg runs one statement per execute
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE patient_spaces")
