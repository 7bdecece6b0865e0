"""Conditional update (`PUT /Type?search`), patch (`PATCH /Type?search`) and delete
(`DELETE /Type?search`).

Matching uses `service.match_ids`, i.e. the search compiler under the caller's visibility
predicate. A transaction-scoped advisory lock on (type, criteria) serialises concurrent
conditional writes with the same criteria, so two racing "0 match -> create" requests
cannot both create.

- update: 0 match -> create (or update-as-create with the body's id, where the type allows
  it); 1 match -> update of that resource (a body id must equal it, else 400);
  several -> 412.
- patch: 0 match -> 404; 1 -> patch of that resource; several -> 412.
- delete: 0 match -> 204 (nothing to delete, as an ordinary delete of an absent resource);
  1 -> delete; several -> 412 (conditionalDelete = single).
"""

from typing import Any

from sqlalchemy import func, select

from espace_api.access import policy
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import ResourceType
from espace_api.resources import patch as patching
from espace_api.resources import service
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import repository


async def _lock(ctx: Context, rtype: ResourceType, query: str) -> None:
    key = f"conditional:{rtype.name}?{query}"
    await ctx.conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def _match(ctx: Context, rtype: ResourceType, query: str, what: str) -> list[str]:
    if not query:
        raise FhirError.bad_request(f"A conditional {what} needs search criteria")
    await _lock(ctx, rtype, query)
    ids = await service.match_ids(ctx, rtype, query, limit=2)
    if len(ids) > 1:
        raise FhirError.precondition(
            f"Conditional {what} criteria match several resources", "AMBIGUOUS_MATCH"
        )
    return ids


async def update(
    ctx: Context, rtype: ResourceType, query: str, body: Any, *, if_match: str | None = None
) -> Result:
    """Conditional update."""
    policy.require_scope(ctx.identity, rtype, "u")
    if not isinstance(body, dict):
        raise FhirError.bad_request("A resource must be a JSON object", "INVALID_RESOURCE")
    ids = await _match(ctx, rtype, query, "update")
    body_id = body.get("id")
    if ids:
        if body_id is not None and body_id != ids[0]:
            raise FhirError.bad_request(
                "Resource id differs from the id of the resource matching the criteria",
                "ID_MISMATCH",
                expression=[f"{rtype.name}.id"],
            )
        return await service.update(ctx, rtype, ids[0], {**body, "id": ids[0]}, if_match=if_match)
    if if_match:
        raise FhirError.precondition("If-Match given but nothing matches the criteria")
    if body_id is None:
        return await service.create(ctx, rtype, body)
    if not rtype.update_create:
        raise FhirError.bad_request(
            f"{rtype.name} does not allow update-as-create: omit the id",
            "UPDATE_CREATE_NOT_ALLOWED",
            expression=[f"{rtype.name}.id"],
        )
    if await repository.exists_any(ctx.conn, rtype.name, str(body_id)):
        raise FhirError.conflict(
            f"{rtype.name}/{body_id} exists but does not match the criteria", "ID_CONFLICT"
        )
    return await service.update(ctx, rtype, str(body_id), body)


async def patch(
    ctx: Context,
    rtype: ResourceType,
    query: str,
    kind: patching.PatchKind,
    body: Any,
    *,
    if_match: str | None = None,
) -> Result:
    """Conditional patch."""
    policy.require_scope(ctx.identity, rtype, "u")
    ids = await _match(ctx, rtype, query, "patch")
    if not ids:
        raise FhirError.not_found(f"No {rtype.name} matches the conditional patch criteria")
    return await patching.patch(ctx, rtype, ids[0], kind, body, if_match=if_match)


async def delete(ctx: Context, rtype: ResourceType, query: str) -> Result:
    """Conditional delete (single match)."""
    policy.require_scope(ctx.identity, rtype, "d")
    ids = await _match(ctx, rtype, query, "delete")
    if not ids:
        return Result(204, resource_type=rtype.name)
    return await service.delete(ctx, rtype, ids[0])
