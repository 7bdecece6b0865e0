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
Citus and transactions keep the general path (resources/service.run_search). `VERIFY` (the
test suite sets it) rebuilds every planned search and checks the SQL and the values bound.
"""

import itertools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.fhir.registry import ResourceType
from espace_api.fhir.search import SearchRequest
from espace_api.storage import raw, search_sql

#: Rebuild every planned search and compare (tests): a shape that misses a difference the
#: SQL depends on fails there instead of answering with another search's SQL.
VERIFY = False
_MAX = 512
_MAX_STRUCTURES = 64

# Where the statement reads a policy predicate: the main table (None) or a type's alias.
Slot = tuple[ResourceType | None, Table]


@dataclass(frozen=True)
class _Statement:
    """SQL with positional parameters: each position's name, the values fixed by the shape,
    and per policy slot, the names its predicate's parameters fill (in cache-key order)."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]
    policies: tuple[tuple[str | None, ...], ...]

    def args(self, values: dict[str, Any], predicates: list[ColumnElement[bool]]) -> list[Any]:
        bound = dict(self.fixed)
        bound.update(values)
        for names, predicate in zip(self.policies, predicates, strict=True):
            for name, param in zip(names, _cache_key(predicate).bindparams, strict=True):
                if name is None:
                    continue
                value = param.effective_value
                if param.expanding:  # rendered as one parameter per item (of each tuple)
                    for i, item in enumerate(value, 1):
                        if isinstance(item, tuple):
                            bound.update({f"{name}_{i}_{k}": v for k, v in enumerate(item, 1)})
                        else:
                            bound[f"{name}_{i}"] = item
                else:
                    bound[name] = value
        return [bound[n] for n in self.names]


@dataclass(frozen=True)
class _Plan:
    """The statements of one shape and predicate structure."""

    page: _Statement  # with the total: count(*) over ()
    bare: _Statement  # without it (_total=none)
    count: _Statement  # the total alone, for an empty page


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
        _remember(_SLOTS, shape, policies.slots)
        _remember(_PLANS, (shape, *map(_structure, predicates)), plan)
    else:
        predicates = policies.replay(slots)
        key = (shape, *map(_structure, predicates))
        found = _PLANS.get(key)
        if found is None or VERIFY:
            fresh = Policies(policies.policy_for, policies.type_policy)
            plan = _build(conn, req, fresh)
            if found is None:
                _remember(_PLANS, key, plan)
            else:
                _check(found, plan, slots, fresh, values, predicates)
        else:
            plan = found
    driver = raw.driver(conn)
    stmt = plan.page if total else plan.bare
    found_rows = await driver.fetch(stmt.sql, *stmt.args(values, predicates))
    rows = [(m[0], m[1], m[2] or None) for m in found_rows]
    if not total:
        return rows, None
    if found_rows:
        return rows, found_rows[0][3]
    return [], await driver.fetchval(plan.count.sql, *plan.count.args(values, predicates))


def _build(conn: AsyncConnection, req: SearchRequest, policies: Policies) -> _Plan:
    """The statements of `req`, built and compiled (the policies record their slots)."""
    page, count = search_sql.search_statements(req, policies.main, policies.of_type, named=True)
    return _plan(conn, page, count, policies)


def _plan(conn: AsyncConnection, page: Select[Any], count: Select[Any], p: Policies) -> _Plan:
    return _Plan(
        _statement(conn, page.add_columns(func.count().over()), p.predicates),
        _statement(conn, page, p.predicates),
        _statement(conn, count, p.predicates),
    )


def _statement(
    conn: AsyncConnection, stmt: Select[Any], predicates: list[ColumnElement[bool]]
) -> _Statement:
    c = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    policies = tuple(
        # None: not in the SQL (a predicate under `false()` is left out of a statement)
        tuple(c.bind_names.get(param) for param in _cache_key(p).bindparams)
        for p in predicates
    )
    return _Statement(str(c), tuple(c.positiontup or ()), dict(c.params), policies)


def _check(
    plan: _Plan,
    fresh: _Plan,
    slots: list[Slot],
    policies: Policies,
    values: dict[str, Any],
    predicates: list[ColumnElement[bool]],
) -> None:
    """The plan binds what a fresh build of this very search binds (VERIFY)."""
    assert slots == policies.slots, "a search shape read other policies than its plan's"
    for ours, theirs in ((plan.page, fresh.page), (plan.bare, fresh.bare)):
        assert ours.sql == theirs.sql, "a search plan's SQL differs from a fresh build's"
        assert ours.args(values, predicates) == [theirs.fixed[n] for n in theirs.names], (
            "a search plan binds other values than a fresh build"
        )


def _cache_key(predicate: ColumnElement[bool]) -> Any:
    """SQLAlchemy's cache key of a predicate (kept on the object once computed)."""
    key = predicate._generate_cache_key()
    assert key is not None, "a policy predicate without a cache key"
    return key


def _structure(predicate: ColumnElement[bool]) -> tuple[int, tuple[int, ...]]:
    """What a predicate's SQL depends on: its cache key's structure (as a small number: the
    key is a big tuple, hashed once per predicate) and the length of each list it binds (a
    list's items are separate parameters)."""
    hit = _STRUCTURES.get(id(predicate))
    if hit is not None and hit[0] is predicate:
        return hit[1]
    key = _cache_key(predicate)
    number = _KEYS.get(key.key)
    if number is None:
        number = _KEYS[key.key] = next(_NUMBERS)
    lengths = tuple(len(p.effective_value) for p in key.bindparams if p.expanding)
    if len(_STRUCTURES) >= _MAX_STRUCTURES:
        _STRUCTURES.clear()  # predicates are big trees: keep a few (this second's callers)
    if len(_KEYS) >= _MAX:
        _KEYS.clear()  # numbers handed out are never handed out again
    _STRUCTURES[id(predicate)] = (predicate, (number, lengths))
    return number, lengths


_STRUCTURES: dict[int, tuple[ColumnElement[bool], tuple[int, tuple[int, ...]]]] = {}
_KEYS: dict[Any, int] = {}
_NUMBERS = itertools.count()


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if key not in cache and len(cache) >= _MAX:
        cache.pop(next(iter(cache)))
    cache[key] = value
