"""Batch Bundles of creates of one type, set-based (POST /).

A batch Bundle whose entries are all plain creates (`POST Type`, no `ifNoneExist`, no
`urn:uuid` reference) of one type whose behaviours offer a bulk create
(`TypeBehaviour.create_many`, e.g. a connected device's 1,000 measurements) is answered by
that bulk create: every entry is validated in Python, then written with one statement per
table for the whole Bundle, instead of a savepoint and a dozen statements per entry. The
answer is the same batch-response: one entry per request entry, in order, `201` for a new
resource, `200` for a replayed one, and a per-entry error otherwise; refused entries (401,
403, 404) leave their audit event as they do one by one. Any other Bundle, or a type or
caller the bulk create declines, goes through `transaction.process` unchanged.
"""

from typing import Any
from urllib.parse import parse_qsl

from espace_api.audit import recorder, refusals
from espace_api.fhir import bundles
from espace_api.fhir.errors import FhirError
from espace_api.fhir.indexing import references_in
from espace_api.resources import transaction
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import audit_repository


def _plain_creates(ctx: Context, body: Any) -> list[transaction.Entry] | None:
    """The entries of a batch Bundle made only of plain creates of one type, else None."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return None
    raw = body.get("entry")
    if body.get("type") != "batch" or not isinstance(raw, list) or len(raw) < 2:
        return None
    if len(raw) > ctx.settings.max_bundle_entries:
        return None  # refused (413) the usual way
    entries: list[transaction.Entry] = []
    for i, item in enumerate(raw):
        try:
            entry = transaction._parse_entry(i, item)
        except FhirError:
            return None
        if entry.method != "POST" or entry.id is not None or entry.query or entry.if_none_exist:
            return None
        if entries and entry.rtype is not entries[0].rtype:
            return None
        if any(r["reference"].startswith("urn:uuid:") for r in references_in(entry.resource)):
            return None
        entries.append(entry)
    return entries


async def process(ctx: Context, body: Any) -> Result:
    """A batch or transaction Bundle: set-based when it is a batch of creates of one type
    that has a bulk create for this caller, else entry by entry (`transaction.process`)."""
    entries = _plain_creates(ctx, body)
    answers = None
    if entries:
        rtype = entries[0].rtype
        answers = await ctx.behaviours.create_many(ctx, rtype, [e.resource for e in entries])
    if entries is None or answers is None:
        return await transaction.process(ctx, body)
    out: list[bundles.Entry] = []
    refused: list[dict[str, Any]] = []
    now = ctx.clock.now()
    for entry, answer in zip(entries, answers, strict=True):
        if isinstance(answer, Result):
            out.append(transaction._response_entry(ctx, answer))
            continue
        if answer.status in refusals.RECORDED:  # as `transaction._batch` records them
            named = dict(parse_qsl(entry.query)).get("patient")
            refused += recorder.events(
                ctx.clock,
                ctx.identity,
                refusals.SUBTYPES["POST"],
                resource_type=entry.rtype.name,
                patient_ids=[named],
                outcome=recorder.REFUSED,
                detail=f"{answer.status} {answer.code}",
                now=now,
            )
        out.append(transaction._error_entry(transaction._fail(entry.index, answer)))
    await audit_repository.insert_events(ctx.conn, refused)
    return Result(200, bundles.bundle("batch-response", out, bundle_id=ctx.clock.ids()))
