"""Run Alembic migrations from code (CLI, tests, container start)."""

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def _project_root() -> Path:
    env = os.environ.get("ESPACE_PROJECT_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[3]


def _config() -> Config:
    root = _project_root()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    return cfg


def upgrade(database_url: str) -> None:
    """Migrate the database at `database_url` to the latest schema (all heads)."""
    cfg = _config()
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(cfg, "heads")


def heads() -> frozenset[str]:
    """The revisions a database at the latest schema records in `alembic_version`."""
    # "heads" as `upgrade` resolves it: a branch another revision depends on is not a head.
    script = ScriptDirectory.from_config(_config())
    return frozenset(r.revision for r in script.get_revisions("heads") if r is not None)
