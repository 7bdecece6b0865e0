"""Core schema: resources, versions, search indexes, audit events.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE audit_events (
	id TEXT NOT NULL, 
	recorded TIMESTAMP WITH TIME ZONE NOT NULL, 
	patient_id TEXT, 
	action TEXT NOT NULL, 
	subtype TEXT NOT NULL, 
	outcome TEXT NOT NULL, 
	agent_kind TEXT, 
	agent_sub TEXT, 
	client_id TEXT, 
	token_jti TEXT, 
	purpose TEXT, 
	resource_type TEXT, 
	resource_id TEXT, 
	query TEXT, 
	PRIMARY KEY (id)
)
"""
    )
    op.execute("CREATE INDEX ix_audit_patient ON audit_events (patient_id, recorded)")
    op.execute(
        """
CREATE TABLE resource_versions (
	resource_type TEXT NOT NULL, 
	id TEXT NOT NULL, 
	version_id INTEGER NOT NULL, 
	patient_id TEXT, 
	last_updated TIMESTAMP WITH TIME ZONE NOT NULL, 
	deleted BOOLEAN DEFAULT 'false' NOT NULL, 
	method TEXT NOT NULL, 
	content JSONB, 
	PRIMARY KEY (resource_type, id, version_id)
)
"""
    )
    op.execute("CREATE INDEX ix_versions_patient ON resource_versions (patient_id, last_updated)")
    op.execute(
        "CREATE INDEX ix_versions_type_updated ON resource_versions (resource_type, last_updated)"
    )
    op.execute("CREATE INDEX ix_versions_updated ON resource_versions (last_updated)")
    op.execute(
        """
CREATE TABLE resources (
	resource_type TEXT NOT NULL, 
	id TEXT NOT NULL, 
	patient_id TEXT, 
	version_id INTEGER NOT NULL, 
	last_updated TIMESTAMP WITH TIME ZONE NOT NULL, 
	deleted BOOLEAN DEFAULT 'false' NOT NULL, 
	created_by TEXT, 
	content JSONB, 
	PRIMARY KEY (resource_type, id)
)
"""
    )
    op.execute(
        "CREATE INDEX ix_resources_patient ON resources (patient_id, resource_type, last_updated)"
    )
    op.execute(
        "CREATE INDEX ix_resources_type_updated ON resources (resource_type, last_updated, id)"
    )
    op.execute(
        """
CREATE TABLE search_date (
	resource_type TEXT NOT NULL, 
	resource_id TEXT NOT NULL, 
	patient_id TEXT, 
	param TEXT NOT NULL, 
	low TIMESTAMP WITH TIME ZONE NOT NULL, 
	high TIMESTAMP WITH TIME ZONE NOT NULL
)
"""
    )
    op.execute("CREATE INDEX ix_search_date_low ON search_date (resource_type, param, low)")
    op.execute(
        "CREATE INDEX ix_search_date_patient ON search_date (patient_id, resource_type, param, low)"
    )
    op.execute("CREATE INDEX ix_search_date_resource ON search_date (resource_type, resource_id)")
    op.execute(
        """
CREATE TABLE search_reference (
	resource_type TEXT NOT NULL, 
	resource_id TEXT NOT NULL, 
	patient_id TEXT, 
	param TEXT NOT NULL, 
	target_type TEXT, 
	target_id TEXT NOT NULL
)
"""
    )
    op.execute(
        "CREATE INDEX ix_search_reference_resource ON search_reference (resource_type, resource_id)"
    )
    op.execute(
        "CREATE INDEX ix_search_reference_target ON search_reference "
        "(param, target_id, target_type)"
    )
    op.execute(
        """
CREATE TABLE search_string (
	resource_type TEXT NOT NULL, 
	resource_id TEXT NOT NULL, 
	patient_id TEXT, 
	param TEXT NOT NULL, 
	value TEXT NOT NULL, 
	exact TEXT NOT NULL
)
"""
    )
    op.execute(
        "CREATE INDEX ix_search_string_resource ON search_string (resource_type, resource_id)"
    )
    op.execute(
        "CREATE INDEX ix_search_string_value ON search_string "
        "(resource_type, param, value text_pattern_ops)"
    )
    op.execute(
        """
CREATE TABLE search_token (
	resource_type TEXT NOT NULL, 
	resource_id TEXT NOT NULL, 
	patient_id TEXT, 
	param TEXT NOT NULL, 
	system TEXT DEFAULT '' NOT NULL, 
	code TEXT NOT NULL, 
	text TEXT
)
"""
    )
    op.execute(
        "CREATE INDEX ix_search_token_patient ON search_token "
        "(patient_id, resource_type, param, code)"
    )
    op.execute("CREATE INDEX ix_search_token_resource ON search_token (resource_type, resource_id)")
    op.execute(
        "CREATE INDEX ix_search_token_value ON search_token (resource_type, param, code, system)"
    )


def downgrade() -> None:
    for table in (
        "audit_events",
        "search_reference",
        "search_date",
        "search_string",
        "search_token",
        "resource_versions",
        "resources",
    ):
        op.drop_table(table)
