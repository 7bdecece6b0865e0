"""Hot statements run on the asyncpg connection itself, compiled once (issue 14).

SQLAlchemy builds, caches and executes statements with a cost that showed in the read path's
profile (cache keys, parameter processing, greenlet hops). A statement object that lives on
(the repository keeps one per type and policy predicate) is compiled here once for the
connection's dialect, with its constant parameters' values kept; each call binds the
remaining parameters and runs the SQL with asyncpg, inside the SQLAlchemy connection's
transaction when one has started, else on its own (autocommit).
"""

from dataclasses import dataclass
from typing import Any

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
