"""SQL of measurements: the `observation_values` rows written with each Observation, the
duplicate check, `$lastn` and the daily summary.

Reads join the values to their current Observation in `resources` and AND the caller's
visibility predicate there (access/policy.py), so a measurement is shown exactly when its
Observation would be.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Float, Text, and_, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import observation_values, resources
from espace_api.storage import routing

OBSERVATION = "Observation"


@dataclass(frozen=True)
class ValueRow:
    """One measured value to store."""

    code: str
    effective: datetime
    value: float
    unit: str
    device: str


@dataclass(frozen=True)
class DayRow:
    """The daily summary of one code."""

    code: str
    day: str
    count: int
    min: float
    max: float
    mean: float
    unit: str


async def replace_values(
    conn: AsyncConnection,
    patient_id: str,
    resource_id: str,
    rows: Sequence[ValueRow],
    *,
    fresh: bool = False,
) -> int:
    """Make `rows` the values of one Observation (`fresh`: a new one, with none yet); the
    number stored (fewer than asked when another Observation already holds the same patient,
    device, code and time)."""
    ov = observation_values
    if not fresh:
        await conn.execute(
            delete(ov).where(ov.c.patient_id == patient_id, ov.c.resource_id == resource_id)
        )
    if not rows:
        return 0
    stmt = (
        insert(ov)
        .values(
            [
                {
                    "patient_id": patient_id,
                    "resource_id": resource_id,
                    "code": r.code,
                    "effective": r.effective,
                    "value": r.value,
                    "unit": r.unit,
                    "device": r.device,
                }
                for r in rows
            ]
        )
        .on_conflict_do_nothing()
        .returning(ov.c.code)
    )
    return len((await conn.execute(stmt)).all())


async def holder_of(
    conn: AsyncConnection, patient_id: str, device: str, codes: Sequence[str], effective: datetime
) -> str | None:
    """The Observation already holding a value of this patient, device, code and time."""
    ov = observation_values
    stmt = (
        select(ov.c.resource_id)
        .where(
            ov.c.patient_id == patient_id,
            ov.c.device == device,
            ov.c.code.in_(codes),
            ov.c.effective == effective,
        )
        .limit(1)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


def _visible_values(
    visible: ColumnElement[bool], patient_id: str
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """(join, where): a value row of `patient_id` joined to its current Observation, and the
    visibility predicate pinned to the patient, kept out of the ON clause (Citus plans the
    legal-representative subquery of patient tokens apart only from the WHERE clause; the
    rest runs on the patient's shard, docs/citus.md)."""
    ov, r = observation_values, resources
    join = and_(
        r.c.resource_type == OBSERVATION,
        r.c.id == ov.c.resource_id,
        r.c.patient_id == ov.c.patient_id,
        r.c.deleted.is_(False),
    )
    return join, routing.pinned(visible, r.c.patient_id, literal(patient_id, Text))


async def lastn(
    conn: AsyncConnection,
    patient_id: str,
    codes: Sequence[str],
    max_per_code: int,
    visible: ColumnElement[bool],
) -> list[tuple[str, str]]:
    """(id, JSON) of the latest `max_per_code` visible Observations per code, newest first
    within each code: one index range (patient, code, effective desc) per code. (One query
    per code rather than a LATERAL over the codes: Citus routes each to the patient's shard,
    it refuses the LATERAL join.)"""
    ov, r = observation_values, resources
    join, shown = _visible_values(visible, patient_id)
    rows: list[tuple[str, str]] = []
    for code in codes:
        stmt = (
            select(r.c.id, r.c.content.cast(Text))
            .select_from(ov.join(r, join))
            .where(shown, ov.c.patient_id == patient_id, ov.c.code == code)
            .order_by(ov.c.effective.desc())
            .limit(max_per_code)
        )
        rows += [(m[0], m[1]) for m in await conn.execute(stmt)]
    seen: set[str] = set()
    out = []
    for id_, json in rows:
        if id_ not in seen:  # a blood pressure answers for both its components
            seen.add(id_)
            out.append((id_, json))
    return out


async def daily_summary(
    conn: AsyncConnection,
    patient_id: str,
    codes: Sequence[str],
    low: datetime,
    high: datetime,
    tz: str,
    visible: ColumnElement[bool],
) -> list[DayRow]:
    """Count, min, max and mean per code and local day (`tz`) of the visible values in
    [low, high)."""
    ov = observation_values
    join, shown = _visible_values(visible, patient_id)
    day = func.to_char(func.timezone(tz, ov.c.effective), "YYYY-MM-DD").label("day")
    stmt = (
        select(
            ov.c.code,
            day,
            func.count(),
            func.min(ov.c.value),
            func.max(ov.c.value),
            func.avg(ov.c.value).cast(Float),
            func.min(ov.c.unit),
        )
        .select_from(ov.join(resources, join))
        .where(
            shown,
            ov.c.patient_id == patient_id,
            ov.c.code.in_(codes),
            ov.c.effective >= low,
            ov.c.effective < high,
        )
        .group_by(ov.c.code, day)
        .order_by(ov.c.code, day)
    )
    return [DayRow(*m) for m in await conn.execute(stmt)]
