"""Content encryption: the patients' data keys, and which key encrypts each blob.

Revision ID: 18_1
Revises: 21_1

`data_keys` holds each patient's data keys wrapped by a key-encryption key (never stored
here); a purge sets `wrapped_key` to NULL and `destroyed_at` (crypto-shredding).
`blobs.key_generation` names the data key a blob's stored bytes are encrypted with; NULL
means stored in clear (every blob written before this revision stays readable as it is).
See src/espace_api/storage/data_key_repository.py and docs/encryption.md.
"""

from alembic import op

revision = "18_1"
down_revision = "17_1"
branch_labels = None
depends_on = None

UPGRADE = (
    """
CREATE TABLE data_keys (
    patient_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    wrapped_key BYTEA,
    kek_id TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    destroyed_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (patient_id, generation),
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
)
""",
    # Rotation looks for live keys wrapped by an old KEK.
    "CREATE INDEX ix_data_keys_kek ON data_keys (kek_id) WHERE wrapped_key IS NOT NULL",
    "ALTER TABLE blobs ADD COLUMN key_generation INTEGER",
)


def upgrade() -> None:
    for statement in UPGRADE:  # asyncpg runs one statement per execute
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE blobs DROP COLUMN key_generation")
    op.execute("DROP TABLE data_keys")
