"""Type searches compiled once per shape and run on the driver (issue 14).

Building a search's SQLAlchemy statement, its cache key and its compiled form cost about half
of a worker's time per ITI-67 search. A search's SQL depends only on its shape
(`search_sql.shape`: the parameters, modifiers, chains, value forms and sort) and on the
structure of the access-policy predicates it embeds; the request's values are named
parameters, and the predicates' values (the caller, the moment) are read from their
SQLAlchemy cache keys. So the statements are built and compiled once per shape and predicate
structure, and each search binds its own values: those of its request, and those of the
predicates built for its caller (access/policy.visible). Two callers of one shape share the
plan and never each other's values.

Runs on the asyncpg connection of an AUTOCOMMIT connection (reads: nothing to be inside);
Citus and transactions keep the general path (resources/service.run_search). `raw.VERIFY`
(the test suite sets it) rebuilds every planned search and checks the SQL and the values
bound.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.fhir.registry import ResourceType
from espace_api.fhir.search import SearchRequest
from espace_api.storage import raw, search_sql

# Where the statement reads a policy predicate: the main table (None) or a type's alias.
Slot = tuple[ResourceType | None, Table]


@dataclass(frozen=True)
class _Plan:
    """The statements of one shape and predicate structure."""

    page: raw.Bound  # with the total: count(*) over ()
    bare: raw.Bound  # without it (_total=none)
    count: raw.Bound  # the total alone, for an empty page


class Policies:
    """The policy callbacks of a search, recording which slots the statement reads."""

    def __init__(self, policy_for: search_sql.PolicyFn, type_policy: search_sql.TypePolicy):
        self.policy_for, self.type_policy = policy_for, type_policy
        self.slots: list[Slot] = []
        self.predicates: list[ColumnElement[bool]] = []

    def main(self, table: Table) -> ColumnElement[bool]:
        return self._add((None, table), self.policy_for(table))

    def of_type(self, rtype: ResourceType, table: Table) -> ColumnElement[bool]:
        return self._add((rtype, table), self.type_policy(rtype, table))

    def _add(self, slot: Slot, predicate: ColumnElement[bool]) -> ColumnElement[bool]:
        self.slots.append(slot)
        self.predicates.append(predicate)
        return predicate

    def replay(self, slots: list[Slot]) -> list[ColumnElement[bool]]:
        """The predicates of `slots` for this search's caller (cached per second)."""
        return [self.main(t) if rtype is None else self.of_type(rtype, t) for rtype, t in slots]


_SLOTS: dict[search_sql.Shape, list[Slot]] = {}
_PLANS: dict[tuple[Any, ...], _Plan] = {}


async def run(
    conn: AsyncConnection,
    req: SearchRequest,
    policies: Policies,
    *,
    total: bool,
) -> tuple[list[tuple[str, str, str | None]], int | None]:
    """What repository.run_search answers, from the plan of the search's shape."""
    shape, values = search_sql.shape(req)
    slots = _SLOTS.get(shape)
    if slots is None:
        plan = _build(conn, req, policies)
        predicates = policies.predicates
        raw.remember(_SLOTS, shape, policies.slots)
        raw.remember(_PLANS, (shape, *map(raw.structure, predicates)), plan)
    else:
        predicates = policies.replay(slots)
        fresh = Policies(policies.policy_for, policies.type_policy)
        plan = raw.reused(
            _PLANS,
            (shape, *map(raw.structure, predicates)),
            lambda: _build(conn, req, fresh),
            lambda kept, built: _check(kept, built, slots, fresh, values, predicates),
        )
    found_rows = await raw.fetch_bound(conn, plan.page if total else plan.bare, values, predicates)
    rows = [(m[0], m[1], m[2] or None) for m in found_rows]
    if not total:
        return rows, None
    if found_rows:
        return rows, found_rows[0][3]
    return [], (await raw.fetch_bound(conn, plan.count, values, predicates))[0][0]


def _build(conn: AsyncConnection, req: SearchRequest, policies: Policies) -> _Plan:
    """The statements of `req`, built and compiled (the policies record their slots)."""
    page, count = search_sql.search_statements(req, policies.main, policies.of_type, named=True)
    return _plan(conn, page, count, policies)


def _plan(conn: AsyncConnection, page: Select[Any], count: Select[Any], p: Policies) -> _Plan:
    return _Plan(
        raw.bound(conn, page.add_columns(func.count().over()), p.predicates),
        raw.bound(conn, page, p.predicates),
        raw.bound(conn, count, p.predicates),
    )


def _check(
    plan: _Plan,
    fresh: _Plan,
    slots: list[Slot],
    policies: Policies,
    values: dict[str, Any],
    predicates: list[ColumnElement[bool]],
) -> None:
    """The plan binds what a fresh build of this very search binds (raw.VERIFY)."""
    assert slots == policies.slots, "a search shape read other policies than its plan's"
    for ours, theirs in ((plan.page, fresh.page), (plan.bare, fresh.bare)):
        ours.check(theirs, values, predicates)
