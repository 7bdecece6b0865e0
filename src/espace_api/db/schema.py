"""Table definitions (SQLAlchemy Core). Alembic migrations create them; code queries them.

Every table of patient data carries `patient_id`, the compartment key that a sharded
deployment distributes on (ARCHITECTURE.md principle 1). Resources outside any patient
compartment (Practitioner, Organization), and audit events about no patient, have
`patient_id = ''` (NO_PATIENT), not NULL: a distribution column cannot be NULL (migration 16_1,
docs/citus.md). storage/ writes NO_PATIENT for None and reads it back as None.
"""

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

#: The patient_id of rows that belong to no patient (never NULL).
NO_PATIENT = ""

resources = Table(
    "resources",
    metadata,
    Column("resource_type", Text, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("patient_id", Text, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Column("created_by", Text, nullable=True),
    Column("content", JSONB, nullable=True),
    Index("ix_resources_patient", "patient_id", "resource_type", "last_updated"),
    Index("ix_resources_type_updated", "resource_type", "last_updated", "id"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("resource_type", Text, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("patient_id", Text, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Column("method", Text, nullable=False),
    Column("content", JSONB, nullable=True),
    Index("ix_versions_type_updated", "resource_type", "last_updated"),
    Index("ix_versions_updated", "last_updated"),
    Index("ix_versions_patient", "patient_id", "last_updated"),
)


def _index_table(name: str, *value_columns: Column[Any], extra: tuple[Index, ...] = ()) -> Table:
    return Table(
        name,
        metadata,
        Column("resource_type", Text, nullable=False),
        Column("resource_id", Text, nullable=False),
        Column("patient_id", Text, nullable=False),
        Column("param", Text, nullable=False),
        *value_columns,
        Index(f"ix_{name}_resource", "resource_type", "resource_id"),
        *extra,
    )


search_token = _index_table(
    "search_token",
    Column("system", Text, nullable=False, server_default=""),
    Column("code", Text, nullable=False),
    Column("text", Text, nullable=True),
    extra=(
        Index("ix_search_token_value", "resource_type", "param", "code", "system"),
        Index("ix_search_token_patient", "patient_id", "resource_type", "param", "code"),
    ),
)

search_string = _index_table(
    "search_string",
    Column("value", Text, nullable=False),
    Column("exact", Text, nullable=False),
    extra=(
        Index(
            "ix_search_string_value",
            "resource_type",
            "param",
            "value",
            postgresql_ops={"value": "text_pattern_ops"},
        ),
    ),
)

search_date = _index_table(
    "search_date",
    Column("low", DateTime(timezone=True), nullable=False),
    Column("high", DateTime(timezone=True), nullable=False),
    extra=(
        Index("ix_search_date_low", "resource_type", "param", "low"),
        Index("ix_search_date_patient", "patient_id", "resource_type", "param", "low"),
    ),
)

search_reference = _index_table(
    "search_reference",
    Column("target_type", Text, nullable=True),
    Column("target_id", Text, nullable=False),
    extra=(Index("ix_search_reference_target", "param", "target_id", "target_type"),),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Text, primary_key=True),
    Column("recorded", DateTime(timezone=True), nullable=False),
    Column("patient_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subtype", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("agent_kind", Text, nullable=True),
    Column("agent_sub", Text, nullable=True),
    Column("client_id", Text, nullable=True),
    Column("token_jti", Text, nullable=True),
    Column("purpose", Text, nullable=True),
    Column("resource_type", Text, nullable=True),
    Column("resource_id", Text, nullable=True),
    Column("query", Text, nullable=True),
    Column("practitioner", Text, nullable=True),
    Column("organization", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_audit_patient", "patient_id", "recorded"),
)

# The patient's privacy choices as the access policy reads them, derived from their Consent
# resources (privacy/consents.py) in the same transaction as each Consent write. One row per
# (consent, kind, actor); `actor` is '' for space-wide settings (e.g. mask-all).
access_rules = Table(
    "access_rules",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("consent_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("actor", Text, primary_key=True, server_default=""),
    Column("period_start", DateTime(timezone=True), nullable=True),
    Column("period_end", DateTime(timezone=True), nullable=True),
    Index("ix_access_rules_lookup", "patient_id", "kind", "actor"),
)

# The authoritative state of each patient's space (lifecycle/state.py); the Patient resource
# shows it in its space-status extension, written in the same transaction.
patient_spaces = Table(
    "patient_spaces",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("notified_at", DateTime(timezone=True), nullable=True),
    Column("opposition_deadline", DateTime(timezone=True), nullable=True),
    Column("activated_at", DateTime(timezone=True), nullable=True),
    Column("opposed_at", DateTime(timezone=True), nullable=True),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("closure_reason", Text, nullable=True),
    Column("purge_after", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_patient_spaces_due", "state", "opposition_deadline"),
    Index("ix_patient_spaces_purge", "purge_after"),
)

# The INS is the identity key of the vault: one Patient per INS (system, value), enforced
# here (issue 21). Keyed by the INS, not the patient: a lookup is one primary-key probe, and
# on a sharded cluster this table is distributed by INS (or kept as a reference table).
patient_ins = Table(
    "patient_ins",
    metadata,
    Column("system", Text, primary_key=True),
    Column("value", Text, primary_key=True),
    Column("patient_id", Text, nullable=False),
    Index("ix_patient_ins_patient", "patient_id"),
)

# Messaging (migration 11_1, messaging/). One row per Communication: its thread (the first
# message's id) and the server-set `sent`.
messages = Table(
    "messages",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("thread_id", Text, nullable=False),
    Column("sent", DateTime(timezone=True), nullable=False),
    Index("ix_messages_thread", "patient_id", "thread_id", "sent"),
)

# The sender and recipients of each message as actor keys (`patient:<id>`,
# `practitioner:<rpps>`, `organization:<finess>`; a PractitionerRole gives both of its keys);
# `reference` is the Reference as written; a recipient's `received` is its read receipt.
message_participants = Table(
    "message_participants",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("message_id", Text, primary_key=True),
    Column("role", Text, primary_key=True),  # sender | recipient
    Column("actor", Text, primary_key=True),
    Column("reference", Text, nullable=False),
    Column("received", DateTime(timezone=True), nullable=True),
    Index("ix_message_participants_actor", "patient_id", "actor", "role"),
)

# A patient's rest-hook Subscriptions as the notifier reads them (derived from the
# Subscription resources in the same transaction); `topic` is the criteria's resource type.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("headers", JSONB, nullable=False, server_default="[]"),
    Column("active", Boolean, nullable=False),
)

# "Something new" for one Subscription, queued with the write that caused it; at most one
# pending row per Subscription (later events join it). The worker delivers and retries.
notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("subscription_id", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    # pending | sending (a worker holds it) | delivered | failed | cancelled
    Column("state", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("done_at", DateTime(timezone=True), nullable=True),
)

# One row per measured value of an Observation (profile/measurements.py), in the code's
# canonical UCUM unit, written with the resource: `$lastn` and `$daily-summary` read it, and
# its unique index keeps a device's repeated measurement from being stored twice.
observation_values = Table(
    "observation_values",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("resource_id", Text, primary_key=True),
    Column("code", Text, primary_key=True),
    Column("effective", DateTime(timezone=True), nullable=False),
    Column("value", Float, nullable=False),
    Column("unit", Text, nullable=False),
    Column("device", Text, nullable=False),
    Index("ux_observation_values_once", "patient_id", "device", "code", "effective", unique=True),
    Index("ix_observation_values_series", "patient_id", "code", "effective"),
)

# Prevention reminders already written (profile/reminders): one per patient, rule and due
# period, so that running the reminders again issues nothing twice.
reminders_issued = Table(
    "reminders_issued",
    metadata,
    Column("patient_id", Text, primary_key=True),
    Column("rule_id", Text, primary_key=True),
    Column("due_period", Text, primary_key=True),
    Column("communication_id", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)
