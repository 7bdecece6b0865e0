"""SQL of the patients' data keys (migration 18_1, docs/encryption.md).

`data_keys(patient_id, generation)`: one row per data key a patient ever had, its key
wrapped by a KEK (`wrapped_key`, `kek_id`), `created_at`, and `destroyed_at` once a purge
destroyed it (`wrapped_key` is then NULL: nothing left can decrypt that patient's content).
The current key of a patient is their highest generation not destroyed; a patient whose key
was destroyed and who gets content again gets the next generation.

Functions take an open connection; nothing here commits.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.storage import raw

data_key_metadata = MetaData()

data_keys = Table(
    "data_keys",
    data_key_metadata,
    Column("patient_id", Text, primary_key=True),
    Column("generation", Integer, primary_key=True),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("kek_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("destroyed_at", DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True)
class WrappedKey:
    """A data key as stored: wrapped by KEK `kek_id` (None once destroyed)."""

    patient_id: str
    generation: int
    kek_id: str
    wrapped_key: bytes | None


def _row(m: Any) -> WrappedKey:
    """A stored row (an asyncpg Record or a SQLAlchemy row's mapping)."""
    wrapped = m["wrapped_key"]
    return WrappedKey(
        m["patient_id"], m["generation"], m["kek_id"], None if wrapped is None else bytes(wrapped)
    )


# Built once, run on the driver connection (storage/raw.py): every deposit reads it.
_CURRENT = (
    select(data_keys)
    .where(
        data_keys.c.patient_id == bindparam("patient_id", type_=Text),
        data_keys.c.destroyed_at.is_(None),
    )
    .order_by(data_keys.c.generation.desc())
    .limit(1)
)


async def current_key(conn: AsyncConnection, patient_id: str) -> WrappedKey | None:
    """The patient's live data key with the highest generation, or None."""
    m = await raw.fetchrow(conn, _CURRENT, {"patient_id": patient_id})
    return _row(m) if m else None


async def next_generation(conn: AsyncConnection, patient_id: str) -> int:
    """One more than the patient's highest generation (1 for a patient without keys)."""
    stmt = select(func.coalesce(func.max(data_keys.c.generation), 0) + 1).where(
        data_keys.c.patient_id == patient_id
    )
    return int((await conn.execute(stmt)).scalar_one())


async def insert_key(conn: AsyncConnection, key: WrappedKey, now: datetime) -> None:
    """Store a new data key; a concurrent insert of the same generation wins silently."""
    stmt = insert(data_keys).values(
        patient_id=key.patient_id,
        generation=key.generation,
        wrapped_key=key.wrapped_key,
        kek_id=key.kek_id,
        created_at=now,
    )
    await conn.execute(stmt.on_conflict_do_nothing())


async def destroy_keys(conn: AsyncConnection, patient_id: str) -> int:
    """Crypto-shred: forget the patient's wrapped data keys; returns how many."""
    stmt = (
        update(data_keys)
        .where(data_keys.c.patient_id == patient_id, data_keys.c.destroyed_at.is_(None))
        .values(wrapped_key=None, destroyed_at=func.now())
    )
    return int((await conn.execute(stmt)).rowcount or 0)


async def lock_to_rewrap(conn: AsyncConnection, kek_id: str, limit: int) -> list[WrappedKey]:
    """Live keys wrapped by another KEK than `kek_id`, locked (others' locks skipped)."""
    stmt = (
        select(data_keys)
        .where(data_keys.c.wrapped_key.is_not(None), data_keys.c.kek_id != kek_id)
        .order_by(data_keys.c.patient_id, data_keys.c.generation)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_row(m._mapping) for m in await conn.execute(stmt)]


async def set_wrapped(conn: AsyncConnection, key: WrappedKey) -> None:
    """Replace a live key's wrapped form (same data key, new KEK)."""
    await conn.execute(
        update(data_keys)
        .where(
            data_keys.c.patient_id == key.patient_id,
            data_keys.c.generation == key.generation,
            data_keys.c.wrapped_key.is_not(None),
        )
        .values(wrapped_key=key.wrapped_key, kek_id=key.kek_id)
    )


async def count_by_kek(conn: AsyncConnection) -> dict[str, int]:
    """Live keys per KEK id (what rotation has left to do)."""
    stmt = (
        select(data_keys.c.kek_id, func.count())
        .where(data_keys.c.wrapped_key.is_not(None))
        .group_by(data_keys.c.kek_id)
    )
    return {kek: int(n) for kek, n in await conn.execute(stmt)}
