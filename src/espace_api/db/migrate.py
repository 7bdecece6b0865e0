"""Run Alembic migrations from code (CLI, tests, container start)."""

import os
from pathlib import Path

from alembic import command
from alembic.config import Config


def _project_root() -> Path:
    env = os.environ.get("ESPACE_PROJECT_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[3]


def upgrade(database_url: str) -> None:
    """Migrate the database at `database_url` to the latest schema (all heads)."""
    root = _project_root()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(cfg, "heads")
