"""Test fixtures: a fresh, migrated Postgres database and the app served over ASGI.

With DATABASE_URL set, a new database is created on that server for the run and dropped
after; without it, an embedded Postgres (pgserver) is started in a temporary directory. With
TEST_EXISTING_DATABASE=1, DATABASE_URL's own database is migrated and used as it is (kept
after the run): for a server where a new database needs more than CREATE DATABASE, such as a
Citus cluster (`make test-citus`).
"""

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from espace_api.config import Settings
from espace_api.db.embedded import start_embedded
from espace_api.db.migrate import upgrade
from espace_api.main import create_app
from tests.support.auth import AuthFactory

BASE = "http://test"


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(tempfile.mkdtemp(prefix="espace-test-pg-"))


def _asyncpg_dsn(url: str) -> str:
    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A new empty database, migrated to the latest schema."""
    server = _server_url()
    if os.environ.get("TEST_EXISTING_DATABASE") == "1":
        upgrade(server)
        yield server
        return
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
    upgrade(url)
    yield url
    asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, base_url=BASE)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


@pytest.fixture(scope="session")
def auth(app: object) -> AuthFactory:
    return AuthFactory(app)


@pytest.fixture
def now(app: FastAPI) -> datetime:
    """The app clock's current time (token assertions are dated with it)."""
    return app.state.clock.now()
