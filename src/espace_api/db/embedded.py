"""Embedded Postgres (pgserver wheel) used when DATABASE_URL is not set."""

import os
from pathlib import Path
from typing import Any

_servers: dict[str, Any] = {}


def start_embedded(data_dir: str | os.PathLike[str]) -> str:
    """Start (or reuse) an embedded Postgres under `data_dir`; return its URL."""
    import pgserver  # imported lazily: only needed without DATABASE_URL

    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    key = str(path)
    if key not in _servers:
        _servers[key] = pgserver.get_server(path, cleanup_mode="stop")  # type: ignore[attr-defined]
    return str(_servers[key].get_uri())


def ensure_database_url(database_url: str | None, data_dir: str) -> str:
    """The configured URL, or the URL of an embedded server under `data_dir/pg`."""
    if database_url:
        return database_url
    return start_embedded(Path(data_dir) / "pg")
