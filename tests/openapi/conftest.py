"""The committed OpenAPI document driven against a real server process (uvicorn on a free
port) with its own database, so that fuzzed writes and deletes touch no other test's data."""

from collections.abc import Iterator

import pytest

from tests.support.databases import fresh_database
from tests.support.live_server import LiveServer


@pytest.fixture(scope="session")
def fuzz_server(database_url: str) -> Iterator[LiveServer]:
    with fresh_database(database_url) as url:
        # Rate limiting off: the fuzzer's machine tokens send requests back to back; a
        # small pool: the test Postgres is shared with the rest of the suite.
        server = LiveServer(
            url, machine_rate_per_second=0, db_pool_size=4, db_max_overflow=2
        ).start()
        yield server
        server.stop()
