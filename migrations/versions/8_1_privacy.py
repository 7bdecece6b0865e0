"""Privacy: access rules derived from Consents; audit events append-only, with agent details.

Revision ID: 8_1
Revises: 0003

`access_rules` carries `patient_id` in its primary key (shard key, ARCHITECTURE.md 1).
`audit_events` refuses UPDATE, DELETE and TRUNCATE at the database level; the only exception
is a DELETE in a transaction that sets `espace.audit_purge = 'on'` (the retention purge).
"""

from alembic import op

revision = "8_1"
down_revision = "0003"
branch_labels = None
depends_on = None


UPGRADE = (
    """
CREATE TABLE access_rules (
    patient_id TEXT NOT NULL,
    consent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    period_start TIMESTAMP WITH TIME ZONE,
    period_end TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (patient_id, consent_id, kind, actor)
)
""",
    """
CREATE INDEX ix_access_rules_lookup ON access_rules (patient_id, kind, actor)
""",
    """
ALTER TABLE audit_events ADD COLUMN practitioner TEXT
""",
    """
ALTER TABLE audit_events ADD COLUMN organization TEXT
""",
    """
ALTER TABLE audit_events ADD COLUMN detail TEXT
""",
    """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('espace.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (%)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
""",
    """
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
""",
    """
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()
""",
)

DOWNGRADE = (
    """
DROP TRIGGER audit_events_no_truncate ON audit_events
""",
    """
DROP TRIGGER audit_events_append_only ON audit_events
""",
    """
DROP FUNCTION audit_events_append_only()
""",
    """
ALTER TABLE audit_events DROP COLUMN detail
""",
    """
ALTER TABLE audit_events DROP COLUMN organization
""",
    """
ALTER TABLE audit_events DROP COLUMN practitioner
""",
    """
DROP TABLE access_rules
""",
)


def upgrade() -> None:
    for statement in UPGRADE:  # asyncpg runs one statement per execute
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
