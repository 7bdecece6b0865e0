"""Type-level (`GET /Type/_history`) and system-level (`GET /_history`) history.

Versions newest first with `_since`, `_count` and `_offset` paging, filtered by the access
policy: the type's `visible()` predicate, or for the system level `policy.visible_any`
(an OR over every registered type the token may read). Instance history stays in service.
"""

from typing import Any

from espace_api.access import policy
from espace_api.audit import recorder
from espace_api.db.schema import resource_versions
from espace_api.fhir import bundles
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import ResourceType
from espace_api.fhir.values import date_range, format_instant
from espace_api.resources.results import Result
from espace_api.resources.service import Context, history_entry
from espace_api.storage import repository

KEPT = ("_since", "_count")


def _int(name: str, raw: str, low: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise FhirError.bad_request(f"{name} must be an integer", "INVALID_SEARCH") from None
    if value < low:
        raise FhirError.bad_request(f"{name} must be >= {low}", "INVALID_SEARCH")
    return value


def _paging(ctx: Context, params: list[tuple[str, str]]) -> dict[str, Any]:
    query = dict(params)
    count = min(
        _int("_count", query.get("_count", str(ctx.settings.default_page_size)), 0),
        ctx.settings.max_page_size,
    )
    offset = _int("_offset", query.get("_offset", "0"), 0)
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
    ctx: Context, rtype: ResourceType | None, params: list[tuple[str, str]]
) -> Result:
    """History of every visible resource of a type (or of all types when rtype is None)."""
    if rtype is not None:
        policy.require_scope(ctx.identity, rtype, "r")
        predicate = ctx.policy(rtype, resource_versions)
    else:
        predicate = policy.visible_any(ctx.identity, resource_versions)
    paging = _paging(ctx, params)
    rows, total = await repository.history(
        ctx.conn,
        resource_type=rtype.name if rtype else None,
        id_=None,
        policy=predicate,
        **paging,
    )
    await recorder.record(
        ctx.conn,
        ctx.clock,
        ctx.identity,
        "history",
        resource_type=rtype.name if rtype else None,
        patient_ids=[row.patient_id for row in rows] or [ctx.identity.patient_id],
    )
    base = f"{ctx.base}/{rtype.name}/_history" if rtype else f"{ctx.base}/_history"
    kept = [(k, v) for k, v in params if k in KEPT]
    body = bundles.bundle(
        "history",
        [history_entry(ctx.base, row) for row in rows],
        total=total,
        links=bundles.page_links(base, kept, paging["offset"], paging["count"], total, len(rows)),
        bundle_id=ctx.clock.ids(),
        timestamp=format_instant(ctx.clock.now()),
    )
    return Result(200, body)
