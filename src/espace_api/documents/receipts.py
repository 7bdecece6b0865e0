"""Deposit receipts: `GET /DocumentReference/$deposit-status?masterIdentifier=system|value`.

A vendor reconciles what it sent in one call: for each masterIdentifier asked (repeated or
comma-separated, at most `MAX_IDENTIFIERS`), whether a current document with it is stored
that the caller can see (software: what it deposited; see access/policy.py), with its id,
version, status, attachments' size and hash, when it was first stored and last changed. The
answer is a Parameters resource, one `deposit` parameter per identifier asked (and one more
per extra document found with it). The read is audited as a search of DocumentReference.
"""

from datetime import datetime
from typing import Any

import orjson

from espace_api.access import policy
from espace_api.audit import recorder
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.search import split_values
from espace_api.fhir.values import format_instant
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage.document_repository import Deposit, deposits_by_identifier

MAX_IDENTIFIERS = 100
DOCREF = REGISTRY["DocumentReference"]


def parse_identifiers(values: list[str]) -> list[tuple[str, str]]:
    """`system|value` strings (each possibly a comma list) -> distinct pairs, in order."""
    pairs: list[tuple[str, str]] = []
    for raw in values:
        for item in split_values(raw):
            system, sep, value = item.partition("|")
            if not sep or not value:
                raise FhirError.bad_request(
                    f"masterIdentifier '{item}' must be system|value",
                    "INVALID_PARAMETER",
                    expression=["masterIdentifier"],
                )
            if (system, value) not in pairs:
                pairs.append((system, value))
    if not pairs:
        raise FhirError.bad_request(
            "At least one masterIdentifier=system|value is required",
            "INVALID_PARAMETER",
            expression=["masterIdentifier"],
        )
    if len(pairs) > MAX_IDENTIFIERS:
        raise FhirError.bad_request(
            f"At most {MAX_IDENTIFIERS} masterIdentifiers per call, not {len(pairs)}",
            "INVALID_PARAMETER",
            expression=["masterIdentifier"],
        )
    return pairs


def _master(content: dict[str, Any]) -> tuple[str, str]:
    master = content.get("masterIdentifier") or {}
    return master.get("system", ""), str(master.get("value", ""))


def _instant(name: str, value: datetime) -> dict[str, Any]:
    return {"name": name, "valueInstant": format_instant(value)}


def _found(deposit: Deposit, content: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"name": "stored", "valueBoolean": True},
        {"name": "document", "valueReference": {"reference": f"DocumentReference/{deposit.id}"}},
        {"name": "versionId", "valueId": str(deposit.version_id)},
        {"name": "status", "valueCode": content.get("status", "unknown")},
    ]
    for item in content.get("content") or []:
        att = item.get("attachment") or {}
        attachment = [
            {"name": "size", "valueUnsignedInt": att["size"]} if "size" in att else None,
            {"name": "hash", "valueBase64Binary": att["hash"]} if "hash" in att else None,
        ]
        parts.append({"name": "attachment", "part": [p for p in attachment if p]})
    parts += [
        _instant("deposited", deposit.deposited),
        _instant("lastUpdated", deposit.last_updated),
    ]
    return parts


async def deposit_status(ctx: Context, values: list[str]) -> Result:
    """The receipts of the masterIdentifiers asked (see the module docstring)."""
    policy.require_scope(ctx.identity, DOCREF, "s")
    pairs = parse_identifiers(values)
    deposits = await deposits_by_identifier(ctx.conn, pairs, ctx.policy(DOCREF))
    by_pair: dict[tuple[str, str], list[tuple[Deposit, dict[str, Any]]]] = {}
    for deposit in deposits:
        content = orjson.loads(deposit.json)
        by_pair.setdefault(_master(content), []).append((deposit, content))
    out = []
    for system, value in pairs:
        asked = {"name": "masterIdentifier", "valueIdentifier": {"system": system, "value": value}}
        found = by_pair.get((system, value)) or []
        if not found:
            out.append(
                {"name": "deposit", "part": [asked, {"name": "stored", "valueBoolean": False}]}
            )
        for deposit, content in found:
            out.append({"name": "deposit", "part": [asked, *_found(deposit, content)]})
    await recorder.record(
        ctx.conn,
        ctx.clock,
        ctx.identity,
        "search",
        resource_type=DOCREF.name,
        patient_ids=[d.patient_id for d in deposits] or [ctx.identity.patient_id],
        query="$deposit-status&" + "&".join(f"masterIdentifier={s}|{v}" for s, v in pairs),
    )
    body = {"resourceType": "Parameters", "parameter": out}
    return Result(200, orjson.dumps(body).decode())
