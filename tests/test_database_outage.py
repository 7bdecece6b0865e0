"""With the database unreachable, requests fail fast with 503 + OperationOutcome (never a
500, never a hang); connections the server closed are replaced without an error.

The shared Postgres is never stopped here: an outage is an engine pointed at a port where
nothing listens (connects refused, as while Postgres restarts), and a restart's effect on
pooled connections is `pg_terminate_backend` on this test database's own backends.
`make soak` restarts a real cluster of its own (bench/faults.py).
"""

import asyncio
import socket
import tempfile
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from espace_api.api.limits import Deadline
from espace_api.config import Settings
from espace_api.db import availability
from espace_api.db.engine import make_engine
from espace_api.main import create_app
from tests.conftest import BASE
from tests.support.auth import AuthFactory
from tests.support.documents import pdf
from tests.test_documents_deposit import code, iti65, lgc, new_patient, send

FAST = 2.0  # seconds: a refused connect must not wait for the request deadline


def down_url(database_url: str, kind: str) -> str:
    """The test database's URL where nothing listens: a local TCP port, or a Unix socket
    directory without a socket (as while a Postgres reached by its socket restarts)."""
    url = make_url(database_url).difference_update_query(["host"])
    if kind == "unix":
        return url.set(host=None, port=None, query={"host": tempfile.mkdtemp()}).render_as_string(
            hide_password=False
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@pytest.fixture
async def own_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app of its own (its engine is swapped or its connections killed)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


def unavailable(r: httpx.Response, started: float) -> None:
    assert time.perf_counter() - started < FAST
    assert r.status_code == 503, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert code(r) == "DATABASE_UNAVAILABLE"
    assert int(r.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_database_down_answers_503_fast_on_probe_read_search_and_deposit(
    own_app, settings, kind
):
    auth = AuthFactory(own_app)
    async with await client_of(own_app) as client:
        pid = await new_patient(client, auth)
        reader, vendor = await auth.patient(pid), await lgc(auth)
        bundle, _ = iti65(pid, pdf(4096))
        live = own_app.state.engine
        down = settings.model_copy(update={"database_url": down_url(settings.database_url, kind)})
        own_app.state.engine = make_engine(down)
        try:
            for call in (
                lambda: client.get("/readyz"),
                lambda: client.get(f"/Patient/{pid}", headers=reader),
                lambda: client.get("/DocumentReference", params={"patient": pid}, headers=reader),
                lambda: send(client, vendor, bundle),
            ):
                started = time.perf_counter()
                unavailable(await call(), started)
            assert (await client.get("/healthz")).status_code == 200  # the process is up
        finally:
            await own_app.state.engine.dispose()
            own_app.state.engine = live
        # The database is back: the same requests succeed, nothing to restart.
        assert (await client.get("/readyz")).status_code == 200
        r = await send(client, vendor, bundle)
        assert r.status_code == 200, r.text


async def test_connections_closed_by_the_server_are_replaced_without_an_error(
    own_app, database_url
):
    auth = AuthFactory(own_app)
    async with await client_of(own_app) as client:
        pid = await new_patient(client, auth)
        reader = await auth.patient(pid)
        # Fill the pool with several connections, then have the server end them all.
        reads = [client.get(f"/Patient/{pid}", headers=reader) for _ in range(8)]
        assert {r.status_code for r in await asyncio.gather(*reads)} == {200}
        assert own_app.state.engine.pool.checkedin() >= 2
        admin = await asyncpg.connect(
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert ended >= 2
        await asyncio.sleep(0.2)  # the sockets' ends reach the event loop
        for path in (f"/Patient/{pid}", "/readyz"):
            answers = await asyncio.gather(*(client.get(path, headers=reader) for _ in range(8)))
            assert {r.status_code for r in answers} == {200}, [r.text for r in answers]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(111, "refused"), True),  # nothing listens (restart)
        (TimeoutError(), True),  # connect timed out (DB_CONNECT_TIMEOUT_SECONDS)
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.AdminShutdownError("terminating connection"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"), True),
        (asyncpg.UniqueViolationError("duplicate key"), False),  # a conflict, not an outage
        (asyncpg.InterfaceError("another operation is in progress"), False),  # a bug
        (ValueError("bad"), False),
    ],
)
def test_which_errors_mean_the_database_is_unreachable(error, expected):
    assert availability.unavailable(error) is expected
    wrapped = RuntimeError("while depositing")
    wrapped.__cause__ = error
    assert availability.unavailable(wrapped) is expected


async def test_the_deadline_answers_only_its_own_timeouts():
    """A TimeoutError from inside (a database connect) is not a REQUEST_TIMEOUT: it goes on
    to the error mapping (503 DATABASE_UNAVAILABLE)."""

    async def connect_times_out(scope, receive, send):
        raise TimeoutError

    async def nothing(message):
        raise AssertionError("the deadline must not answer")

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    with pytest.raises(TimeoutError):
        await Deadline(connect_times_out, seconds=5)(scope, None, nothing)


async def test_readyz_says_not_ready_until_the_schema_is_at_head(own_app, database_url):
    async with await client_of(own_app) as client:
        assert (await client.get("/readyz")).status_code == 200
        conn = await asyncpg.connect(
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        try:
            heads = [r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")]
            await conn.execute(
                "UPDATE alembic_version SET version_num = '9_1' WHERE version_num = $1", heads[0]
            )
            try:
                r = await client.get("/readyz")
            finally:
                await conn.execute(
                    "UPDATE alembic_version SET version_num = $1 WHERE version_num = '9_1'",
                    heads[0],
                )
        finally:
            await conn.close()
        assert r.status_code == 503 and code(r) == "NOT_MIGRATED", r.text
        assert (await client.get("/readyz")).status_code == 200
