"""Compatibility tests: the server running for real (uvicorn on a free local port) driven by
unmodified FHIR client libraries, with real access tokens from the built-in issuer."""

from collections.abc import Iterator

import pytest

from tests.support.live_server import LiveServer


@pytest.fixture(scope="session")
def live(database_url: str) -> Iterator[LiveServer]:
    server = LiveServer(database_url).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def operator_token(live: LiveServer) -> str:
    """Full rights (operator: system/*.cruds), e.g. to enrol patients."""
    return live.token("operator")
