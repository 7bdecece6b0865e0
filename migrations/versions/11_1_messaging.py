"""Messaging (issue 11): messages and their participants, read receipts, subscriptions and
the notification outbox.

Revision ID: 11_1
Revises: 21_1

Every table carries `patient_id` first in its primary key (shard key, ARCHITECTURE.md 1).
- `messages`: one row per Communication (its thread and server-set `sent`).
- `message_participants`: the sender and each recipient of a message as actor keys
  (`patient:<id>`, `practitioner:<rpps>`, `organization:<finess>`); a recipient's `received`
  is its read receipt. The access policy and the unread counts read this table.
- `subscriptions`: the patient's rest-hook Subscriptions as the notifier reads them.
- `notification_outbox`: "something new" for one Subscription, queued in the transaction of
  the write that caused it (at most one pending per Subscription), delivered by the worker
  (messaging/worker.py): pending -> sending -> delivered | pending (retry) | failed.
"""

from alembic import op

revision = "11_1"
down_revision = "21_1"
branch_labels = None
depends_on = None


UPGRADE = (
    """
CREATE TABLE messages (
    patient_id TEXT NOT NULL,
    id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    sent TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (patient_id, id)
)
""",
    """
CREATE INDEX ix_messages_thread ON messages (patient_id, thread_id, sent)
""",
    """
CREATE TABLE message_participants (
    patient_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    role TEXT NOT NULL,
    actor TEXT NOT NULL,
    reference TEXT NOT NULL,
    received TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (patient_id, message_id, role, actor)
)
""",
    """
CREATE INDEX ix_message_participants_actor ON message_participants (patient_id, actor, role)
""",
    """
CREATE TABLE subscriptions (
    patient_id TEXT NOT NULL,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    headers JSONB NOT NULL DEFAULT '[]',
    active BOOLEAN NOT NULL,
    PRIMARY KEY (patient_id, id)
)
""",
    """
CREATE INDEX ix_subscriptions_topic ON subscriptions (patient_id, topic) WHERE active
""",
    """
CREATE TABLE notification_outbox (
    patient_id TEXT NOT NULL,
    id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    created TIMESTAMP WITH TIME ZONE NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt TIMESTAMP WITH TIME ZONE NOT NULL,
    last_error TEXT,
    done_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (patient_id, id)
)
""",
    """
CREATE UNIQUE INDEX ux_notification_outbox_pending
    ON notification_outbox (patient_id, subscription_id) WHERE state = 'pending'
""",
    """
CREATE INDEX ix_notification_outbox_due ON notification_outbox (next_attempt)
    WHERE state IN ('pending', 'sending')
""",
)

DOWNGRADE = (
    """
DROP TABLE notification_outbox
""",
    """
DROP TABLE subscriptions
""",
    """
DROP TABLE message_participants
""",
    """
DROP TABLE messages
""",
)


def upgrade() -> None:
    for statement in UPGRADE:  # asyncpg runs one statement per execute
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
