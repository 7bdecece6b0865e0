"""Batch and transaction Bundles (POST /).

A transaction runs every entry in the caller's single database transaction: any failure
raises and nothing is written. A batch runs each entry in its own savepoint and reports
per-entry outcomes. `urn:uuid:` fullUrls of created entries are resolved to their new ids
in every reference before any entry is processed.

A transaction whose create replays a stored resource (a vendor's retry of a deposit whose
answer was lost) runs again with the entries only that replay pointed at (its content)
answered by the stored ones, so a retry leaves no second copy of them.
"""

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from espace_api.access import policy
from espace_api.audit import refusals
from espace_api.fhir import bundles
from espace_api.fhir.errors import FhirError
from espace_api.fhir.indexing import references_in
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.values import format_instant
from espace_api.resources import conditional, service
from espace_api.resources import patch as patching
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import raw as driver

# FHIR transaction processing order: DELETE, POST, PUT/PATCH, GET/HEAD.
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    """One parsed request entry."""

    index: int
    method: str
    url: str
    rtype: ResourceType
    id: str | None
    version: str | None
    query: str
    resource: Any
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    reused: bool = False  # answered by a stored resource a replayed entry points at


def _fail(index: int, exc: FhirError) -> FhirError:
    exc.message = f"Bundle.entry[{index}]: {exc.message}"
    if exc.expression is None:
        exc.expression = [f"Bundle.entry[{index}]"]
    return exc


def _parse_entry(index: int, raw: Any) -> Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise FhirError.bad_request("entry.request is required", "INVALID_BUNDLE")
    request = raw["request"]
    method = str(request.get("method", "")).upper()
    if method not in ORDER:
        raise FhirError.bad_request(
            f"Unsupported entry.request.method '{method}'", "INVALID_BUNDLE"
        )
    url = str(request.get("url", ""))
    parts = urlsplit(url)
    segments = [s for s in parts.path.strip("/").split("/") if s]
    if not segments or segments[0] not in REGISTRY:
        raise FhirError.bad_request(f"Unsupported entry.request.url '{url}'", "INVALID_BUNDLE")
    rtype = REGISTRY[segments[0]]
    id_ = segments[1] if len(segments) > 1 else None
    version = segments[3] if len(segments) > 3 and segments[2] == "_history" else None
    if (
        method in ("PUT", "PATCH", "DELETE")
        and id_ is None
        and (method == "PATCH" or not parts.query)
    ):
        raise FhirError.bad_request(
            f"{method} entry needs {rtype.name}/id"
            + ("" if method == "PATCH" else f" or {rtype.name}?search")
            + f" in request.url, not '{url}'",
            "INVALID_BUNDLE",
            expression=[f"Bundle.entry[{index}].request.url"],
        )
    resource = raw.get("resource")
    if method in ("POST", "PUT", "PATCH") and not isinstance(resource, dict):
        raise FhirError.bad_request(f"{method} entry needs a resource", "INVALID_BUNDLE")
    return Entry(
        index,
        method,
        url,
        rtype,
        id_,
        version,
        parts.query,
        resource,
        raw.get("fullUrl"),
        request.get("ifNoneExist"),
        request.get("ifMatch"),
    )


async def _assign_ids(ctx: Context, entries: list[Entry], reuse: dict[str, str]) -> dict[str, str]:
    """Map each created entry's fullUrl (urn:uuid:...) to its future `Type/id`, or to the
    stored `Type/id` that `reuse` gives it."""
    mapping: dict[str, str] = {}
    for entry in entries:
        if entry.method != "POST" or not entry.full_url:
            continue
        if entry.full_url in reuse:
            mapping[entry.full_url] = reuse[entry.full_url]
            entry.id, entry.reused = reuse[entry.full_url].partition("/")[2], True
            continue
        if entry.if_none_exist:
            ids = await service.match_ids(ctx, entry.rtype, entry.if_none_exist, limit=2)
            if len(ids) == 1:
                mapping[entry.full_url] = f"{entry.rtype.name}/{ids[0]}"
                continue
        entry.id = ctx.clock.ids()
        mapping[entry.full_url] = f"{entry.rtype.name}/{entry.id}"
    return mapping


def _rewrite(entries: list[Entry], mapping: dict[str, str]) -> None:
    """Replace fullUrls of Bundle entries in references and attachment urls."""
    for entry in entries:
        if not isinstance(entry.resource, dict):
            continue
        for node, key in _links_in(entry.resource):
            value = node[key]
            if value in mapping:
                node[key] = mapping[value]
            elif key == "reference" and value.startswith("urn:uuid:"):
                raise _fail(
                    entry.index,
                    FhirError.unprocessable(
                        f"Reference '{value}' matches no entry in the Bundle",
                        "REFERENCE_NOT_FOUND",
                    ),
                )


def _links_in(node: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """(dict, key) of every `reference` and `url` string (e.g. Attachment.url)."""
    if isinstance(node, dict):
        for key in ("reference", "url"):
            if isinstance(node.get(key), str):
                yield node, key
        for value in node.values():
            yield from _links_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _links_in(item)


def _complete(ctx: Context, entries: list[Entry]) -> None:
    """Let each written entry's type complete it from the rest of the Bundle."""
    bundle = [e.resource for e in entries if isinstance(e.resource, dict)]
    for entry in entries:
        if entry.method in ("POST", "PUT") and isinstance(entry.resource, dict):
            ref = f"{entry.rtype.name}/{entry.id}" if entry.id else None
            try:
                ctx.behaviours.in_transaction(entry.rtype.name, ref, entry.resource, bundle)
            except FhirError as exc:
                raise _fail(entry.index, exc) from None


SCOPE_OF = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


def _check_scopes(ctx: Context, entries: list[Entry]) -> None:
    """Every entry's scope before any entry runs (an ITI-65 needs c on each type)."""
    for entry in entries:
        letter = SCOPE_OF.get(entry.method) or ("r" if entry.id else "s")
        try:
            policy.require_scope(ctx.identity, entry.rtype, letter)  # type: ignore[arg-type]
        except FhirError as exc:
            raise _fail(entry.index, exc) from None


async def _execute(ctx: Context, entry: Entry) -> Result:
    rtype = entry.rtype
    if entry.reused:
        assert entry.id is not None  # set with `reused`
        return await service.existing(ctx, rtype, entry.id)
    if entry.method == "POST":
        if entry.id is None:  # conditional create that matched, or no fullUrl
            return await service.create(
                ctx, rtype, entry.resource, if_none_exist=entry.if_none_exist
            )
        return await service.create(
            ctx, rtype, entry.resource, if_none_exist=entry.if_none_exist, id_=entry.id
        )
    if entry.method == "PUT":
        if entry.id is None:  # Type?search (checked when the entry was parsed)
            return await conditional.update(
                ctx, rtype, entry.query, entry.resource, if_match=entry.if_match
            )
        return await service.update(ctx, rtype, entry.id, entry.resource, if_match=entry.if_match)
    if entry.method == "DELETE":
        if entry.id is None:
            return await conditional.delete(ctx, rtype, entry.query)
        return await service.delete(ctx, rtype, entry.id)
    if entry.method == "PATCH":
        assert entry.id is not None  # checked when the entry was parsed
        kind, body = patching.from_bundle_resource(entry.resource)
        return await patching.patch(ctx, rtype, entry.id, kind, body, if_match=entry.if_match)
    if entry.id and entry.version:
        return await service.vread(ctx, rtype, entry.id, entry.version)
    if entry.id:
        return await service.read(ctx, rtype, entry.id)
    return await service.search(ctx, rtype, parse_qsl(entry.query, keep_blank_values=True))


def _response_entry(ctx: Context, result: Result) -> bundles.Entry:
    status = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}.get(
        result.status, str(result.status)
    )
    response: dict[str, Any] = {"status": status}
    full_url = None
    if result.id and result.resource_type:
        full_url = f"{ctx.base}/{result.resource_type}/{result.id}"
        if result.version_id is not None:
            response["location"] = f"{full_url}/_history/{result.version_id}"
            response["etag"] = f'W/"{result.version_id}"'
    if result.last_updated is not None:
        response["lastModified"] = format_instant(result.last_updated)
    json = result.json.decode() if isinstance(result.json, bytes) else result.json
    return bundles.Entry(full_url, json=json, response=response)


def _error_entry(exc: FhirError) -> bundles.Entry:
    return bundles.Entry(None, response={"status": str(exc.status), "outcome": exc.outcome()})


async def process(ctx: Context, body: Any) -> Result:
    """Process a batch or transaction Bundle and return the response Bundle."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise FhirError.bad_request("Expected a Bundle", "INVALID_BUNDLE")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise FhirError.bad_request("Bundle.type must be batch or transaction", "INVALID_BUNDLE")
    raw_entries = body.get("entry") or []
    limit = ctx.settings.max_bundle_entries
    if not isinstance(raw_entries, list):
        raise FhirError.bad_request("Bundle.entry must be a list", "INVALID_BUNDLE")
    if len(raw_entries) > limit:
        raise FhirError(
            413,
            "TOO_MANY_ENTRIES",
            f"Bundle.entry has {len(raw_entries)} entries; at most {limit}",
            issue_type="too-costly",
            expression=["Bundle.entry"],
        )
    if kind == "transaction":
        return await _transaction(ctx, raw_entries)
    return await _batch(ctx, raw_entries)


# The savepoint a transaction Bundle's first run goes back to when it replays a stored
# deposit; sent on the driver connection (storage/raw.py), released with the transaction.
SAVEPOINT = "bundle_run"


async def _transaction(ctx: Context, raw_entries: list[Any]) -> Result:
    await driver.savepoint(ctx.conn, SAVEPOINT)
    try:
        entries, results = await _run(ctx, copy.deepcopy(raw_entries), {})
    except BaseException:
        await driver.rollback_to(ctx.conn, SAVEPOINT)
        raise
    reuse = _reused_by_replays(entries, results)
    if reuse:
        await driver.rollback_to(ctx.conn, SAVEPOINT)
        ctx.blobs.clear()  # the Binary versions of the first run are gone
        ctx.patients.clear()  # and any Patient version it wrote
        entries, results = await _run(ctx, raw_entries, reuse)
    out = [_response_entry(ctx, results[e.index]) for e in entries]
    return Result(200, bundles.bundle("transaction-response", out, bundle_id=ctx.clock.ids()))


async def _run(
    ctx: Context, raw_entries: list[Any], reuse: dict[str, str]
) -> tuple[list[Entry], dict[int, Result]]:
    """Parse, resolve and execute every entry; the first failure raises."""
    entries = []
    for i, raw in enumerate(raw_entries):
        try:
            entries.append(_parse_entry(i, raw))
        except FhirError as exc:
            raise _fail(i, exc) from None
    _check_scopes(ctx, entries)
    mapping = await _assign_ids(ctx, entries, reuse)
    _rewrite(entries, mapping)
    _complete(ctx, entries)
    results: dict[int, Result] = {}

    # Within a phase: Patients first (a compartment resource finds its Patient), then by the
    # types' declared `bundle_order` (e.g. content before the documents that point at it).
    def order(e: Entry) -> tuple[int, int]:
        rank = -1 if e.rtype.name == "Patient" else ctx.behaviours.bundle_order(e.rtype.name)
        return ORDER[e.method], rank

    for entry in sorted(entries, key=order):
        try:
            results[entry.index] = await _execute(ctx, entry)
        except FhirError as exc:
            exc.entry_target = (entry.method, entry.url)
            raise _fail(entry.index, exc) from None
    return entries, results


def _reused_by_replays(entries: list[Entry], results: dict[int, Result]) -> dict[str, str]:
    """fullUrl -> stored `Type/id` for each entry created here that only replayed creates
    point at, paired with the reference at the same place in the stored resource."""
    created = {
        f"{e.rtype.name}/{e.id}": e
        for e in entries
        if e.method == "POST" and e.id and e.full_url and results[e.index].status == 201
    }
    replayed: list[Entry] = []
    kept: set[str] = set()
    for e in entries:
        if not isinstance(e.resource, dict):
            continue
        if e.method == "POST" and results[e.index].status == 200 and results[e.index].json:
            replayed.append(e)
        else:
            kept.update(node[key] for node, key in _links_in(e.resource))
    reuse: dict[str, str] = {}
    for e in replayed:
        stored = orjson.loads(results[e.index].json or b"{}")
        for new, old in _paired_links(e.resource, stored):
            entry = created.get(new)
            same_type = old.partition("/")[0] == new.partition("/")[0]
            if entry is not None and entry.full_url and new not in kept and same_type:
                reuse[entry.full_url] = old
    return reuse


def _paired_links(new: Any, old: Any) -> Iterator[tuple[str, str]]:
    """(new, old) link strings found at the same place of two resources."""
    if isinstance(new, dict) and isinstance(old, dict):
        for key, value in new.items():
            if key in ("reference", "url") and isinstance(value, str):
                if isinstance(old.get(key), str):
                    yield value, old[key]
            elif key in old:
                yield from _paired_links(value, old[key])
    elif isinstance(new, list) and isinstance(old, list):
        for a, b in zip(new, old, strict=False):
            yield from _paired_links(a, b)


async def _batch(ctx: Context, raw_entries: list[Any]) -> Result:
    out: list[bundles.Entry] = []
    for i, raw in enumerate(raw_entries):
        entry: Entry | None = None
        try:
            entry = _parse_entry(i, raw)
            if isinstance(entry.resource, dict) and any(
                r["reference"].startswith("urn:uuid:") for r in references_in(entry.resource)
            ):
                raise FhirError.bad_request(
                    "urn:uuid references between batch entries are not allowed; use a transaction"
                )
            async with ctx.conn.begin_nested():
                result = await _execute(ctx, entry)
            out.append(_response_entry(ctx, result))
        except FhirError as exc:
            ctx.patients.clear()  # a Patient version the entry wrote is rolled back
            if entry is not None and exc.status in refusals.RECORDED:
                rtype, id_ = refusals.target_of(entry.url)
                if rtype is not None:
                    named = dict(parse_qsl(entry.query)).get("patient")
                    await refusals.record(
                        ctx.conn, ctx.clock, ctx.identity, entry.method, rtype, id_, named, exc
                    )
            out.append(_error_entry(_fail(i, exc)))
    return Result(200, bundles.bundle("batch-response", out, bundle_id=ctx.clock.ids()))
