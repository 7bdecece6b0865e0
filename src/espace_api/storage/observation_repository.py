"""SQL of measurements: the `observation_values` rows written with each Observation, the
duplicate check, `$lastn` and the daily summary.

Reads join the values to their current Observation in `resources` and AND the caller's
visibility predicate there (access/policy.py), so a measurement is shown exactly when its
Observation would be.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Float, Text, and_, delete, func, select, true
from sqlalchemy.dialects.postgresql import array, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import observation_values, resources

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


def _visible_values(visible: ColumnElement[bool]) -> tuple[ColumnElement[bool], ...]:
    """Join conditions from a value row to its current, visible Observation."""
    ov, r = observation_values, resources
    return (
        r.c.resource_type == OBSERVATION,
        r.c.id == ov.c.resource_id,
        r.c.patient_id == ov.c.patient_id,
        r.c.deleted.is_(False),
        visible,
    )


async def lastn(
    conn: AsyncConnection,
    patient_id: str,
    codes: Sequence[str],
    max_per_code: int,
    visible: ColumnElement[bool],
) -> list[tuple[str, str]]:
    """(id, JSON) of the latest `max_per_code` visible Observations per code, newest first
    within each code: a LATERAL index range (patient, code, effective desc) per code, with
    the visibility predicate written once."""
    if not codes:
        return []
    ov, r = observation_values, resources
    wanted = (
        func.unnest(array(list(codes), type_=Text))
        .table_valued("code", with_ordinality="rank")
        .render_derived(name="wanted")
    )
    latest = (
        select(ov.c.effective, r.c.id, r.c.content.cast(Text).label("json"))
        .select_from(ov.join(r, and_(*_visible_values(visible))))
        .where(ov.c.patient_id == patient_id, ov.c.code == wanted.c.code)
        .order_by(ov.c.effective.desc())
        .limit(max_per_code)
        .lateral("latest")
    )
    stmt = (
        select(latest.c.id, latest.c.json)
        .select_from(wanted.join(latest, true()))
        .order_by(wanted.c.rank, latest.c.effective.desc())
    )
    seen: set[str] = set()
    out = []
    for id_, json in await conn.execute(stmt):
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
        .select_from(ov.join(resources, and_(*_visible_values(visible))))
        .where(
            ov.c.patient_id == patient_id,
            ov.c.code.in_(codes),
            ov.c.effective >= low,
            ov.c.effective < high,
        )
        .group_by(ov.c.code, day)
        .order_by(ov.c.code, day)
    )
    return [DayRow(*m) for m in await conn.execute(stmt)]
