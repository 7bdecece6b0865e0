"""Mint many bench tokens in-process with the built-in issuer (the dev CLI does one)."""

import asyncio
from typing import Any

from espace_api.auth.services import build
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.db.engine import make_engine


def mint_all(database_url: str, base_url: str, specs: list[dict[str, Any]]) -> list[str]:
    """One access token per spec (kwargs of BuiltinIssuer.mint), valid for an hour."""
    settings = Settings(database_url=database_url, base_url=base_url)

    async def run() -> list[str]:
        engine = make_engine(settings)
        try:
            issuer = build(settings, engine, Clock()).require_issuer()
            return [(await issuer.mint(ttl_seconds=3600, **spec)).access_token for spec in specs]
        finally:
            await engine.dispose()

    return asyncio.run(run())


VENDOR_SCOPES = "system/DocumentReference.c system/Binary.c system/Patient.s system/List.c"


def vendor(i: int) -> dict[str, Any]:
    return {
        "kind": "system",
        "subject": f"bench-lgc-{i}",
        "client_id": f"bench-lgc-{i}",
        "organization": f"finess:{100000000 + i}",
        "scope": VENDOR_SCOPES,
    }


def professional() -> dict[str, Any]:
    return {
        "kind": "user",
        "subject": "rpps-10001",
        "practitioner": "rpps-10001",
        "profession": "10",  # a doctor: the profession matrix lets them read every type
        "scope": "user/*.rs",
    }


def patient(pid: str) -> dict[str, Any]:
    return {
        "kind": "patient",
        "subject": f"patient-{pid}",
        "patient_id": pid,
        "scope": "patient/*.rs",
    }


def operator() -> dict[str, Any]:
    return {"kind": "operator", "subject": "operator", "scope": "system/*.cruds operator"}
