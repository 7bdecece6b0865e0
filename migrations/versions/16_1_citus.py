"""Citus: tables of patient data distributed on patient_id, the others reference tables.

Revision ID: 16_1
Revises: 12_1

On plain PostgreSQL and Citus alike: rows with no patient (directory resources such as
Practitioner or Organization, their versions and index rows, audit events about no patient)
store `patient_id = ''` instead of NULL (storage/ maps it back to None), because a
distribution column cannot be NULL; the column becomes NOT NULL. On Citus only
(`espace_api.db.citus`, a no-op elsewhere): primary keys gain `patient_id`, and each table is
distributed or made a reference table. docs/citus.md explains the choices.
"""

from alembic import op

from espace_api.db.citus import distribute, is_citus, local, reference, set_primary_key

revision = "16_1"
down_revision = "12_1"
branch_labels = None
depends_on = "0002"  # the auth tables (a branch of its own) become reference tables

#: Tables whose patient_id was nullable (rows outside any patient compartment).
NULLABLE = (
    "resources",
    "resource_versions",
    "search_token",
    "search_string",
    "search_date",
    "search_reference",
    "audit_events",
)

#: Distributed on patient_id, co-located, in dependency order (foreign keys point back), with
#: the primary key Citus needs where the table's own lacks patient_id.
DISTRIBUTED: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("resources", ("patient_id", "resource_type", "id")),
    ("resource_versions", ("patient_id", "resource_type", "id", "version_id")),
    ("search_token", None),
    ("search_string", None),
    ("search_date", None),
    ("search_reference", None),
    ("audit_events", ("patient_id", "id")),
    ("access_rules", None),
    ("patient_spaces", None),
    ("blobs", None),
    ("blob_chunks", None),
    ("blob_refs", None),
    ("data_keys", None),  # content encryption (18_1): a patient's data keys
    ("messages", None),  # messaging (11_1)
    ("message_participants", None),
    ("subscriptions", None),
    ("notification_outbox", None),
    ("observation_values", None),  # health profile (12_1)
    ("reminders_issued", None),
)

#: Reference tables: no patient (auth), or a global index keyed by something else (the INS,
#: unique across patients: one Patient per INS; read by INS or joined from any shard).
#: SMART App Launch (17_1): the authorization flow's rows, read by their hashed handle or by
#: grant id on every app request (small, read-mostly: a copy on every node).
REFERENCE = (
    "auth_clients",
    "auth_signing_keys",
    "auth_used_jti",
    "patient_ins",
    "smart_requests",
    "smart_grants",
    "smart_codes",
    "smart_refresh_tokens",
)

#: The primary keys before this revision, for the downgrade.
OLD_KEYS = {
    "resources": ("resource_type", "id"),
    "resource_versions": ("resource_type", "id", "version_id"),
    "audit_events": ("id",),
}

# The append-only triggers of audit_events (migration 8_1): Citus distributes a table with
# triggers only when told the trigger function is safe to run on the shards.
AUDIT_TRIGGERS = ("audit_events_append_only", "audit_events_no_truncate")


# Settings of the database on Citus: the purge's `SET LOCAL espace.audit_purge` must reach the
# shards' append-only trigger; joins that no shard can answer alone (`_has` across spaces) are
# repartitioned between workers rather than refused.
DATABASE_SETTINGS = (
    ("citus.propagate_set_commands", "local"),
    ("citus.enable_repartition_joins", "on"),
)
_ALTER_DATABASE = "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I {}', current_database()); END $$"


def _audit_triggers(action: str) -> None:
    for trigger in AUDIT_TRIGGERS:
        op.execute(f"ALTER TABLE audit_events {action} TRIGGER {trigger}")


def upgrade() -> None:
    _audit_triggers("DISABLE")
    for table in NULLABLE:
        op.execute(f"UPDATE {table} SET patient_id = '' WHERE patient_id IS NULL")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN patient_id SET NOT NULL")
    _audit_triggers("ENABLE")
    if is_citus():
        # Triggers on distributed tables run on the shards (audit_events' only raises).
        op.execute("SET LOCAL citus.enable_unsafe_triggers = on")
        op.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")
        for setting, value in DATABASE_SETTINGS:
            op.execute(_ALTER_DATABASE.format(f"SET {setting} = ''{value}''"))
    for table, key in DISTRIBUTED:
        distribute(table, primary_key=key)
    for table in REFERENCE:
        reference(table)


def downgrade() -> None:
    citus = is_citus()
    if citus:
        op.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")
        for setting, _ in DATABASE_SETTINGS:
            op.execute(_ALTER_DATABASE.format(f"RESET {setting}"))
    for table in REFERENCE:
        local(table)
    for table, _ in reversed(DISTRIBUTED):
        local(table)
        if citus and table in OLD_KEYS:
            set_primary_key(table, OLD_KEYS[table])
    _audit_triggers("DISABLE")
    for table in NULLABLE:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN patient_id DROP NOT NULL")
        op.execute(f"UPDATE {table} SET patient_id = NULL WHERE patient_id = ''")
    _audit_triggers("ENABLE")
