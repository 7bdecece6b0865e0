"""SQL of the INS register (`patient_ins`): one Patient per INS."""

from collections.abc import Iterable

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import patient_ins

Pair = tuple[str, str]
_OWNERS = text(
    "SELECT p.system, p.value, p.patient_id"
    " FROM unnest(CAST(:systems AS text[]), CAST(:values AS text[])) AS w(system, value)"
    " JOIN patient_ins p ON p.system = w.system AND p.value = w.value"
)


async def owners(conn: AsyncConnection, pairs: Iterable[Pair]) -> dict[Pair, str]:
    """(system, value) -> Patient id, for the pairs already registered."""
    wanted = list(pairs)
    if not wanted:
        return {}
    # One index probe per pair (a join on unnest): an IN list of row values would be planned
    # as a bitmap OR, about a second for a batch of 1,000.
    systems, values = [s for s, _ in wanted], [v for _, v in wanted]
    rows = await conn.execute(_OWNERS, {"systems": systems, "values": values})
    return {(m[0], m[1]): m[2] for m in rows}


# One statement object (compiled once); the pairs registered come back.
_REGISTER = (
    insert(patient_ins)
    .on_conflict_do_nothing()
    .returning(patient_ins.c.system, patient_ins.c.value)
)


async def replace(
    conn: AsyncConnection, patient_id: str, pairs: set[Pair], *, fresh: bool = False
) -> list[Pair]:
    """Make `pairs` the Patient's INS (`fresh`: it has none yet); the pairs another Patient
    holds (nothing inserted for them: the caller refuses the write, which rolls the
    transaction back)."""
    t = patient_ins
    if not fresh:
        await conn.execute(delete(t).where(t.c.patient_id == patient_id))
    if not pairs:
        return []
    rows = [{"system": s, "value": v, "patient_id": patient_id} for s, v in sorted(pairs)]
    taken = {(m[0], m[1]) for m in await conn.execute(_REGISTER, rows)}
    return sorted(pairs - taken)
