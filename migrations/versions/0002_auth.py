"""Authentication: registered clients, server signing keys, used client-assertion ids.

Revision ID: 0002
Revises: 0001

None of these tables holds patient data: they are small reference tables (principle 1).
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE auth_clients (
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    jwks JSONB NOT NULL,
    scopes TEXT NOT NULL,
    organization TEXT,
    created TIMESTAMP WITH TIME ZONE NOT NULL,
    updated TIMESTAMP WITH TIME ZONE NOT NULL,
    disabled BOOLEAN DEFAULT false NOT NULL,
    PRIMARY KEY (client_id)
)
"""
    )
    op.execute(
        """
CREATE TABLE auth_signing_keys (
    kid TEXT NOT NULL,
    alg TEXT NOT NULL,
    private_pem TEXT NOT NULL,
    public_jwk JSONB NOT NULL,
    created TIMESTAMP WITH TIME ZONE NOT NULL,
    retired TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (kid)
)
"""
    )
    op.execute("CREATE INDEX ix_auth_signing_keys_created ON auth_signing_keys (created)")
    op.execute(
        """
CREATE TABLE auth_used_jti (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (client_id, jti)
)
"""
    )
    op.execute("CREATE INDEX ix_auth_used_jti_expires ON auth_used_jti (expires)")


def downgrade() -> None:
    for table in ("auth_used_jti", "auth_signing_keys", "auth_clients"):
        op.drop_table(table)
