"""`espace-api reminders run`."""

import argparse
import asyncio
from typing import Any


def cmd_run(args: argparse.Namespace) -> None:
    """Issue the prevention reminders due in every active space (idempotent)."""
    from espace_api.lifecycle.cli import _with_engine
    from espace_api.profile.reminders import run

    print(asyncio.run(_with_engine(lambda e, s, c: run(e, c, batch=args.batch))))


def register_cli(sub: Any) -> None:
    reminders = sub.add_parser("reminders", help="prevention reminders")
    jobs = reminders.add_subparsers(dest="job", required=True)
    run = jobs.add_parser("run", help="issue the reminders due in every active space")
    run.add_argument("--batch", type=int, default=1000)
    run.set_defaults(func=cmd_run)
