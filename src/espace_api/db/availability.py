"""Which errors mean "the database is unreachable right now" (503 and retry, not a bug).

A Postgres restart, failover or network cut shows up in many forms depending on where the
request was: a refused or timed-out connect (OSError, TimeoutError from asyncpg), a
server that is starting or shutting down (SQLSTATE 57P01/57P02/57P03), a connection that
died under a statement (class 08, asyncpg's "connection is closed"), SQLAlchemy's wrapped
forms of these (`connection_invalidated`), or a pool that could not hand out a connection
in time. Raw asyncpg errors are seen too: hot statements run on the driver connection
(storage/raw.py) and connects are not wrapped by SQLAlchemy's asyncpg adapter.
"""

import socket

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATEs of a server that cannot serve now: connection exceptions (class 08), admin or
# crash shutdown and "starting up" (57P01-57P03), too many connections (53300).
_STATES = ("57P01", "57P02", "57P03", "53300")
_CLOSED = ("connection is closed", "connection was closed")
_CONNECT_MODULE = "asyncpg/connect_utils.py"


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) says the database cannot be reached now."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if _one(e):
            return True
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return False


def _one(e: BaseException) -> bool:
    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    if isinstance(e, PoolTimeout | ConnectionError | TimeoutError | socket.gaierror):
        return True
    if isinstance(e, OSError) and _in_driver_connect(e):
        return True  # e.g. a Unix socket that is gone while Postgres restarts
    state = getattr(e, "sqlstate", None)
    if isinstance(state, str) and (state.startswith("08") or state in _STATES):
        return True
    # asyncpg's InterfaceError and the SQLAlchemy adapter's (both by that name).
    interface = any(c.__name__ == "InterfaceError" for c in type(e).__mro__)
    return interface and any(m in str(e) for m in _CLOSED)


def _in_driver_connect(e: BaseException) -> bool:
    """Whether `e` was raised while asyncpg opened a connection (not, say, by a blob file)."""
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(_CONNECT_MODULE):
            return True
        tb = tb.tb_next
    return False
