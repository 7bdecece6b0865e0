"""Hot statements run on the asyncpg connection itself, compiled once (issue 14).

SQLAlchemy builds, caches and executes statements with a cost that showed in the read path's
profile (cache keys, parameter processing, greenlet hops). A statement object that lives on
(the repository keeps one per type and policy predicate) is compiled here once for the
connection's dialect, with its constant parameters' values kept; each call binds the
remaining parameters and runs the SQL with asyncpg, inside the SQLAlchemy connection's
transaction when one has started, else on its own (autocommit).
"""

import itertools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable


@dataclass(frozen=True)
class Compiled:
    """SQL text with positional parameters, their names, and the constant values."""

    sql: str
    names: tuple[str, ...]
    values: dict[str, Any]


_COMPILED: dict[int, tuple[Executable, Compiled]] = {}
_MAX = 512


def compiled(stmt: Executable, conn: AsyncConnection) -> Compiled:
    """`stmt` compiled for the connection's dialect (once per statement object)."""
    hit = _COMPILED.get(id(stmt))
    if hit is not None and hit[0] is stmt:
        return hit[1]
    c = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})  # type: ignore[attr-defined]
    out = Compiled(str(c), tuple(c.positiontup or ()), dict(c.params))
    if len(_COMPILED) >= _MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[id(stmt)] = (stmt, out)
    return out


def option(conn: AsyncConnection, name: str) -> Any:
    """An execution option of `conn` (None when unset)."""
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    return options.get(name)


def autocommit(conn: AsyncConnection) -> bool:
    """Whether each statement on `conn` commits by itself (AUTOCOMMIT isolation)."""
    return bool(option(conn, "isolation_level") == "AUTOCOMMIT")


async def execute_rows(conn: AsyncConnection, stmt: Executable, rows: list[dict[str, Any]]) -> None:
    """Run `stmt` once per row of named parameters (missing names: None)."""
    c = compiled(stmt, conn)
    on = driver(conn)
    args = [[row.get(n) for n in c.names] for row in rows]
    if len(args) == 1:
        await on.execute(c.sql, *args[0])
    else:
        await on.executemany(c.sql, args)


async def fetchrow(conn: AsyncConnection, stmt: Executable, params: dict[str, Any]) -> Any:
    """The first row of `stmt` with `params` bound (an asyncpg Record), or None."""
    c = compiled(stmt, conn)
    args = [params[n] if n in params else c.values[n] for n in c.names]
    return await driver(conn).fetchrow(c.sql, *args)


def driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a started AsyncConnection (no await, no greenlet)."""
    sync = conn.sync_connection
    assert sync is not None, "the AsyncConnection has not started"
    driver = sync.connection.driver_connection
    assert driver is not None
    return driver


# ---------------------------------------------------------------- statements with policies

#: Check every reuse of a statement compiled for another caller against a fresh compile
#: (the test suite sets it): SQL and every value bound must be the same.
VERIFY = False
_MAX_STRUCTURES = 64


@dataclass(frozen=True)
class Bound:
    """A statement compiled once for every caller whose access-policy predicates have one
    structure (`structure`): SQL with positional parameters, each position's name, the
    values fixed by the statement, and per predicate the names its parameters fill (in its
    cache key's order; None: not in the SQL). Each call binds its own values and those of its
    caller's predicates, read from their SQLAlchemy cache keys (issue 14: compiling a
    statement per caller cost 40 % of a worker when 200 patients read)."""

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

    def check(self, fresh: "Bound", values: dict[str, Any], predicates: list[Any]) -> None:
        """This statement binds what `fresh`, compiled for these very predicates, binds."""
        assert self.sql == fresh.sql, "a reused statement's SQL differs from a fresh compile's"
        expected = [values[n] if n in values else fresh.fixed[n] for n in fresh.names]
        assert self.args(values, predicates) == expected, (
            "a reused statement binds other values than a fresh compile"
        )


def bound(conn: AsyncConnection, stmt: Executable, predicates: list[ColumnElement[bool]]) -> Bound:
    """`stmt`, which embeds `predicates`, compiled for the connection's dialect."""
    c = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})  # type: ignore[attr-defined]
    policies = tuple(
        # None: not in the SQL (a predicate under `false()` is left out of a statement)
        tuple(c.bind_names.get(param) for param in _cache_key(p).bindparams)
        for p in predicates
    )
    return Bound(str(c), tuple(c.positiontup or ()), dict(c.params), policies)


def _cache_key(predicate: ColumnElement[bool]) -> Any:
    """SQLAlchemy's cache key of a predicate (kept on the object once computed)."""
    key = predicate._generate_cache_key()
    assert key is not None, "a policy predicate without a cache key"
    return key


def structure(predicate: ColumnElement[bool]) -> tuple[int, tuple[int, ...]]:
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


def remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Keep `value` in a cache of at most _MAX entries (the oldest goes first)."""
    if key not in cache and len(cache) >= _MAX:
        cache.pop(next(iter(cache)))
    cache[key] = value
