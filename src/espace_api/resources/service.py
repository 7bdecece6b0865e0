"""FHIR interactions: create, read, vread, update, delete, history, search.

Every function takes an open connection (inside a transaction the caller owns), the
caller's Identity and the resource type; it applies the access policy, writes audit
events and returns a Result. No HTTP here: transactions and tests call it directly.
"""

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import ColumnElement, Table, false
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.access import policy
from espace_api.access.projection import project_patient
from espace_api.audit import lookups, recorder
from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.db.schema import resource_versions, resources
from espace_api.fhir import bundles, indexing
from espace_api.fhir import search as search_mod
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.search import SearchRequest, parse_search
from espace_api.fhir.validation import validate
from espace_api.fhir.values import format_instant
from espace_api.resources.behaviour import Behaviours, WriteEvent
from espace_api.resources.results import Result, meta_for, version_headers
from espace_api.storage import raw, repository, routing, search_plan, search_sql
from espace_api.storage.repository import NewVersion, StoredRow


@dataclass
class Context:
    """Everything a service call needs besides its arguments. It is also the `HookContext`
    that type behaviours receive (resources/behaviour.py): the few service operations a hook
    may need are methods here, so no hook imports the service."""

    conn: AsyncConnection
    identity: Identity
    settings: Settings
    clock: Clock
    behaviours: Behaviours = field(default_factory=Behaviours)
    # Content of the Binary versions written by this request, by (id, version): a deposit's
    # DocumentReference checks the Binary of its own Bundle without reading it back.
    blobs: dict[tuple[str, int], Any] = field(default_factory=dict)
    # The current rows of the Patients this request writes into, by id (`existing_patient`):
    # a deposit's Binary and DocumentReference read their Patient once. A write of that
    # Patient drops it; a rolled-back savepoint empties it.
    patients: dict[str, StoredRow] = field(default_factory=dict)

    @cached_property
    def now(self) -> datetime:
        """The request's moment, which every access decision of the request uses."""
        return self.clock.now()

    @cached_property
    def policy_settings(self) -> policy.Settings:
        return policy.settings_from(self.settings)

    def policy(
        self, rtype: ResourceType, table: Table = resources, lookup: policy.Lookup | None = None
    ) -> ColumnElement[bool]:
        return policy.visible(self.identity, rtype, table, self.now, self.policy_settings, lookup)

    @property
    def base(self) -> str:
        return self.settings.base_url

    async def resolve_references(self, content: dict[str, Any]) -> None:
        await resolve_conditional_references(self, content)

    async def write_update(
        self, rtype: ResourceType, current: StoredRow, content: dict[str, Any]
    ) -> Result:
        return await write_update(self, rtype, current, content, system_write=True)

    async def after_read(
        self, rtype: ResourceType, seen: list[tuple[str, str | None, str]]
    ) -> dict[str, str]:
        """The type's `after_read` hooks (read receipts): JSON to answer instead, by id."""
        if not seen or not self.behaviours.reads(rtype.name):
            return {}
        return await self.behaviours.after_read(self, rtype, seen)

    def render(self, rtype: ResourceType, json: str) -> str:
        """The stored JSON as this caller may see it (type `render` hooks, if any)."""
        if self.behaviours.renders(rtype.name):
            return self.behaviours.render(self, rtype, json)
        return json


def _result(ctx: Context, row: StoredRow, status: int = 200) -> Result:
    rtype = REGISTRY[row.resource_type]
    return Result(
        status,
        ctx.render(rtype, row.json) if row.json is not None else None,
        resource_type=row.resource_type,
        id=row.id,
        version_id=row.version_id,
        last_updated=row.last_updated,
    )


def parse_etag(value: str) -> int:
    """`W/"3"` (or `"3"`, `3`) -> 3; 400 otherwise."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise FhirError.bad_request(f"Invalid ETag '{value}'", "INVALID_ETAG")
    return int(text)


# ---------------------------------------------------------------- reads

MAX_AUDITED_PATIENTS = 1000  # a count over more patients audits the first ones only


async def read(ctx: Context, rtype: ResourceType, id_: str) -> Result:
    """read: 404 when absent or not visible, 410 when deleted."""
    policy.require_scope(ctx.identity, rtype, "r")
    row = await repository.get_current(ctx.conn, rtype.name, id_, ctx.policy(rtype))
    return await _answer(ctx, row, "read", f"{rtype.name}/{id_}")


async def existing(ctx: Context, rtype: ResourceType, id_: str) -> Result:
    """A create answered by a stored resource the caller may see (a retried deposit's
    content): 200 with its version, no body, nothing read out."""
    row = await repository.get_current(ctx.conn, rtype.name, id_, ctx.policy(rtype))
    if row is None or row.deleted:
        raise FhirError.not_found(f"{rtype.name}/{id_} not found")
    result = _result(ctx, row)
    result.json = None
    return version_headers(result, ctx.base)


async def vread(ctx: Context, rtype: ResourceType, id_: str, version: str) -> Result:
    """vread: one version; 410 for a deletion version."""
    policy.require_scope(ctx.identity, rtype, "r")
    label = f"{rtype.name}/{id_}/_history/{version}"
    if not version.isdigit():
        raise FhirError.not_found(f"{label} not found")
    row = await repository.get_version(
        ctx.conn, rtype.name, id_, int(version), ctx.policy(rtype, resource_versions)
    )
    return await _answer(ctx, row, "vread", label)


async def _answer(ctx: Context, row: StoredRow | None, subtype: str, label: str) -> Result:
    """404 / 410, or the row audited and rendered."""
    if row is None:
        raise FhirError.not_found(f"{label} not found")
    if row.deleted:
        raise FhirError.gone(f"{label} was deleted")
    await recorder.record(
        ctx.conn,
        ctx.clock,
        ctx.identity,
        subtype,
        resource_type=row.resource_type,
        resource_id=row.id,
        patient_ids=[row.patient_id],
    )
    result = _result(ctx, row)
    if isinstance(result.json, str) and ctx.behaviours.reads(row.resource_type):
        seen = [(row.id, row.patient_id, result.json)]
        replaced = await ctx.after_read(REGISTRY[row.resource_type], seen)
        result.json = replaced.get(row.id, result.json)
    return version_headers(result, ctx.base)


# ---------------------------------------------------------------- writes


async def _prepare(
    ctx: Context,
    rtype: ResourceType,
    body: Any,
    event: WriteEvent,
) -> WriteEvent:
    """Validate, resolve conditional references, stamp id/meta, check write rules, then
    let the type's behaviours check and complete the content."""
    content = validate(rtype, body)
    await resolve_conditional_references(ctx, content)
    content["id"] = event.id
    content["meta"] = {**content.get("meta", {}), **meta_for(event.version_id, event.now)}
    patient_id = indexing.compartment_patient(rtype, content)
    policy.check_write(ctx.identity, rtype, patient_id, content, await _acting_for(ctx, patient_id))
    if patient_id is not None and rtype.name != "Patient":
        event.patient = await existing_patient(ctx, patient_id)
    event.content, event.patient_id = content, patient_id
    event.content = await ctx.behaviours.before_write(ctx, event)
    return event


async def _acting_for(ctx: Context, patient_id: str | None) -> str | None:
    """`patient_id` when the caller (a patient) writes there as the legal representative."""
    if patient_id is None or patient_id == ctx.identity.patient_id:
        return None
    condition = policy.represented(ctx.identity, ctx.now)
    if condition is None:
        return None
    found = await repository.visible_ids(ctx.conn, "Patient", [patient_id], condition)
    return patient_id if found else None


async def existing_patient(ctx: Context, patient_id: str) -> StoredRow:
    """The current row of the Patient a write goes into; 422 when there is none. Whether the
    caller may write into that space is the write rules' question (`check_write`, the type
    behaviours), not whether it may read the Patient: a vendor deposits into spaces it cannot
    browse. Read once per request (`Context.patients`)."""
    patient = ctx.patients.get(patient_id)
    if patient is not None:
        return patient
    open_to = policy.space_open_to(ctx.identity, resources, ctx.now)
    patient = await repository.get_current(ctx.conn, "Patient", patient_id, open_to)
    if patient is None or patient.deleted:
        raise FhirError.unprocessable(f"Patient/{patient_id} does not exist", "REFERENCE_NOT_FOUND")
    ctx.patients[patient_id] = patient
    return patient


async def resolve_conditional_references(ctx: Context, content: dict[str, Any]) -> None:
    """Rewrite `Type?search` references to `Type/id` (exactly one match, else 412/422)."""
    for ref in indexing.references_in(content):
        target, sep, query = ref["reference"].partition("?")
        if not sep:
            continue
        rtype = REGISTRY.get(target)
        if rtype is None:
            raise FhirError.unprocessable(
                f"Unknown type in conditional reference '{ref['reference']}'", "INVALID_REFERENCE"
            )
        ids = await match_ids(ctx, rtype, query, limit=2)
        if len(ids) != 1:
            raise (
                FhirError.precondition(
                    f"Conditional reference '{ref['reference']}' matches several resources",
                    "AMBIGUOUS_REFERENCE",
                )
                if ids
                else FhirError.unprocessable(
                    f"Conditional reference '{ref['reference']}' matches nothing",
                    # a person who is not enrolled (unknown INS) has a code of their own
                    "PATIENT_UNKNOWN" if target == "Patient" else "REFERENCE_NOT_FOUND",
                )
            )
        ref["reference"] = f"{target}/{ids[0]}"


async def match_ids(ctx: Context, rtype: ResourceType, query: str, limit: int) -> list[str]:
    """Ids of visible resources matching a query string (for conditional interactions)."""
    params = parse_qsl(query, keep_blank_values=True)
    req = parse_search(rtype, params, strict=True, max_count=limit)
    if not req.criteria:
        raise FhirError.bad_request("A conditional interaction needs search criteria")
    req.count, req.sort = limit, []
    lookup = policy.patient_lookup(ctx.identity, req)
    page, _ = search_sql.search_statements(req, lambda t: ctx.policy(rtype, t, lookup))
    return await repository.find_ids(ctx.conn, page)


async def _write(ctx: Context, event: WriteEvent) -> Result:
    """Store the version, its indexes and audit row, then run the after-write hooks."""
    rtype, content = event.rtype, event.content
    new = NewVersion(
        rtype.name,
        event.id,
        event.version_id,
        event.now,
        event.patient_id,
        content,
        event.method,
        ctx.identity.actor,
    )
    index = indexing.extract(rtype, content) if content is not None else None
    if rtype.name == "Patient":
        ctx.patients.pop(event.id, None)  # `existing_patient` reads the new version
    subtype = {"POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}
    audit = recorder.events(
        ctx.clock,
        ctx.identity,
        subtype[event.method],
        resource_type=rtype.name,
        resource_id=event.id,
        patient_ids=[event.patient_id],
    )
    await repository.write_version(ctx.conn, new, index, audit)  # with its audit row
    await ctx.behaviours.after_write(ctx, event)
    json = orjson.dumps(content).decode() if content is not None else None
    return Result(
        201 if event.version_id == 1 else 200,
        json,
        resource_type=rtype.name,
        id=event.id,
        version_id=event.version_id,
        last_updated=event.now,
    )


async def create(
    ctx: Context,
    rtype: ResourceType,
    body: Any,
    *,
    if_none_exist: str | None = None,
    id_: str | None = None,
    system_write: bool = False,
) -> Result:
    """create (optionally conditional): 201, or 200 with the one existing match.

    `system_write`: a resource the server records on the caller's behalf (e.g. the Consent
    of a break-the-glass access): no scope check, and hooks see `event.system_write`."""
    if not system_write:
        policy.require_scope(ctx.identity, rtype, "c")
    existing = await ctx.behaviours.replay(ctx, rtype, body)
    if existing is not None:  # e.g. the same document deposited again (IHE MHD retry)
        return existing
    if if_none_exist:
        ids = await match_ids(ctx, rtype, if_none_exist, limit=2)
        if len(ids) > 1:
            raise FhirError.precondition(
                "If-None-Exist matches several resources", "AMBIGUOUS_MATCH"
            )
        if ids:
            row = await repository.get_current(ctx.conn, rtype.name, ids[0], ctx.policy(rtype))
            assert row is not None  # matched under the same policy in this transaction
            return version_headers(_result(ctx, row, 200), ctx.base, location=True)
    event = WriteEvent(
        rtype, id_ or ctx.clock.ids(), 1, "POST", ctx.clock.now(), system_write=system_write
    )
    result = await _write(ctx, await _prepare(ctx, rtype, body, event))
    return version_headers(result, ctx.base, location=True)


async def update(
    ctx: Context, rtype: ResourceType, id_: str, body: Any, *, if_match: str | None = None
) -> Result:
    """update (PUT): optimistic locking with If-Match; update-as-create where allowed."""
    policy.require_scope(ctx.identity, rtype, "u")
    if isinstance(body, dict) and body.get("id") != id_:
        raise FhirError.bad_request(
            "Resource id must be present and equal the id in the URL",
            "ID_MISMATCH",
            expression=[f"{rtype.name}.id"],
        )
    expected = parse_etag(if_match) if if_match else None
    current = await repository.get_current(
        ctx.conn, rtype.name, id_, ctx.policy(rtype), for_update=True
    )
    if current is None:
        if expected is not None or not rtype.update_create:
            raise FhirError.not_found(f"{rtype.name}/{id_} not found")
        if await repository.exists_any(ctx.conn, rtype.name, id_):
            raise FhirError.not_found(f"{rtype.name}/{id_} not found")
        return await create(ctx, rtype, body, id_=id_)
    if expected is not None and (current.deleted or expected != current.version_id):
        raise FhirError.precondition(
            f"If-Match {if_match} does not match current version {current.version_id}",
            "VERSION_CONFLICT",
        )
    return await write_update(ctx, rtype, current, body)


async def write_update(
    ctx: Context,
    rtype: ResourceType,
    current: StoredRow,
    body: Any,
    method: str = "PUT",
    *,
    system_write: bool = False,
) -> Result:
    """Write `body` as the next version of `current` (locked by the caller): update, patch,
    and system writes that hooks request (`HookContext.write_update`)."""
    event = WriteEvent(
        rtype,
        current.id,
        current.version_id + 1,
        method,
        ctx.clock.now(),
        previous=current,
        system_write=system_write,
    )
    result = await _write(ctx, await _prepare(ctx, rtype, body, event))
    return version_headers(result, ctx.base, content_location=True)


async def delete(ctx: Context, rtype: ResourceType, id_: str) -> Result:
    """delete: a tombstone version; read then answers 410, history keeps the versions."""
    policy.require_scope(ctx.identity, rtype, "d")
    current = await repository.get_current(
        ctx.conn, rtype.name, id_, ctx.policy(rtype), for_update=True
    )
    if current is None:
        raise FhirError.not_found(f"{rtype.name}/{id_} not found")
    if current.deleted:
        return Result(204, resource_type=rtype.name, id=id_, version_id=current.version_id)
    event = WriteEvent(
        rtype,
        id_,
        current.version_id + 1,
        "DELETE",
        ctx.clock.now(),
        patient_id=current.patient_id,
        previous=current,
    )
    await ctx.behaviours.before_write(ctx, event)  # a deletion stores no content
    event.content = None
    result = await _write(ctx, event)
    result.status = 204
    return version_headers(result, ctx.base)


# ---------------------------------------------------------------- history and search


async def search(
    ctx: Context,
    rtype: ResourceType,
    params: list[tuple[str, str]],
    *,
    strict: bool = False,
) -> Result:
    """Type search: a searchset Bundle with total and paging links."""
    policy.require_scope(ctx.identity, rtype, "s")
    implied = ctx.behaviours.default_search(rtype.name, params)
    req = parse_search(
        rtype,
        [*params, *implied],
        strict=strict,
        default_count=ctx.settings.default_page_size,
        max_count=ctx.settings.max_page_size,
    )
    if implied:  # applied, but not what the client asked: links and audit show the request
        req.used = [u for u in req.used if u not in implied]
    return await run_search(ctx, req)


def _include_policy(ctx: Context) -> search_sql.TypePolicy:
    """Included resources: the same visibility predicate, and a read scope on their type."""

    def of(rtype: ResourceType, table: Table) -> ColumnElement[bool]:
        if not ctx.identity.allows(rtype.name, "r"):
            return false()
        return ctx.policy(rtype, table)

    return of


async def _included(ctx: Context, req: SearchRequest, rows: list[Any]) -> list[Any]:
    """_include / _revinclude rows (type, id, JSON, patient), then one :iterate round."""
    seen = {(req.rtype.name, id_) for id_, _, _ in rows}
    sources = sorted(seen)
    out: list[Any] = []
    for round_ in (0, 1):
        includes = [d for d in req.include if round_ == 0 or d.iterate]
        revincludes = [d for d in req.revinclude if round_ == 0 or d.iterate]
        stmt = search_sql.include_statement(includes, revincludes, sources, _include_policy(ctx))
        if stmt is None:
            break
        new = [m for m in await ctx.conn.execute(stmt) if (m[0], m[1]) not in seen]
        seen.update((m[0], m[1]) for m in new)
        out += new
        sources = [(m[0], m[1]) for m in new]
        if not sources:
            break
    return out


async def _projected(ctx: Context, rows: list[Any]) -> set[str]:
    """Patients of a lookup's answer that the caller sees only as a projection (no access)."""
    ids = [id_ for id_, _, _ in rows]
    if not ids or policy.is_software(ctx.identity):
        return set(ids)
    full = await repository.visible_ids(ctx.conn, "Patient", ids, ctx.policy(REGISTRY["Patient"]))
    return set(ids) - set(full)


async def _matches(
    ctx: Context, req: SearchRequest, policies: search_plan.Policies
) -> tuple[list[tuple[str, str, str | None]], int | None, list[str | None]]:
    """The page's rows (id, JSON, patient), the total, and for `_summary=count` the patients
    counted (for the audit)."""
    distributed = await routing.distributed(ctx.conn)
    if req.summary != "count" and not distributed and raw.autocommit(ctx.conn):
        # the hot path (ITI-67): compiled once per shape, run on the driver
        rows, total = await search_plan.run(ctx.conn, req, policies, total=req.total != "none")
        return rows, total, []
    page, count = search_sql.search_statements(
        req, policies.policy_for, policies.type_policy, pin_patient=distributed
    )
    if req.summary != "count":
        rows, total = await repository.run_search(
            ctx.conn, page, None if req.total == "none" else count
        )
        return rows, total, []
    total = (await repository.run_search(ctx.conn, page.limit(0), count))[1]
    # the audit names whose data was counted
    counted = await repository.patients_of(ctx.conn, page, MAX_AUDITED_PATIENTS) if total else []
    return [], total, counted


async def run_search(ctx: Context, req: SearchRequest) -> Result:
    """Execute a parsed search and render the searchset Bundle."""
    rtype = req.rtype
    lookup = policy.patient_lookup(ctx.identity, req)
    chained = policy.chain_lookup(req)
    policies = search_plan.Policies(
        lambda t: ctx.policy(rtype, t, lookup),
        lambda rt, t: ctx.policy(rt, t, chained if rt.name == "Patient" else None),
    )
    summary_count = req.summary == "count"
    rows, total, counted = await _matches(ctx, req, policies)
    included = await _included(ctx, req, rows) if rows and (req.include or req.revinclude) else []
    patients = [p for _, _, p in rows] + [m[3] or None for m in included] + counted
    patients = patients or [ctx.identity.patient_id]
    await recorder.record(
        ctx.conn,
        ctx.clock,
        ctx.identity,
        "search",
        resource_type=rtype.name,
        patient_ids=patients,
        query="&".join(f"{k}={v}" for k, v in req.used),
        detail="patient-lookup" if lookup else None,
    )
    if lookup:
        lookups.observe(ctx.identity, len(rows) if not summary_count else total or 0)
    projected = await _projected(ctx, rows) if lookup else set()
    subsetted = search_mod.subsetting(req)
    replaced = await ctx.after_read(rtype, [(i, p, j) for i, j, p in rows if j is not None])
    replaced_included: dict[tuple[str, str], str] = {}
    for type_ in {m[0] for m in included}:
        found = [(m[1], m[3], m[2]) for m in included if m[0] == type_]
        got = await ctx.after_read(REGISTRY[type_], found)
        replaced_included |= {(type_, id_): json for id_, json in got.items()}
    entries = []
    for id_, json, _ in rows:
        json = project_patient(json) if id_ in projected else ctx.render(rtype, json)
        json = replaced.get(id_, json)
        entries.append(
            bundles.Entry(
                f"{ctx.base}/{rtype.name}/{id_}",
                search_mod.subset(req, json) if subsetted else json,
                "match",
            )
        )
    entries += [
        bundles.Entry(
            f"{ctx.base}/{type_}/{id_}",
            replaced_included.get((type_, id_)) or ctx.render(REGISTRY[type_], json),
            "include",
        )
        for type_, id_, json, _ in included
    ]
    links = bundles.page_links(
        f"{ctx.base}/{rtype.name}", req.used, req.offset, req.count, total, len(rows)
    )
    if summary_count:
        links = links[:1]  # self only: there are no pages to follow
    return searchset(ctx, entries, total, links)


def searchset(
    ctx: Context, entries: list[bundles.Entry], total: int | None, links: list[tuple[str, str]]
) -> Result:
    """A searchset Bundle answer (an id and timestamp of its own)."""
    body = bundles.bundle(
        "searchset",
        entries,
        total=total,
        links=links,
        bundle_id=ctx.clock.ids(),
        timestamp=format_instant(ctx.clock.now()),
    )
    return Result(200, body)
