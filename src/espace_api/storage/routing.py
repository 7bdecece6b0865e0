"""Routing a read by id to one shard on Citus (docs/citus.md).

On a Citus database the tables of patient data are distributed on `patient_id`: a statement
that names the patient runs on one shard (a router query), one that does not runs on every
shard, and a row lock (FOR UPDATE) is refused on a multi-shard statement. A read by id comes
with no patient, so on Citus it first finds the row's patient (`patient_of`; the Patient
resource's patient is its own id), then reads with `patient_id = ...`; a locking read first
locks the row by its key (`lock`). Citus plans a statement on one shard only when every
distributed table in it, subqueries included, is restricted to that shard: `pinned` rewrites
the policy's subqueries, correlated on the row's patient_id, to name the patient itself. On
plain PostgreSQL nothing changes: `distributed()` is False and the read stays one statement.
"""

import weakref
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.visitors import replacement_traverse

from espace_api.db.schema import NO_PATIENT, resources
from espace_api.fhir.registry import REGISTRY

_CE = TypeVar("_CE", bound=ColumnElement[Any])
_DISTRIBUTED: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


async def distributed(conn: AsyncConnection) -> bool:
    """Whether `conn`'s database has the citus extension (asked once per engine)."""
    engine = conn.sync_engine
    found = _DISTRIBUTED.get(engine)
    if found is None:
        probe = text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
        found = (await conn.execute(probe)).first() is not None
        _DISTRIBUTED[engine] = found
    return found


async def patient_of(conn: AsyncConnection, resource_type: str, id_: str) -> str | None:
    """The patient_id stored with a resource (NO_PATIENT for none), None if it does not
    exist; without a query for a Patient (its own id) and a directory type (NO_PATIENT)."""
    if resource_type == "Patient":
        return id_
    rtype = REGISTRY.get(resource_type)
    if rtype is not None and not rtype.in_patient_compartment:
        return NO_PATIENT  # directory resources (Practitioner, Organization) have none
    r = resources
    stmt = select(r.c.patient_id).where(r.c.resource_type == resource_type, r.c.id == id_)
    found: str | None = (await conn.execute(stmt)).scalar_one_or_none()
    return found


async def lock(conn: AsyncConnection, resource_type: str, id_: str, patient_id: str) -> None:
    """Lock a resource's current row (FOR UPDATE) by its full key: one shard."""
    r = resources
    stmt = (
        select(r.c.version_id)
        .where(r.c.patient_id == patient_id, r.c.resource_type == resource_type, r.c.id == id_)
        .with_for_update()
    )
    await conn.execute(stmt)


def pinned(clause: ColumnElement[bool], column: Any, value: Any) -> ColumnElement[bool]:
    """`column = value AND clause`, with every other use of `column` in `clause` (the
    subqueries correlated on it) replaced by `value`: the same rows, and on Citus every
    table of the statement restricted to the one shard of `value`."""
    return and_(column == value, replaced(clause, column, value))


def replaced(clause: _CE, column: Any, value: Any) -> _CE:
    """A copy of `clause` with `column` replaced by `value`."""

    def swap(element: Any, **kw: Any) -> Any:
        return value if element is column else None

    copy: _CE = replacement_traverse(clause, {}, swap)
    return copy
