"""Bench databases: on DATABASE_URL's server, or on one embedded Postgres kept under
BENCH_PG_DIR (default .data/bench-pg) so that a loaded database survives between runs. With
BENCH_EXISTING_DATABASE=1, DATABASE_URL's own database is migrated and used (never dropped):
a Citus cluster's database needs more than CREATE DATABASE (bench/citus.py)."""

import asyncio
import os

import asyncpg
from sqlalchemy.engine import make_url

from espace_api.db.embedded import start_embedded
from espace_api.db.migrate import upgrade


def server_url() -> str:
    """The Postgres server the bench uses."""
    return os.environ.get("DATABASE_URL") or start_embedded(
        os.environ.get("BENCH_PG_DIR") or ".data/bench-pg"
    )


def existing() -> bool:
    """Whether the bench runs in DATABASE_URL's own database (BENCH_EXISTING_DATABASE=1)."""
    return os.environ.get("BENCH_EXISTING_DATABASE") == "1"


def database(name: str) -> str:
    """URL of database `name` on the bench server, created if missing and migrated."""
    server = server_url()
    if existing():
        upgrade(server)
        return server
    return database_on(server, name)


def database_on(server: str, name: str) -> str:
    """URL of database `name` on `server`, created if missing and migrated."""
    admin = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)

    async def ensure() -> None:
        conn = await asyncpg.connect(admin)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(ensure())
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url


def drop(url: str) -> None:
    """Drop the database of `url` (a fresh bench database, once its scenario is over)."""
    if existing():
        return
    name = make_url(url).database
    admin = (
        make_url(server_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    )

    async def run() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(run())
