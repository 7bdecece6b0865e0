"""One Patient per INS: the `patient_ins` table, unique on (system, value).

Revision ID: 21_1
Revises: 9_1

Backfilled from the Patients' identifier index rows of the INS systems. Where a database
already holds one INS on several live Patients (possible before this revision), the Patient
written first keeps it; the others can no longer be found by lookup until an operator
resolves the duplicate (docs/auth.md shows the query that lists them).
"""

from alembic import op

revision = "21_1"
down_revision = "9_1"
branch_labels = None
depends_on = None

INS_SYSTEMS = (
    "urn:oid:1.2.250.1.213.1.4.8",
    "urn:oid:1.2.250.1.213.1.4.9",
    "urn:oid:1.2.250.1.213.1.4.10",
    "urn:oid:1.2.250.1.213.1.4.11",
)
_IN = ", ".join(f"'{s}'" for s in INS_SYSTEMS)

UPGRADE = (
    """
CREATE TABLE patient_ins (
    system TEXT NOT NULL,
    value TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (system, value)
)
""",
    "CREATE INDEX ix_patient_ins_patient ON patient_ins (patient_id)",
    f"""
INSERT INTO patient_ins (system, value, patient_id)
SELECT DISTINCT ON (t.system, t.code) t.system, t.code, t.resource_id
FROM search_token t
JOIN resources r ON r.resource_type = 'Patient' AND r.id = t.resource_id AND NOT r.deleted
WHERE t.resource_type = 'Patient' AND t.param = 'identifier' AND t.system IN ({_IN})
ORDER BY t.system, t.code, r.last_updated
""",
)


def upgrade() -> None:
    for statement in UPGRADE:  # asyncpg runs one statement per execute
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE patient_ins")
