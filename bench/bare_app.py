"""The bare limit: FastAPI + asyncpg reading one stored resource by primary key.

No authentication, policy, audit or FHIR handling: what the hardware, Postgres, uvicorn and
FastAPI give for the same row that espace-api serves. Started by `bench.limit` beside the
real server, with the same number of workers (`uvicorn --factory bench.bare_app:create_app`).
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Response
from sqlalchemy.engine import make_url

QUERY = "SELECT content::text FROM resources WHERE resource_type = $1 AND id = $2"


def create_app() -> FastAPI:
    url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=4, max_size=10)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/{type_}/{id_}")
    async def read(type_: str, id_: str) -> Response:
        async with app.state.pool.acquire() as conn:
            body = await conn.fetchval(QUERY, type_, id_)
        if body is None:
            return Response(status_code=404)
        return Response(body, media_type="application/fhir+json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
