"""Async engine creation from settings."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from espace_api.config import Settings


def async_url(url: str) -> str:
    """Turn any postgres URL into the SQLAlchemy asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def make_engine(settings: Settings) -> AsyncEngine:
    """An engine for the configured database (which must already be resolved).

    Connects and pool waits are bounded (`DB_CONNECT_TIMEOUT_SECONDS`,
    `DB_POOL_TIMEOUT_SECONDS`): with the database down a request fails fast (503, see
    db/availability.py) instead of waiting. A pooled connection whose socket has closed
    (the server restarted) is replaced on checkout, without the round trip of a pre-ping.
    """
    if not settings.database_url:
        raise RuntimeError("database_url is not resolved; call db.embedded.ensure_database()")
    engine = create_async_engine(
        async_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=False,
        # No JIT: every query here is short, and a pessimistic estimate (e.g. a LIMIT 1 per
        # code of Observation/$lastn, 0.1 ms of work) otherwise pays ~200 ms of compilation.
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            "server_settings": {"jit": "off"},
        },
        json_serializer=_json,  # JSONB parameters (resource content) with orjson
    )
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    return engine


@asynccontextmanager
async def autocommit_connection(
    engine: AsyncEngine, **options: Any
) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which each statement commits by itself (a single read or
    write: no BEGIN/COMMIT round trips); `options` are further execution options."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT", **options)


def _drop_closed(_dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Checkout hook: a connection the server closed (restart, failover, idle kill) is
    discarded and the pool opens a new one. asyncpg marks it closed as soon as the socket
    ends, so this costs no round trip; it matters because the hot statements run on the
    driver connection (storage/raw.py), where SQLAlchemy does not see the disconnect."""
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("pooled connection was closed by the server")


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
