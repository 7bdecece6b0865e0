"""SQL of the prevention reminders job: the active spaces in keyset batches, their
vaccinations, the reminders already issued, and the batch's writes (COPY)."""

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Table, Text, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import (
    patient_spaces,
    reminders_issued,
    resources,
    search_date,
    search_token,
)
from espace_api.storage.enrolment_repository import copy_rows

ACTIVE = "active"


_LOCK = func.hashtextextended("reminders", 0)


async def lock_run(conn: AsyncConnection) -> None:
    """One run at a time (two runs never issue the same reminder twice): a session lock on
    `conn` (in autocommit) until `unlock_run`; a second run waits for the first to end."""
    await conn.execute(select(func.pg_advisory_lock(_LOCK)))


async def unlock_run(conn: AsyncConnection) -> None:
    await conn.execute(select(func.pg_advisory_unlock(_LOCK)))


async def active_spaces(conn: AsyncConnection, after: str, limit: int) -> list[str]:
    """The next `limit` active spaces' patient ids after `after`, in order: a keyset walk
    of the spaces' primary key (constant memory, each batch one index range)."""
    s = patient_spaces
    stmt = (
        select(s.c.patient_id)
        .where(s.c.state == ACTIVE, s.c.patient_id > after)
        .order_by(s.c.patient_id)
        .limit(limit)
    )
    return [m[0] for m in await conn.execute(stmt)]


async def people(
    conn: AsyncConnection, patient_ids: Sequence[str]
) -> list[tuple[str, str | None, str | None]]:
    """(patient id, birthDate, gender) of these patients' current Patients, in id order.
    (Read apart from the spaces: joined in one statement, the planner misjudged the
    Patient rows, `id = patient_id`, and scanned the whole resources table per batch.)"""
    r = resources
    stmt = (
        select(r.c.id, r.c.content["birthDate"].astext, r.c.content["gender"].astext)
        .where(
            r.c.resource_type == "Patient",
            r.c.id.in_(patient_ids),
            r.c.patient_id.in_(patient_ids),  # co-located on Citus (docs/citus.md)
            r.c.deleted.is_(False),
        )
        .order_by(r.c.id)
    )
    return [(m[0], m[1], m[2]) for m in await conn.execute(stmt)]


async def vaccinations(
    conn: AsyncConnection, patient_ids: Sequence[str]
) -> list[tuple[str, str, date]]:
    """(patient id, system|code, date) of the completed Immunizations of these patients."""
    t, d, r = search_token, search_date, resources
    stmt = (
        select(t.c.patient_id, (t.c.system + "|" + t.c.code).cast(Text), d.c.low)
        .join(
            d,
            and_(
                d.c.patient_id == t.c.patient_id,  # co-located on Citus (docs/citus.md)
                d.c.resource_type == t.c.resource_type,
                d.c.resource_id == t.c.resource_id,
            ),
        )
        .join(
            r,
            and_(
                r.c.patient_id == t.c.patient_id,
                r.c.resource_type == t.c.resource_type,
                r.c.id == t.c.resource_id,
            ),
        )
        .where(
            t.c.patient_id.in_(patient_ids),
            t.c.resource_type == "Immunization",
            t.c.param == "vaccine-code",
            d.c.param == "date",
            r.c.deleted.is_(False),
            r.c.content["status"].astext == "completed",
        )
    )
    return [(m[0], m[1], m[2].date()) for m in await conn.execute(stmt)]


async def issued(conn: AsyncConnection, patient_ids: Sequence[str]) -> set[tuple[str, str, str]]:
    """(patient id, rule id, due period) already issued to these patients."""
    i = reminders_issued
    stmt = select(i.c.patient_id, i.c.rule_id, i.c.due_period).where(
        i.c.patient_id.in_(patient_ids)
    )
    return {(m[0], m[1], m[2]) for m in await conn.execute(stmt)}


async def write_batch(
    conn: AsyncConnection, tables: Sequence[tuple[Table, list[dict[str, Any]]]]
) -> None:
    """The batch's rows (Communications' current rows, versions and indexes, audit rows, the
    reminders' issue records), one COPY per table, in the order given."""
    for table, rows in tables:
        await copy_rows(conn, table, rows)
