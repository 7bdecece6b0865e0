"""The access history as patients and operators read it: `GET /AuditEvent`.

A patient reads the events of their own space; an operator reads any. Nobody updates or
deletes an event (no such route; the table refuses it too).

Search parameters: patient, date (prefixes), agent (professional RPPS, client id or token
subject), subtype, action, purpose (e.g. BTG), outcome, entity (Type/id), _count, _offset,
_sort (date or -date, default -date).
"""

from typing import Any

import orjson
from sqlalchemy import ColumnElement, false, or_, true

from espace_api.audit.events import audit_event
from espace_api.db.schema import audit_events
from espace_api.fhir import bundles
from espace_api.fhir.errors import FhirError
from espace_api.fhir.search import parse_int, split_values
from espace_api.fhir.values import format_instant, split_reference
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import audit_repository, search_sql

AUDIT = "AuditEvent"
PARAMS = ("patient", "date", "agent", "subtype", "action", "purpose", "outcome", "entity")
CONTROL = ("_count", "_offset", "_sort", "_format", "_pretty")


def _visible(ctx: Context) -> ColumnElement[bool]:
    """Which events this caller may read (403 for callers that read none)."""
    identity = ctx.identity
    if not identity.allows(AUDIT, "r") and not identity.allows(AUDIT, "s"):
        raise FhirError.forbidden(
            "Token scopes do not allow reading AuditEvent", "INSUFFICIENT_SCOPE"
        )
    if identity.kind == "operator":
        return true()
    if identity.kind == "patient":
        if identity.patient_id is None:
            return false()
        return audit_events.c.patient_id == identity.patient_id
    raise FhirError.forbidden(
        "Only a patient (their own space) or an operator reads the access history",
        "FORBIDDEN",
    )


def _clause(name: str, values: tuple[str, ...]) -> ColumnElement[bool]:
    a = audit_events.c
    if name == "date":
        return or_(*(search_sql.instant_clause(a.recorded, value) for value in values))
    if name == "patient":
        ids = [(split_reference(x) or (None, x))[1] for x in values]
        return a.patient_id.in_(ids)
    if name == "agent":
        return or_(a.practitioner.in_(values), a.client_id.in_(values), a.agent_sub.in_(values))
    if name == "entity":
        pairs = [split_reference(x) for x in values]
        return or_(
            *(
                (a.resource_type == p[0]) & (a.resource_id == p[1])
                for p in pairs
                if p is not None and p[0]
            ),
            false(),
        )
    column = {"subtype": a.subtype, "action": a.action, "purpose": a.purpose}.get(name, a.outcome)
    return column.in_(values)


async def search(ctx: Context, params: list[tuple[str, str]]) -> Result:
    """Search the access history."""
    where = [_visible(ctx)]
    count, offset, newest = ctx.settings.default_page_size, 0, True
    used: list[tuple[str, str]] = []
    for key, raw in params:
        if key == "_count":
            count = min(parse_int("_count", raw, 0), ctx.settings.max_page_size)
        elif key == "_offset":
            offset = parse_int("_offset", raw, 0)
        elif key == "_sort":
            if raw not in ("date", "-date"):
                raise FhirError.bad_request("AuditEvent sorts by date or -date", "INVALID_SEARCH")
            newest = raw == "-date"
            used.append((key, raw))
        elif key in PARAMS:
            values = split_values(raw)
            if not values:
                raise FhirError.bad_request(f"'{key}' has no value", "INVALID_SEARCH")
            try:
                where.append(_clause(key, values))
            except ValueError:
                raise FhirError.bad_request(f"Invalid date '{raw}'", "INVALID_SEARCH") from None
            used.append((key, raw))
        elif key not in CONTROL:
            continue  # unknown parameters are ignored (lenient handling)
    rows, total = await audit_repository.search_events(
        ctx.conn, where, count=count, offset=offset, newest_first=newest
    )
    entries = [
        bundles.Entry(f"{ctx.base}/{AUDIT}/{row['id']}", _json(row), "match") for row in rows
    ]
    body = bundles.bundle(
        "searchset",
        entries,
        total=total,
        links=bundles.page_links(f"{ctx.base}/{AUDIT}", used, offset, count, total, len(rows)),
        bundle_id=ctx.clock.ids(),
        timestamp=format_instant(ctx.clock.now()),
    )
    return Result(200, body)


async def read(ctx: Context, id_: str) -> Result:
    """One event of the caller's access history (404 otherwise)."""
    row = await audit_repository.get_event(ctx.conn, id_, _visible(ctx))
    if row is None:
        raise FhirError.not_found(f"{AUDIT}/{id_} not found")
    return Result(200, _json(row), resource_type=AUDIT, id=id_)


def _json(row: dict[str, Any]) -> str:
    return orjson.dumps(audit_event(row)).decode()
