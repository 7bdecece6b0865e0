"""SQL of the patient spaces (lifecycle) and of purging a patient's data."""

from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import (
    access_rules,
    audit_events,
    message_participants,
    messages,
    notification_outbox,
    patient_ins,
    patient_spaces,
    resource_versions,
    resources,
    subscriptions,
)
from espace_api.lifecycle.state import Space
from espace_api.storage import routing
from espace_api.storage.blob_repository import blob_refs
from espace_api.storage.data_key_repository import destroy_keys
from espace_api.storage.repository import SEARCH_INDEX_TABLES

# The row's columns besides the key, state and updated_at: the Space's own fields.
_COLUMNS = tuple(f.name for f in fields(Space) if f.name != "state")


def _row(m: Any) -> Space:
    return Space(m.state, **{c: getattr(m, c) for c in _COLUMNS})


def values(space: Space, now: datetime) -> dict[str, Any]:
    return {"state": space.state, **{c: getattr(space, c) for c in _COLUMNS}, "updated_at": now}


async def get_space(
    conn: AsyncConnection, patient_id: str, *, for_update: bool = False
) -> Space | None:
    stmt = select(patient_spaces).where(patient_spaces.c.patient_id == patient_id)
    if for_update:
        stmt = stmt.with_for_update()
    m = (await conn.execute(stmt)).first()
    return _row(m) if m else None


_INSERT_SPACE = insert(patient_spaces)
# One statement object (compiled once): every column but the key comes from the new row.
_UPSERT = _INSERT_SPACE.on_conflict_do_update(
    index_elements=["patient_id"],
    set_={
        c.name: _INSERT_SPACE.excluded[c.name] for c in patient_spaces.c if c.name != "patient_id"
    },
)


async def save_space(conn: AsyncConnection, patient_id: str, space: Space, now: datetime) -> None:
    """Insert or replace a patient's space row."""
    await conn.execute(_UPSERT, {"patient_id": patient_id, **values(space, now)})


async def due(conn: AsyncConnection, now: datetime, limit: int) -> tuple[list[str], list[str]]:
    """(spaces whose opposition window ended, closed spaces past their purge date), locked
    with SKIP LOCKED so concurrent jobs share the work without waiting."""
    s = patient_spaces

    distributed = await routing.distributed(conn)

    async def past(state: str, deadline: Any) -> list[str]:
        stmt = select(s.c.patient_id).where(s.c.state == state, deadline <= now)
        stmt = stmt.order_by(deadline).limit(limit)
        if not distributed:
            return [m[0] for m in await conn.execute(stmt.with_for_update(skip_locked=True))]
        locked: list[str] = []  # Citus locks no rows across shards: one space at a time,
        # from more candidates than needed, as SKIP LOCKED would pass over locked ones
        for (patient_id,) in list(await conn.execute(stmt.limit(limit * routing.CANDIDATES))):
            if len(locked) == limit:
                break
            one = stmt.where(s.c.patient_id == patient_id).with_for_update(skip_locked=True)
            if (await conn.execute(one)).first() is not None:
                locked.append(patient_id)
        return locked

    return await past("notified", s.c.opposition_deadline), await past("closed", s.c.purge_after)


PATIENT_TABLES: tuple[Table, ...] = (
    *SEARCH_INDEX_TABLES,
    access_rules,
    blob_refs,
    messages,
    message_participants,
    subscriptions,
    notification_outbox,
)


async def purge_content(conn: AsyncConnection, patient_id: str, *, keep_patient: bool) -> int:
    """Delete a patient's data from every table (resources, versions, indexes, rules, content
    links); with `keep_patient`, the Patient resource and the space stay. Returns how many
    resources were deleted. The patient's data keys are destroyed (crypto-shredding: every
    copy of their content, in any backend or backup, is unreadable from this commit on);
    blobs left without references go with the sweeper. Content deposited afterwards (a
    space kept with `keep_patient`) is encrypted under a new key."""
    keep = resources.c.resource_type != "Patient" if keep_patient else None
    for table in PATIENT_TABLES:
        stmt = delete(table).where(table.c.patient_id == patient_id)
        if keep_patient and "resource_type" in table.c:
            stmt = stmt.where(table.c.resource_type != "Patient")
        await conn.execute(stmt)
    versions = delete(resource_versions).where(resource_versions.c.patient_id == patient_id)
    current = delete(resources).where(resources.c.patient_id == patient_id)
    if keep is not None:
        versions = versions.where(resource_versions.c.resource_type != "Patient")
        current = current.where(keep)
    await conn.execute(versions)
    count = (await conn.execute(current)).rowcount
    await destroy_keys(conn, patient_id)
    if not keep_patient:
        await conn.execute(delete(patient_spaces).where(patient_spaces.c.patient_id == patient_id))
        await conn.execute(delete(patient_ins).where(patient_ins.c.patient_id == patient_id))
        await conn.execute(text("SET LOCAL espace.audit_purge = 'on'"))
        await conn.execute(delete(audit_events).where(audit_events.c.patient_id == patient_id))
    return int(count or 0)
