"""Audit event SQL."""

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import audit_events


async def insert_events(conn: AsyncConnection, events: list[dict[str, Any]]) -> None:
    """Insert audit events (executemany form: the compiled statement is cached)."""
    if events:
        await conn.execute(insert(audit_events), events)


async def events_for_patient(
    conn: AsyncConnection, patient_id: str, limit: int = 100
) -> list[dict[str, Any]]:
    """A patient's access log, newest first."""
    a = audit_events
    stmt = select(a).where(a.c.patient_id == patient_id).order_by(a.c.recorded.desc()).limit(limit)
    return [dict(m._mapping) for m in await conn.execute(stmt)]
