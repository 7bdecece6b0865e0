"""Fresh migrated databases on the test Postgres server (one per session, or per suite that
must not share data, such as the fuzzing run)."""

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from sqlalchemy.engine import make_url

from espace_api.db.embedded import start_embedded
from espace_api.db.migrate import upgrade


def server_url() -> str:
    """DATABASE_URL, or an embedded Postgres in a temporary directory."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(tempfile.mkdtemp(prefix="espace-test-pg-"))


def _asyncpg_dsn(url: str) -> str:
    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new empty database on `server`, migrated to the latest schema; dropped after."""
    name = f"espace_test_{uuid.uuid4().hex[:10]}"
    admin = _asyncpg_dsn(server)

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
