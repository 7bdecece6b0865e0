"""`espace-api lifecycle run` and `espace-api enrol FILE`."""

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from espace_api.auth.identity import Identity

OPERATOR = Identity(kind="operator", subject="enrolment-cli", client_id="enrolment-cli")


async def _with_engine(work: Any) -> Any:
    from espace_api.clock import Clock
    from espace_api.config import get_settings
    from espace_api.db.embedded import ensure_database_url
    from espace_api.db.engine import make_engine

    settings = get_settings()
    url = ensure_database_url(settings.database_url, settings.data_dir)
    settings = settings.model_copy(update={"database_url": url})
    engine = make_engine(settings)
    try:
        return await work(engine, settings, Clock())
    finally:
        await engine.dispose()


def cmd_run(args: argparse.Namespace) -> None:
    """Activate ended opposition windows and purge ended retentions (idempotent)."""
    from espace_api.lifecycle.service import run_due

    done = asyncio.run(_with_engine(lambda e, s, c: run_due(e, s, c, batch=args.batch)))
    print(done)


async def _file_lines(path: str) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while lines := await asyncio.to_thread(handle.readlines, 1 << 20):
            for line in lines:
                yield line
    finally:
        handle.close()


def cmd_enrol(args: argparse.Namespace) -> None:
    """Enrol the Patients of an NDJSON file; the report goes to stdout (or --report)."""
    from espace_api.fhir.values import date_range
    from espace_api.lifecycle.enrolment import enrol

    notice = date_range(args.notice_date)[0] if args.notice_date else None

    async def work(engine: Any, settings: Any, clock: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        out = await asyncio.to_thread(open, args.report, "wb") if args.report else sys.stdout.buffer
        try:
            lines = _file_lines(args.file)
            async for line in enrol(engine, settings, clock, OPERATOR, lines, notice=notice):
                out.write(line)
                status = line.split(b'"status":"')[1].split(b'"')[0].decode()
                counts[status] = counts.get(status, 0) + 1
        finally:
            if args.report:
                out.close()
        return counts

    print(asyncio.run(_with_engine(work)), file=sys.stderr)


def register_cli(sub: Any) -> None:
    lifecycle = sub.add_parser("lifecycle", help="space lifecycle jobs")
    jobs = lifecycle.add_subparsers(dest="job", required=True)
    run = jobs.add_parser("run", help="activate ended opposition windows, purge ended retentions")
    run.add_argument("--batch", type=int, default=200)
    run.set_defaults(func=cmd_run)
    enrol = sub.add_parser("enrol", help="bulk enrolment from an NDJSON file of Patients")
    enrol.add_argument("file")
    enrol.add_argument("--notice-date", help="date the information notice was sent")
    enrol.add_argument("--report", help="write the per-line report here (default stdout)")
    enrol.set_defaults(func=cmd_enrol)
