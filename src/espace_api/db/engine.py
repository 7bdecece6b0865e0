"""Async engine creation from settings."""

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from espace_api.config import Settings


def async_url(url: str) -> str:
    """Turn any postgres URL into the SQLAlchemy asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def make_engine(settings: Settings) -> AsyncEngine:
    """An engine for the configured database (which must already be resolved)."""
    if not settings.database_url:
        raise RuntimeError("database_url is not resolved; call db.embedded.ensure_database()")
    return create_async_engine(
        async_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        json_serializer=_json,  # JSONB parameters (resource content) with orjson
        # No JIT: every query here is short, and a pessimistic estimate (e.g. a LIMIT 1 per
        # code of Observation/$lastn, 0.1 ms of work) otherwise pays ~200 ms of compilation.
        connect_args={"server_settings": {"jit": "off"}},
    )


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
