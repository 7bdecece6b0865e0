"""Test fixtures: a fresh, migrated Postgres database and the app served over ASGI.

With DATABASE_URL set, a new database is created on that server for the run and dropped
after; without it, an embedded Postgres (pgserver) is started in a temporary directory. With
TEST_EXISTING_DATABASE=1, DATABASE_URL's own database is migrated and used as it is (kept
after the run): for a server where a new database needs more than CREATE DATABASE, such as a
Citus cluster (`make test-citus`).
"""

import os
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from espace_api.config import Settings
from espace_api.db.migrate import upgrade
from espace_api.main import create_app
from espace_api.storage import raw
from tests.support.auth import AuthFactory
from tests.support.databases import fresh_database, server_url

BASE = "http://test"
# Every statement reused for another caller or request (reads, searches) is also compiled
# afresh and compared: SQL, values bound (storage/raw.Bound).
raw.VERIFY = True


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A new empty database, migrated to the latest schema."""
    server = server_url()
    if os.environ.get("TEST_EXISTING_DATABASE") == "1":
        upgrade(server)
        yield server
        return
    with fresh_database(server) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # No notification worker in the background: tests run it on demand (test_messaging).
    return Settings(
        database_url=database_url,
        base_url=BASE,
        notification_interval_seconds=0,
        subscription_allow_http=True,
    )


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
