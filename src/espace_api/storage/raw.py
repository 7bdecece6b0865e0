"""Hot statements run on the asyncpg connection itself, compiled once (issue 14).

SQLAlchemy builds, caches and executes statements with a cost that showed in the read path's
profile (cache keys, parameter processing, greenlet hops). A statement object that lives on
(the repository keeps one per type and policy predicate) is compiled here once for the
connection's dialect, with its constant parameters' values kept; each call binds the
remaining parameters and runs the SQL with asyncpg, inside the SQLAlchemy connection's
transaction when it is in one, else on its own (autocommit).

SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement; `_begun` sends it
first when a raw statement comes before any SQLAlchemy one (a private method of the adapter:
pyproject.toml pins the SQLAlchemy versions this was checked with). Errors of Postgres come
out as SQLAlchemy's (an IntegrityError is a 409 either way).
"""

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import ARRAY, ColumnElement
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

T = TypeVar("T")


@dataclass(frozen=True)
class Compiled:
    """SQL text with positional parameters, their names, and the constant values."""

    sql: str
    names: tuple[str, ...]
    values: dict[str, Any]
    # The dialect's conversion of a parameter's value, where its type has one (JSONB: the
    # engine's JSON serializer).
    processors: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    def args(self, params: dict[str, Any]) -> list[Any]:
        """The positional arguments: `params`, else the constant values (else None)."""
        out = []
        for name in self.names:
            value = params[name] if name in params else self.values.get(name)
            process = self.processors.get(name)
            out.append(process(value) if process is not None and value is not None else value)
        return out


_COMPILED: dict[int, tuple[Executable, Compiled]] = {}
_MAX = 512


def compiled(stmt: Executable, conn: AsyncConnection) -> Compiled:
    """`stmt` compiled for the connection's dialect (once per statement object)."""
    hit = _COMPILED.get(id(stmt))
    if hit is not None and hit[0] is stmt:
        return hit[1]
    out = _compile(stmt, conn)[1]
    remember(_COMPILED, id(stmt), (stmt, out))
    return out


def _compile(stmt: Executable, conn: AsyncConnection) -> tuple[Any, Compiled]:
    """SQLAlchemy's compiled form of `stmt` for the connection's dialect, and ours."""
    c = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})  # type: ignore[attr-defined]
    return c, Compiled(str(c), tuple(c.positiontup or ()), dict(c.params), _processors(c, conn))


def _processors(c: Any, conn: AsyncConnection) -> dict[str, Callable[[Any], Any]]:
    """The conversions a compiled statement's parameters need, by name. An array of items
    that need none is passed as it is (asyncpg encodes lists): SQLAlchemy's ARRAY would copy
    it item by item (an index row's columns, a create's audit rows)."""
    out = {}
    for param, name in c.bind_names.items():
        process = c._bind_processors.get(name)
        if not callable(process):
            continue
        if isinstance(param.type, ARRAY) and not param.type.item_type._cached_bind_processor(
            conn.dialect
        ):
            continue
        out[name] = process
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
    driver = await _begun(conn)
    args = [c.args(row) for row in rows]
    if len(args) == 1:
        await _translated(conn, c.sql, driver.execute(c.sql, *args[0]))
    else:
        await _translated(conn, c.sql, driver.executemany(c.sql, args))


async def fetchrow(conn: AsyncConnection, stmt: Executable, params: dict[str, Any]) -> Any:
    """The first row of `stmt` with `params` bound (an asyncpg Record), or None."""
    c = compiled(stmt, conn)
    driver = await _begun(conn)
    return await _translated(conn, c.sql, driver.fetchrow(c.sql, *c.args(params)))


async def fetch(conn: AsyncConnection, stmt: Executable, params: dict[str, Any]) -> list[Any]:
    """Every row of `stmt` with `params` bound (asyncpg Records)."""
    c = compiled(stmt, conn)
    driver = await _begun(conn)
    rows: list[Any] = await _translated(conn, c.sql, driver.fetch(c.sql, *c.args(params)))
    return rows


async def execute(conn: AsyncConnection, stmt: Executable, params: dict[str, Any]) -> None:
    """Run `stmt` once with `params` bound (a write in the connection's transaction)."""
    c = compiled(stmt, conn)
    driver = await _begun(conn)
    await _translated(conn, c.sql, driver.execute(c.sql, *c.args(params)))


async def savepoint(conn: AsyncConnection, name: str) -> None:
    """SAVEPOINT `name` in the connection's transaction (one round trip, no SQLAlchemy
    bookkeeping); it is released when the transaction ends."""
    await _command(conn, f"SAVEPOINT {name}", name)


async def rollback_to(conn: AsyncConnection, name: str) -> None:
    """Undo what the transaction did since SAVEPOINT `name` (the savepoint stays)."""
    await _command(conn, f"ROLLBACK TO SAVEPOINT {name}", name)


async def _command(conn: AsyncConnection, sql: str, name: str) -> None:
    assert name.isidentifier(), "a savepoint's name is a constant identifier"
    driver = await _begun(conn)
    await _translated(conn, sql, driver.execute(sql))


async def _begun(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, with BEGIN sent when SQLAlchemy's connection is
    in a transaction that the adapter has not begun yet (it begins at its first statement):
    a raw statement then belongs to that transaction, commits and rolls back with it."""
    sync = conn.sync_connection
    assert sync is not None, "the AsyncConnection has not started"
    if sync.in_transaction():
        adapter = sync.connection.dbapi_connection
        if getattr(adapter, "_transaction", True) is None:  # SQLAlchemy 2.1's asyncpg adapter
            await adapter._start_transaction()  # type: ignore[union-attr]  # no-op in AUTOCOMMIT
    return driver(conn)


async def _translated(conn: AsyncConnection, sql: str, call: Awaitable[Any]) -> Any:
    """Await `call`; a Postgres error is raised as SQLAlchemy raises it (IntegrityError,
    DBAPIError with its SQLSTATE), without the parameters (they may be health data)."""
    try:
        return await call
    except asyncpg.PostgresError as error:
        dbapi = conn.dialect.loaded_dbapi
        try:
            conn.sync_connection.connection.dbapi_connection._handle_exception(error)  # type: ignore[union-attr]
        except dbapi.Error as adapted:
            raise DBAPIError.instance(
                sql, None, adapted, dbapi.Error, hide_parameters=True, dialect=conn.dialect
            ) from error
        raise


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
    structure (`structure`), and per predicate the names its parameters fill (in its cache
    key's order; None: not in the SQL). Each call binds its own values and those of its
    caller's predicates, read from their SQLAlchemy cache keys (issue 14: compiling a
    statement per caller cost 40 % of a worker when 200 patients read)."""

    statement: Compiled
    policies: tuple[tuple[str | None, ...], ...]

    def args(self, values: dict[str, Any], predicates: list[ColumnElement[bool]]) -> list[Any]:
        bound = dict(values)
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
        return self.statement.args(bound)

    def check(self, fresh: "Bound", values: dict[str, Any], predicates: list[Any]) -> None:
        """This statement binds what `fresh`, compiled for these very predicates, binds."""
        ours, theirs = self.statement, fresh.statement
        assert ours.sql == theirs.sql, "a reused statement's SQL differs from a fresh compile's"
        assert self.args(values, predicates) == theirs.args(values), (
            "a reused statement binds other values than a fresh compile"
        )


async def fetch_bound(
    conn: AsyncConnection,
    stmt: Bound,
    values: dict[str, Any],
    predicates: list[ColumnElement[bool]],
) -> list[Any]:
    """Every row of a Bound statement with `values` and the predicates' values bound."""
    sql = stmt.statement.sql
    on = await _begun(conn)
    rows: list[Any] = await _translated(conn, sql, on.fetch(sql, *stmt.args(values, predicates)))
    return rows


def bound(conn: AsyncConnection, stmt: Executable, predicates: list[ColumnElement[bool]]) -> Bound:
    """`stmt`, which embeds `predicates`, compiled for the connection's dialect."""
    c, statement = _compile(stmt, conn)
    policies = tuple(
        # None: not in the SQL (a predicate under `false()` is left out of a statement)
        tuple(c.bind_names.get(param) for param in _cache_key(p).bindparams)
        for p in predicates
    )
    return Bound(statement, policies)


def reused(
    cache: dict[Any, T], key: Any, build: Callable[[], T], check: Callable[[T, T], None]
) -> T:
    """What `cache` keeps under `key` (a statement compiled for another caller or request),
    else `build()`, kept. With VERIFY, built afresh anyway and `check(kept, fresh)`."""
    found = cache.get(key)
    if found is not None and not VERIFY:
        return found
    fresh = build()
    if found is None:
        remember(cache, key, fresh)
        return fresh
    check(found, fresh)
    return found


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
