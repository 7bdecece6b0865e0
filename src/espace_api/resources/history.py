"""History at every level: instance (`GET /Type/id/_history`), type (`GET /Type/_history`)
and system (`GET /_history`).

Versions newest first with `_since`, `_count` and `_offset` paging, filtered by the access
policy: the type's `visible()` predicate, or for the system level `policy.visible_any`
(an OR over every registered type the token may read).
"""

from collections.abc import Callable
from typing import Any

from espace_api.access import policy
from espace_api.audit import recorder
from espace_api.db.schema import resource_versions
from espace_api.fhir import bundles
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.search import parse_int
from espace_api.fhir.values import date_range, format_instant
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import repository
from espace_api.storage.repository import StoredRow

KEPT = ("_since", "_count")


def _paging(ctx: Context, params: list[tuple[str, str]]) -> dict[str, Any]:
    query = dict(params)
    count = min(
        parse_int("_count", query.get("_count", str(ctx.settings.default_page_size)), 0),
        ctx.settings.max_page_size,
    )
    offset = parse_int("_offset", query.get("_offset", "0"), 0)
    since = None
    if "_since" in query:
        try:
            since = date_range(query["_since"])[0]
        except ValueError:
            raise FhirError.bad_request(
                f"Invalid _since '{query['_since']}'", "INVALID_SEARCH"
            ) from None
    return {"count": count, "offset": offset, "since": since}


async def history(
    ctx: Context,
    rtype: ResourceType | None,
    params: list[tuple[str, str]],
    id_: str | None = None,
) -> Result:
    """History of one resource (id_), of every visible resource of a type, or of all types
    (rtype None)."""
    if rtype is not None:
        policy.require_scope(ctx.identity, rtype, "r")
        predicate = ctx.policy(rtype, resource_versions)
    else:
        predicate = policy.visible_any(
            ctx.identity, resource_versions, ctx.now, ctx.policy_settings
        )
    if rtype is not None and id_ is not None:
        current = await repository.get_current(ctx.conn, rtype.name, id_, ctx.policy(rtype))
        if current is None:
            raise FhirError.not_found(f"{rtype.name}/{id_} not found")
    paging = _paging(ctx, params)
    rows, total = await repository.history(
        ctx.conn,
        resource_type=rtype.name if rtype else None,
        id_=id_,
        policy=predicate,
        **paging,
    )
    await recorder.record(
        ctx.conn,
        ctx.clock,
        ctx.identity,
        "history",
        resource_type=rtype.name if rtype else None,
        resource_id=id_,
        patient_ids=[row.patient_id for row in rows] or [ctx.identity.patient_id],
    )
    path = "/".join(p for p in (rtype.name if rtype else None, id_, "_history") if p)
    base = f"{ctx.base}/{path}"
    kept = [(k, v) for k, v in params if k in KEPT]
    body = bundles.bundle(
        "history",
        [history_entry(ctx.base, row, ctx.render) for row in rows],
        total=total,
        links=bundles.page_links(base, kept, paging["offset"], paging["count"], total, len(rows)),
        bundle_id=ctx.clock.ids(),
        timestamp=format_instant(ctx.clock.now()),
    )
    return Result(200, body)


def history_entry(
    base: str, row: StoredRow, render: Callable[[ResourceType, str], str]
) -> bundles.Entry:
    """One history entry: resource (unless deleted, as `render` shows it), request and
    response."""
    method = row.method or ("DELETE" if row.deleted else "PUT")
    url = f"{row.resource_type}/{row.id}" if method != "POST" else row.resource_type
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    return bundles.Entry(
        full_url=f"{base}/{row.resource_type}/{row.id}",
        json=None
        if row.deleted or row.json is None
        else render(REGISTRY[row.resource_type], row.json),
        request={"method": method, "url": url},
        response={
            "status": status,
            "etag": f'W/"{row.version_id}"',
            "lastModified": format_instant(row.last_updated),
        },
    )
