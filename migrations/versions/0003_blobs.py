"""Document content: blob catalogue, Postgres-held chunks, blob references.

Revision ID: 0003
Revises: 0001

See src/espace_api/storage/blob_repository.py for what each table is for.
"""

from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE blobs (
    patient_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha1 TEXT NOT NULL,
    backend TEXT NOT NULL,
    chunk_size INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    touched_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (patient_id, sha256)
)
"""
    )
    op.execute("CREATE INDEX ix_blobs_touched ON blobs (touched_at)")
    op.execute(
        """
CREATE TABLE blob_chunks (
    patient_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (patient_id, sha256, seq),
    FOREIGN KEY (patient_id, sha256) REFERENCES blobs (patient_id, sha256) ON DELETE CASCADE
)
"""
    )
    # Documents are mostly compressed already (PDF, JPEG): store chunks uncompressed, which
    # also lets substring() fetch a range without reading the whole chunk.
    op.execute("ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL")
    op.execute(
        """
CREATE TABLE blob_refs (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (patient_id, resource_type, resource_id, version_id, sha256),
    FOREIGN KEY (patient_id, sha256) REFERENCES blobs (patient_id, sha256) ON DELETE RESTRICT
)
"""
    )
    op.execute("CREATE INDEX ix_blob_refs_blob ON blob_refs (patient_id, sha256)")


def downgrade() -> None:
    for table in ("blob_refs", "blob_chunks", "blobs"):
        op.drop_table(table)
