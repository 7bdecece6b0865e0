"""Measurements and reminders: the narrow table of observation values, the reminders issued.

Revision ID: 12_1
Revises: 21_1

`observation_values` holds one row per measured value of an Observation (a blood pressure
has two: systolic and diastolic), in the code's canonical UCUM unit, written in the same
transaction as the resource (profile/behaviour.py). It serves `$lastn` and `$daily-summary`
and makes a device's repeated measurement impossible to store twice: unique on (patient,
device, code, effective time). `reminders_issued` makes `espace-api reminders run`
idempotent: one row per (patient, rule, due period). Both carry `patient_id` first in their
keys (ARCHITECTURE.md principle 1).
"""

from alembic import op

revision = "12_1"
down_revision = "18_1"
branch_labels = None
depends_on = None

UPGRADE = (
    """
CREATE TABLE observation_values (
    patient_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    code TEXT NOT NULL,
    effective TIMESTAMP WITH TIME ZONE NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    unit TEXT NOT NULL,
    device TEXT NOT NULL,
    PRIMARY KEY (patient_id, resource_id, code)
)
""",
    """
CREATE UNIQUE INDEX ux_observation_values_once
    ON observation_values (patient_id, device, code, effective)
""",
    """
CREATE INDEX ix_observation_values_series
    ON observation_values (patient_id, code, effective DESC)
""",
    """
CREATE TABLE reminders_issued (
    patient_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    due_period TEXT NOT NULL,
    communication_id TEXT NOT NULL,
    issued_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (patient_id, rule_id, due_period)
)
""",
)


def upgrade() -> None:
    for statement in UPGRADE:  # asyncpg runs one statement per execute
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE reminders_issued")
    op.execute("DROP TABLE observation_values")
