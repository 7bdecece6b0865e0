"""Statements run on the asyncpg connection itself (storage/raw.py) inside SQLAlchemy's
transactions: they commit and roll back with them, savepoints included, and Postgres'
errors come out as SQLAlchemy's. SQLAlchemy's asyncpg adapter sends BEGIN lazily (with its
first statement): a raw write sent first would otherwise commit on its own."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, MetaData, Table, Text, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.db.engine import autocommit_connection
from espace_api.storage import raw

probe = Table("raw_probe", MetaData(), Column("id", Text, primary_key=True))
INSERT = insert(probe)


class Boom(Exception):
    pass


@pytest.fixture
async def engine(app) -> AsyncIterator[AsyncEngine]:
    engine: AsyncEngine = app.state.engine
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS raw_probe (id text PRIMARY KEY)"))
        await conn.execute(text("DELETE FROM raw_probe"))
    yield engine
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE raw_probe"))


async def stored(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [r[0] for r in await conn.execute(text("SELECT id FROM raw_probe ORDER BY id"))]


async def test_a_raw_write_first_in_a_transaction_rolls_back_with_it(engine):
    with pytest.raises(Boom):
        async with engine.begin() as conn:
            await raw.execute(conn, INSERT, {"id": "first"})  # before any SQLAlchemy statement
            raise Boom
    assert await stored(engine) == []
    async with engine.begin() as conn:
        await raw.execute(conn, INSERT, {"id": "kept"})
        await raw.execute_rows(conn, INSERT, [{"id": "kept-2"}, {"id": "kept-3"}])
    assert await stored(engine) == ["kept", "kept-2", "kept-3"]


async def test_a_raw_write_in_a_savepoint_rolls_back_with_it(engine):
    async with engine.begin() as conn:
        await raw.execute(conn, INSERT, {"id": "outer"})
        savepoint = await conn.begin_nested()
        await raw.execute(conn, INSERT, {"id": "inner"})
        seen = await raw.fetch(conn, probe.select(), {})
        assert sorted(r["id"] for r in seen) == ["inner", "outer"]
        await savepoint.rollback()
        async with conn.begin_nested():
            await raw.execute(conn, INSERT, {"id": "released"})
    assert await stored(engine) == ["outer", "released"]


async def test_a_raw_statement_error_is_sqlalchemys(engine):
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await raw.execute(conn, INSERT, {"id": "twice"})
            await raw.execute(conn, INSERT, {"id": "twice"})
    assert await stored(engine) == []


async def test_in_autocommit_each_raw_write_commits_by_itself(engine):
    with pytest.raises(Boom):
        async with autocommit_connection(engine) as conn:
            await raw.execute(conn, INSERT, {"id": "autocommitted"})
            raise Boom
    assert await stored(engine) == ["autocommitted"]


async def test_a_raw_savepoint_is_undone_to_and_released_with_the_transaction(engine):
    async with engine.begin() as conn:
        await raw.savepoint(conn, "probe")  # first: BEGIN goes before it
        await raw.execute(conn, INSERT, {"id": "undone"})
        await raw.rollback_to(conn, "probe")
        await raw.execute(conn, INSERT, {"id": "after"})
    assert await stored(engine) == ["after"]


async def test_a_raw_statement_cut_short_never_returns_its_connection_to_the_pool(engine):
    """A request cancelled (its deadline) while the driver runs a statement: the connection
    is still mid-operation, so the pool must not hand it out again ("another operation is
    in progress" for the next request)."""
    slow = text("SELECT pg_sleep(2)")

    async def read_slowly() -> None:
        async with autocommit_connection(engine) as conn:
            await raw.fetch(conn, slow, {})

    task = asyncio.create_task(read_slowly())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(engine.pool.size() + 1):  # every pooled connection answers at once
        async with autocommit_connection(engine) as conn:
            assert await raw.fetch(conn, text("SELECT 1"), {}) == [(1,)]
