"""`espace-api` command line: serve, migrate, openapi (and auth commands)."""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from espace_api import logs
from espace_api.config import get_settings


def _database_url() -> str:
    from espace_api.db.embedded import ensure_database_url

    settings = get_settings()
    return ensure_database_url(settings.database_url, settings.data_dir)


def cmd_migrate(_: argparse.Namespace) -> None:
    """Apply all migrations."""
    from espace_api.db.migrate import upgrade

    upgrade(_database_url())
    print("database migrated")


def cmd_serve(args: argparse.Namespace) -> None:
    """Migrate, then serve with uvicorn: `--workers` processes (default one per core; the
    embedded Postgres lives in this process, which supervises them)."""
    import uvicorn

    from espace_api.db.migrate import upgrade
    from espace_api.main import create_app

    url = _database_url()
    upgrade(url)
    os.environ["DATABASE_URL"] = url
    settings = get_settings().model_copy(update={"database_url": url})
    logs.configure(settings.log_level, settings.log_format)
    # uvicorn's access log prints query strings (identifiers): ours logs route templates.
    # log_config=None: uvicorn's own lines go through our (JSON) handler too.
    options: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": "info"}
    options |= {"access_log": False, "log_config": None}
    workers = args.workers or int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:  # each worker process builds its app (and logging) from the environment
        uvicorn.run("espace_api.main:create_worker_app", factory=True, workers=workers, **options)


def cmd_openapi(args: argparse.Namespace) -> None:
    """Write (or check) the committed OpenAPI spec."""
    from espace_api.main import create_app

    spec = json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"
    path = Path(args.output)
    if args.check:
        if not path.exists() or path.read_text() != spec:
            print(f"{path} is out of date: run `make openapi`", file=sys.stderr)
            sys.exit(1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec)
    print(f"wrote {path}")


def cmd_sweep(_: argparse.Namespace) -> None:
    """Delete blobs that no committed metadata references (after the grace period)."""
    import asyncio

    from espace_api.blobs.sweeper import sweep_once

    print(asyncio.run(sweep_once(get_settings())))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="espace-api")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate and serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes (default: $WEB_CONCURRENCY, else one per core)",
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply migrations").set_defaults(func=cmd_migrate)
    openapi = sub.add_parser("openapi", help="write the OpenAPI spec")
    openapi.add_argument("--output", default="openapi/openapi.json")
    openapi.add_argument("--check", action="store_true", help="fail if the file differs")
    openapi.set_defaults(func=cmd_openapi)
    sweep = sub.add_parser("sweep-blobs", help="remove unreferenced document content")
    sweep.set_defaults(func=cmd_sweep)
    try:
        from espace_api.auth.cli import register_cli
    except ImportError:  # the auth commands land with the auth issue
        pass
    else:
        register_cli(sub)
    from espace_api.lifecycle.cli import register_cli as register_lifecycle

    register_lifecycle(sub)
    from espace_api.blobs.cli import register_cli as register_encryption

    register_encryption(sub)
    from espace_api.profile.cli import register_cli as register_reminders

    register_reminders(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
