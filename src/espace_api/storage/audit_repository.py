"""Audit event SQL (the table is append-only: see migration 8_1)."""

from typing import Any

from sqlalchemy import ColumnElement, Text, bindparam, func, insert, literal_column, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from espace_api.db.schema import NO_PATIENT, audit_events, resources
from espace_api.metrics.counters import AUDIT_WRITE_FAILURES
from espace_api.storage import audit_writer, raw

# Every column a named parameter, for the raw (asyncpg) path; compiled once.
# A row of no patient stores NO_PATIENT ('', schema.py): the statement says so itself, since
# the group-commit writer may be handed rows directly (a literal: it binds only row values).
_INSERT_ALL = insert(audit_events).values(
    {c.name: bindparam(c.name, None) for c in audit_events.c}
    | {"patient_id": func.coalesce(bindparam("patient_id", None, type_=Text), literal_column("''"))}
)


# Execution option of an autocommit connection: the list its audit rows are put in, to be
# written by `write_deferred` once the connection is back in the pool (api/http.py).
DEFERRED = "espace_deferred_audit"


def stored(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit rows as stored: a row of no patient has NO_PATIENT."""
    return [e if e.get("patient_id") else {**e, "patient_id": NO_PATIENT} for e in events]


async def insert_events(conn: AsyncConnection, events: list[dict[str, Any]]) -> None:
    """Insert audit events: inside a transaction, in it (on the driver connection:
    storage/raw.py); in autocommit (a read's audit row) into the connection's deferred
    list when it has one, else at once by group commit (storage/audit_writer.py)."""
    if not events:
        return
    events = stored(events)
    if not raw.autocommit(conn):
        try:
            await raw.execute_rows(conn, _INSERT_ALL, events)
        except Exception:
            AUDIT_WRITE_FAILURES.inc(len(events))
            raise
        return
    deferred = raw.option(conn, DEFERRED)
    if deferred is not None:
        deferred.extend(events)
    else:
        await write_deferred(conn.engine, events)


async def write_deferred(engine: AsyncEngine, events: list[dict[str, Any]]) -> None:
    """Make `events` durable by group commit with the rows of concurrent requests; the
    caller holds no connection while it waits."""
    if not events:
        return
    try:
        await audit_writer.writer_for(engine, _INSERT_ALL).write(engine, events)
    except Exception:
        AUDIT_WRITE_FAILURES.inc(len(events))
        raise


async def events_for_patient(
    conn: AsyncConnection, patient_id: str, limit: int = 100
) -> list[dict[str, Any]]:
    """A patient's access log, newest first."""
    a = audit_events
    stmt = select(a).where(a.c.patient_id == patient_id).order_by(a.c.recorded.desc()).limit(limit)
    return [dict(m._mapping) for m in await conn.execute(stmt)]


async def search_events(
    conn: AsyncConnection,
    where: list[ColumnElement[bool]],
    *,
    count: int,
    offset: int,
    newest_first: bool = True,
) -> tuple[list[dict[str, Any]], int]:
    """Audit events matching every clause of `where`, paged, and their total."""
    a = audit_events
    order = a.c.recorded.desc() if newest_first else a.c.recorded.asc()
    stmt = select(a).where(*where).order_by(order, a.c.id).limit(count).offset(offset)
    rows = [dict(m._mapping) for m in await conn.execute(stmt)]
    total = (await conn.execute(select(func.count()).select_from(a).where(*where))).scalar_one()
    return rows, total


async def get_event(
    conn: AsyncConnection, id_: str, visible: ColumnElement[bool] = true()
) -> dict[str, Any] | None:
    a = audit_events
    m = (await conn.execute(select(a).where(a.c.id == id_, visible))).first()
    return dict(m._mapping) if m else None


async def patient_of(conn: AsyncConnection, resource_type: str, id_: str) -> str | None:
    """The patient of a stored resource, whoever may see it (to name a refused access)."""
    r = resources
    stmt = select(r.c.patient_id).where(r.c.resource_type == resource_type, r.c.id == id_)
    return (await conn.execute(stmt)).scalar_one_or_none() or None
