"""Alembic environment: async engine, URL from settings (or the embedded server)."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from espace_api.config import get_settings
from espace_api.db.embedded import ensure_database_url
from espace_api.db.engine import async_url
from espace_api.db.schema import metadata
from espace_api.storage.auth_repository import auth_metadata
from espace_api.storage.blob_repository import blob_metadata

config = context.config
target_metadata = [metadata, auth_metadata, blob_metadata]


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    settings = get_settings()
    return ensure_database_url(settings.database_url, settings.data_dir)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(async_url(_url()))
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
