"""SQL of bulk enrolment: which INS exist already, and the batched inserts."""

from typing import Any

from sqlalchemy import Table, and_, func, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import resource_versions, resources, search_token


async def lock(conn: AsyncConnection) -> None:
    """Serialise enrolment batches (two files naming the same person never race)."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("enrolment", 0))))


async def existing_ins(
    conn: AsyncConnection, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(system, value) -> Patient id, for the INS already enrolled."""
    if not pairs:
        return {}
    t, r = search_token, resources
    stmt = (
        select(t.c.system, t.c.code, t.c.resource_id)
        .join(r, and_(r.c.resource_type == "Patient", r.c.id == t.c.resource_id))
        .where(
            t.c.resource_type == "Patient",
            t.c.param == "identifier",
            tuple_(t.c.system, t.c.code).in_(pairs),
            r.c.deleted.is_(False),
        )
    )
    return {(m[0], m[1]): m[2] for m in await conn.execute(stmt)}


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
