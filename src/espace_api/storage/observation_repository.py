"""SQL of measurements: the `observation_values` rows written with each Observation, the
duplicate check, `$lastn` and the daily summary.

Reads join the values to their current Observation in `resources` and AND the caller's
visibility predicate there (access/policy.py), so a measurement is shown exactly when its
Observation would be.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, Text, and_, delete, func, literal, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ColumnClause

from espace_api.db.schema import (
    audit_events,
    observation_values,
    resource_versions,
    resources,
)
from espace_api.storage import routing
from espace_api.storage.enrolment_repository import copy_rows
from espace_api.storage.repository import SEARCH_INDEX_TABLES

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


def patient_wide(visible: ColumnElement[bool], patient_id: str) -> ColumnElement[bool] | None:
    """The visibility predicate decided once for the patient, when it says nothing about
    the Observation itself: with the row's patient_id replaced by `patient_id`
    (`routing.replaced`), no column of the row is left (e.g. the patient or an operator; not
    a professional, for whom each Observation's MASQUE_PS label counts, nor software, which
    sees what it wrote). None otherwise. The same predicate, evaluated once instead of per
    row: the values need no join to their Observations."""
    pinned = routing.replaced(visible, resources.c.patient_id, literal(patient_id, Text))
    for element in visitors.iterate(pinned):
        if isinstance(element, ColumnClause) and element.table is resources:
            return None
    return pinned


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
    [low, high). When the caller's view depends on the patient only (`patient_wide`), the
    values are read alone (one index range) under that condition; otherwise each is joined
    to its Observation and the predicate decides per row. (A deleted or void Observation
    has no values left: `replace_values`.)"""
    ov = observation_values
    day = func.to_char(func.timezone(tz, ov.c.effective), "YYYY-MM-DD").label("day")
    wide = patient_wide(visible, patient_id)
    if wide is not None:
        source: Any = ov
        shown = wide
    else:
        join, shown = _visible_values(visible, patient_id)
        source = ov.join(resources, join)
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
        .select_from(source)
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


# ---------------------------------------------------------------- bulk ingest (profile/ingest.py)

#: (device, code, effective): one measured value of a patient, the unique key of its row.
Key = tuple[str, str, datetime]


@dataclass(frozen=True)
class Held:
    """A stored Observation holding a measurement, as a replay answers it."""

    id: str
    version_id: int
    last_updated: datetime
    json: str


# One index probe per key (a join on unnest), on the patient's shard on Citus.
_HOLDERS = text(
    "SELECT w.device, w.code, w.effective, v.resource_id"
    " FROM unnest(CAST(:devices AS text[]), CAST(:codes AS text[]),"
    " CAST(:effectives AS timestamptz[])) AS w(device, code, effective)"
    " JOIN observation_values v ON v.patient_id = :patient AND v.device = w.device"
    " AND v.code = w.code AND v.effective = w.effective"
)
# The rows of one patient, in key order (two Bundles racing on the same keys wait for each
# other in the same order: no deadlock); the unique index turns a duplicate into no row.
_INSERT_ONCE = text(
    "INSERT INTO observation_values (patient_id, resource_id, code, effective, value, unit,"
    " device) SELECT :patient, w.* FROM unnest(CAST(:ids AS text[]), CAST(:codes AS text[]),"
    " CAST(:effectives AS timestamptz[]), CAST(:values AS float8[]), CAST(:units AS text[]),"
    " CAST(:devices AS text[])) AS w ON CONFLICT DO NOTHING RETURNING resource_id, code"
)


async def holders(conn: AsyncConnection, patient_id: str, keys: Sequence[Key]) -> dict[Key, str]:
    """The Observation already holding each of these values of the patient (if any)."""
    if not keys:
        return {}
    params = {
        "patient": patient_id,
        "devices": [k[0] for k in keys],
        "codes": [k[1] for k in keys],
        "effectives": [k[2] for k in keys],
    }
    return {(m[0], m[1], m[2]): m[3] for m in await conn.execute(_HOLDERS, params)}


async def visible_observations(
    conn: AsyncConnection, patient_id: str, ids: Sequence[str], visible: ColumnElement[bool]
) -> dict[str, Held]:
    """The current, undeleted Observations of the patient among `ids` that the caller sees."""
    if not ids:
        return {}
    r = resources
    stmt = select(r.c.id, r.c.version_id, r.c.last_updated, r.c.content.cast(Text)).where(
        r.c.resource_type == OBSERVATION,
        r.c.id.in_(sorted(set(ids))),
        r.c.patient_id == patient_id,
        r.c.deleted.is_(False),
        routing.pinned(visible, r.c.patient_id, literal(patient_id, Text)),
    )
    return {m[0]: Held(m[0], m[1], m[2], m[3]) for m in await conn.execute(stmt)}


async def insert_once(
    conn: AsyncConnection, patient_id: str, rows: Sequence[tuple[str, ValueRow]]
) -> set[tuple[str, str]]:
    """Insert the (Observation id, value) rows of one patient, skipping every value whose
    key another row holds; the (id, code) pairs inserted."""
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: (r[1].device, r[1].code, r[1].effective))
    params = {
        "patient": patient_id,
        "ids": [id_ for id_, _ in ordered],
        "codes": [v.code for _, v in ordered],
        "effectives": [v.effective for _, v in ordered],
        "values": [v.value for _, v in ordered],
        "units": [v.unit for _, v in ordered],
        "devices": [v.device for _, v in ordered],
    }
    return {(m[0], m[1]) for m in await conn.execute(_INSERT_ONCE, params)}


async def remove_values(conn: AsyncConnection, patient_id: str, ids: Sequence[str]) -> None:
    """Take back the value rows of Observations that will not be written."""
    if ids:
        ov = observation_values
        await conn.execute(
            delete(ov).where(ov.c.patient_id == patient_id, ov.c.resource_id.in_(list(ids)))
        )


async def write_observations(
    conn: AsyncConnection,
    current: list[dict[str, Any]],
    index: dict[Any, list[dict[str, Any]]],
    audits: list[dict[str, Any]],
) -> None:
    """New Observations with their first version, index rows and audit events: one COPY
    per table (their values are in already)."""
    await copy_rows(conn, resources, current)
    versions = [
        {k: v for k, v in row.items() if k != "created_by"} | {"method": "POST"} for row in current
    ]
    await copy_rows(conn, resource_versions, versions)
    for table in SEARCH_INDEX_TABLES:
        await copy_rows(conn, table, index.get(table, []))
    await copy_rows(conn, audit_events, audits)


async def patients(
    conn: AsyncConnection, patient_ids: Sequence[str], open_to: ColumnElement[bool]
) -> dict[str, str | None]:
    """id -> JSON of the undeleted Patients among `patient_ids` whose space the caller may
    write into (`open_to`: policy.space_open_to), as `service.existing_patient` finds one."""
    if not patient_ids:
        return {}
    r = resources
    wanted = sorted(set(patient_ids))
    stmt = select(r.c.id, r.c.content.cast(Text)).where(
        r.c.resource_type == "Patient",
        r.c.id.in_(wanted),
        r.c.patient_id.in_(wanted),
        r.c.deleted.is_(False),
        open_to,
    )
    return {m[0]: m[1] for m in await conn.execute(stmt)}
