"""`espace-api rotate-kek` and `espace-api new-kek` (content encryption, docs/encryption.md)."""

import argparse
import asyncio
import dataclasses
import json
from typing import Any


async def _rotate(batch: int) -> dict[str, Any]:
    from espace_api.blobs.keys import DataKeys
    from espace_api.blobs.kms import key_service_from_settings
    from espace_api.config import get_settings
    from espace_api.db.embedded import ensure_database_url
    from espace_api.db.engine import make_engine

    settings = get_settings()
    url = await asyncio.to_thread(ensure_database_url, settings.database_url, settings.data_dir)
    settings = settings.model_copy(update={"database_url": url})
    engine = make_engine(settings)
    try:
        keys = DataKeys(engine, key_service_from_settings(settings))
        result = await keys.rotate(batch)
        return {"current_kek": keys.kms.current_kek_id, **dataclasses.asdict(result)}
    finally:
        await engine.dispose()


def cmd_rotate(args: argparse.Namespace) -> None:
    """Re-wrap every data key under the current (first) KEK; blobs are not touched."""
    print(json.dumps(asyncio.run(_rotate(args.batch)), sort_keys=True))


def cmd_new_kek(_: argparse.Namespace) -> None:
    """Print a fresh KEK (base64 of 32 random bytes)."""
    from espace_api.blobs.kms import new_kek

    print(new_kek())


def register_cli(sub: Any) -> None:
    rotate = sub.add_parser(
        "rotate-kek",
        help="re-wrap the patients' data keys under the current KEK (idempotent, resumable)",
    )
    rotate.add_argument("--batch", type=int, default=500, help="keys per transaction")
    rotate.set_defaults(func=cmd_rotate)
    sub.add_parser("new-kek", help="print a new key-encryption key").set_defaults(func=cmd_new_kek)
