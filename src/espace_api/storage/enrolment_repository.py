"""SQL of bulk enrolment: its lock and the batched inserts (INS owners: ins_repository)."""

from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import resource_versions, resources


async def lock(conn: AsyncConnection) -> None:
    """Serialise enrolment batches (two files naming the same person never race)."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("enrolment", 0))))


async def insert_batch(
    conn: AsyncConnection,
    current: list[dict[str, Any]],
    versions: list[dict[str, Any]],
    index: dict[Table, list[dict[str, Any]]],
) -> None:
    """One executemany per table."""
    await conn.execute(insert(resources), current)
    await conn.execute(insert(resource_versions), versions)
    for table, rows in index.items():
        if rows:
            await conn.execute(insert(table), rows)
