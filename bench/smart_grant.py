"""What the per-request grant check of app tokens costs (SMART App Launch, smart/).

An app's token is cached like any other, but its grant is looked up on every request so that
a revocation stops the next one (auth/authenticator.py). This runs the app in-process (httpx
ASGI transport, no network) on a fresh database of DATABASE_URL's server, and times the same
primary-key read of a Patient with a plain patient token and with an app token of that patient
(same scopes), in alternating rounds; it prints both medians and their ratio.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.smart_grant
"""

import asyncio
import os
import statistics
import time
import uuid
from datetime import timedelta

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from espace_api.config import Settings
from espace_api.db.migrate import upgrade
from espace_api.main import create_app
from espace_api.storage import smart_repository as sql
from espace_api.storage.smart_repository import GrantRow

ROUNDS, PER_ROUND = 10, 200


async def _admin(server: str, statement: str) -> None:
    dsn = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _time(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    for _ in range(PER_ROUND):
        r = await client.get(url, headers=headers)
        assert r.status_code == 200, r.text
    return (time.perf_counter() - start) / PER_ROUND * 1e6


async def bench(url: str) -> None:
    app = create_app(Settings(database_url=url, base_url="http://bench"))
    async with app.router.lifespan_context(app):
        issuer = app.state.auth.require_issuer()
        ops = await issuer.mint(kind="operator", subject="ops", scope="system/*.cruds operator")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            body = {"resourceType": "Patient", "name": [{"family": "Bench"}]}
            r = await client.post(
                "/Patient",
                json=body,
                headers={"Authorization": f"Bearer {ops.access_token}"},
            )
            pid = r.json()["id"]
            await app.state.auth.repo.upsert_client(
                client_id="bench-app",
                kind="app",
                name="bench",
                jwks={"keys": []},
                scopes="patient/*.rs",
                organization=None,
                now=app.state.clock.now(),
            )
            now = app.state.clock.now()
            async with app.state.engine.begin() as conn:
                await sql.insert_grant(
                    conn,
                    GrantRow(
                        "bench-grant",
                        pid,
                        "bench-app",
                        "s",
                        "patient/*.rs",
                        "c",
                        now,
                        now + timedelta(days=1),
                        None,
                    ),
                )
            plain = await issuer.mint(
                kind="patient", subject="s", scope="patient/*.rs", patient_id=pid
            )
            grant = await issuer.mint(
                kind="patient",
                subject="s",
                scope="patient/*.rs",
                patient_id=pid,
                client_id="bench-app",
                grant_id="bench-grant",
            )
            headers = {
                "patient token": {"Authorization": f"Bearer {plain.access_token}"},
                "app token": {"Authorization": f"Bearer {grant.access_token}"},
            }
            times: dict[str, list[float]] = {name: [] for name in headers}
            target = f"/Patient/{pid}"
            for h in headers.values():  # warm up (token cache, predicate cache, pool)
                await _time(client, target, h)
            for _ in range(ROUNDS):
                for name, h in headers.items():
                    times[name].append(await _time(client, target, h))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:14s} median {value:8.0f} us per read ({ROUNDS} rounds of {PER_ROUND})")
    print(f"app / patient  {medians['app token'] / medians['patient token']:.2f}")


def main() -> None:
    server = os.environ["DATABASE_URL"]
    name = f"espace_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        asyncio.run(bench(url))
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
