"""SMART App Launch: patient-authorised apps, their grants, codes and refresh tokens.

Revision ID: 17_1
Revises: 21_1

`auth_clients` gains the columns an app registration needs (exact redirect URIs, catalogue
metadata). Every secret handle (authorization request, consent form, code, refresh token) is
stored as its SHA-256 only. Grants carry their patient (principle 1); the grant itself is
also a Consent resource of the patient (privacy/consents.py kind `app-grant`).
"""

from alembic import op

revision = "17_1"
down_revision = "11_1"
branch_labels = None
depends_on = ("0002",)  # alters auth_clients (0002 is on its own branch)

UPGRADE = (
    "ALTER TABLE auth_clients ADD COLUMN redirect_uris JSONB",
    "ALTER TABLE auth_clients ADD COLUMN catalogue JSONB",
    """
CREATE TABLE smart_requests (
    handle_hash BYTEA NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    provider_nonce TEXT NOT NULL,
    expires TIMESTAMP WITH TIME ZONE NOT NULL,
    consent_hash BYTEA,
    patient_id TEXT,
    subject TEXT,
    done BOOLEAN DEFAULT false NOT NULL,
    PRIMARY KEY (handle_hash)
)
""",
    "CREATE UNIQUE INDEX ix_smart_requests_consent ON smart_requests (consent_hash)",
    "CREATE INDEX ix_smart_requests_expires ON smart_requests (expires)",
    """
CREATE TABLE smart_grants (
    id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    consent_id TEXT NOT NULL,
    created TIMESTAMP WITH TIME ZONE NOT NULL,
    expires TIMESTAMP WITH TIME ZONE NOT NULL,
    revoked TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (id)
)
""",
    "CREATE INDEX ix_smart_grants_patient ON smart_grants (patient_id)",
    """
CREATE TABLE smart_codes (
    code_hash BYTEA NOT NULL,
    grant_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    expires TIMESTAMP WITH TIME ZONE NOT NULL,
    used TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (code_hash)
)
""",
    """
CREATE TABLE smart_refresh_tokens (
    token_hash BYTEA NOT NULL,
    grant_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    expires TIMESTAMP WITH TIME ZONE NOT NULL,
    used TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (token_hash)
)
""",
    "CREATE INDEX ix_smart_refresh_grant ON smart_refresh_tokens (grant_id)",
    "CREATE INDEX ix_smart_refresh_expires ON smart_refresh_tokens (expires)",
    "CREATE INDEX ix_smart_codes_expires ON smart_codes (expires)",
)

DOWNGRADE = (
    "DROP TABLE smart_refresh_tokens",
    "DROP TABLE smart_codes",
    "DROP TABLE smart_grants",
    "DROP TABLE smart_requests",
    "ALTER TABLE auth_clients DROP COLUMN catalogue",
    "ALTER TABLE auth_clients DROP COLUMN redirect_uris",
)


def upgrade() -> None:
    for statement in UPGRADE:  # asyncpg runs one statement per execute
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
