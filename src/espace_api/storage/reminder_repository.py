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


async def lock(conn: AsyncConnection) -> None:
    """One reminders batch at a time (two runs never issue the same reminder twice)."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("reminders", 0))))


async def active_people(
    conn: AsyncConnection, after: str, limit: int
) -> list[tuple[str, str | None, str | None]]:
    """(patient id, birthDate, gender) of the next `limit` active spaces after `after`, in
    patient id order (a keyset walk: constant memory, each batch one index range)."""
    s, r = patient_spaces, resources
    stmt = (
        select(s.c.patient_id, r.c.content["birthDate"].astext, r.c.content["gender"].astext)
        .join(
            r,
            and_(
                r.c.patient_id == s.c.patient_id,  # co-located on Citus (docs/citus.md)
                r.c.resource_type == "Patient",
                r.c.id == s.c.patient_id,
            ),
        )
        .where(s.c.state == ACTIVE, s.c.patient_id > after, r.c.deleted.is_(False))
        .order_by(s.c.patient_id)
        .limit(limit)
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
