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
from collections.abc import Iterator
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList, ColumnClause
from sqlalchemy.sql.selectable import Select
from sqlalchemy.sql.visitors import replacement_traverse

from espace_api.db.schema import NO_PATIENT, resources
from espace_api.fhir.registry import REGISTRY

#: A cross-patient job on Citus locks rows one at a time (no FOR UPDATE across shards) from a
#: list of this many candidates per row it wants, passing over those another job holds.
CANDIDATES = 20

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
    """`column = value AND clause`, with `column` replaced by `value` in `clause`, and so is
    every column `x` such that each subquery reading x's table has `x = y` among its
    top-level conditions, y being `column` or a column already replaced (the same value
    wherever x is read): the same rows, and on Citus every table of the statement restricted
    to the one shard of `value`, however deep its subqueries correlate."""
    return and_(column == value, replaced(clause, column, value))


def replaced(clause: _CE, column: Any, value: Any) -> _CE:
    """A copy of `clause` with `column`, and the columns always equal to it, replaced by
    `value` (see `pinned`)."""
    same, own = _equal_columns(clause, column)

    def swap(element: Any, **kw: Any) -> Any:
        if any(element is c for c in same):
            return value
        mine = own.get(id(element))  # `own = other`, both equal: keep the own side's filter
        if mine is not None and any(mine is c for c in same):
            return mine == value
        return None

    copy: _CE = replacement_traverse(clause, {}, swap)
    return copy


def _equal_columns(clause: Any, column: Any) -> tuple[list[Any], dict[int, Any]]:
    """`column` and the columns the subqueries of `clause` always equate with it; and, per
    equality condition (by id), its side that belongs to the SELECT's own table."""
    pairs: list[tuple[list[Any], list[tuple[Any, Any]]]] = []
    own: dict[int, Any] = {}
    _selects(clause, [column.table], pairs, own)
    same = [column]
    candidates = {id(c): c for _, eqs in pairs for pair in eqs for c in pair}
    changed = True
    while changed:
        changed = False
        for x in candidates.values():
            if any(x is c for c in same) or not isinstance(x, ColumnClause):
                continue
            reading = [eqs for froms, eqs in pairs if any(x.table is f for f in froms)]
            if reading and all(_tied(x, eqs, same) for eqs in reading):
                same.append(x)
                changed = True
    return same, own


def _selects(
    element: Any,
    enclosing: list[Any],
    out: list[tuple[list[Any], list[tuple[Any, Any]]]],
    own_side: dict[int, Any],
) -> None:
    """Every SELECT under `element` with the tables it reads itself (not those it correlates
    with an enclosing SELECT) and its top-level equalities."""
    if isinstance(element, Select):
        own = [f for f in element.get_final_froms() if not any(f is e for e in enclosing)]
        eqs = list(_equalities(element))
        out.append((own, [(a, b) for _, a, b in eqs]))
        for cond, a, b in eqs:
            for side in (a, b):
                if isinstance(side, ColumnClause) and any(side.table is f for f in own):
                    own_side[id(cond)] = side
        enclosing = enclosing + own
    for child in element.get_children():
        _selects(child, enclosing, out, own_side)


def _equalities(select_: Select[Any]) -> Iterator[tuple[Any, Any, Any]]:
    """The `a = b` conditions among the top-level conditions of a SELECT's WHERE."""
    where = select_.whereclause
    if where is None:
        return
    is_and = isinstance(where, BooleanClauseList) and where.operator is operators.and_
    for cond in where.clauses if is_and else [where]:
        if isinstance(cond, BinaryExpression) and cond.operator is operators.eq:
            yield cond, cond.left, cond.right


def _tied(x: Any, eqs: list[tuple[Any, Any]], same: list[Any]) -> bool:
    """Whether one of `eqs` says x = a member of `same`."""
    for a, b in eqs:
        if (a is x and any(b is c for c in same)) or (b is x and any(a is c for c in same)):
            return True
    return False
