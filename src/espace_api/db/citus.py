"""Citus distribution for migrations: one call per table, a no-op on plain PostgreSQL.

On a database with the `citus` extension (docs/citus.md), every table of patient data is
distributed on `patient_id`, co-located with `resources` (a patient's rows of every table live
on one shard, so a query naming the patient is routed to one node and joins stay local), and
tables without a patient are reference tables (copied to every node). Citus demands that
primary keys and unique constraints of a distributed table include `patient_id`: `distribute`
replaces them when a `primary_key` is given, on Citus only (plain PostgreSQL keeps the stricter
global key). A migration that adds a table calls one of these right after creating it:

    distribute("messages", primary_key=("patient_id", "id"))
    reference("smart_clients")
"""

from alembic import op
from sqlalchemy import text

#: The table every distributed table is co-located with.
ANCHOR = "resources"


def is_citus() -> bool:
    """Whether the migrated database has the citus extension."""
    found = op.get_bind().execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'"))
    return found.first() is not None


def distribute(
    table: str,
    *,
    primary_key: tuple[str, ...] | None = None,
    column: str = "patient_id",
    colocate_with: str = ANCHOR,
) -> None:
    """Distribute `table` on `column` (co-located with `colocate_with`; "none" for a table of
    its own distribution); with `primary_key`, first make that its primary key."""
    if not is_citus():
        return
    if primary_key is not None:
        set_primary_key(table, primary_key)
    colocate = "none" if table == ANCHOR else colocate_with
    op.execute(
        f"SELECT create_distributed_table('{table}', '{column}', colocate_with => '{colocate}')"
    )


def reference(table: str) -> None:
    """Make `table` a reference table (a full copy on every node)."""
    if is_citus():
        op.execute(f"SELECT create_reference_table('{table}')")


def local(table: str) -> None:
    """Turn a distributed or reference table back into a coordinator-local one (downgrades)."""
    if is_citus():
        op.execute(
            f"SELECT undistribute_table('{table}', cascade_via_foreign_keys => true) WHERE EXISTS "
            f"(SELECT 1 FROM pg_dist_partition WHERE logicalrelid = '{table}'::regclass)"
        )


def set_primary_key(table: str, columns: tuple[str, ...]) -> None:
    """Replace `table`'s primary key (named `<table>_pkey`) by one on `columns`."""
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
    op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(columns)})")
