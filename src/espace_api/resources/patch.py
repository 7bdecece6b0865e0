"""The patch interaction: apply a JSON Patch, JSON Merge Patch or FHIRPath Patch, then
update as PUT would.

The patched resource goes through `service.write_update`, the same validation, policy,
indexing and audit path as an update. Errors: 404 absent, 410 deleted, 412 If-Match
mismatch, 422 when the patch cannot apply or leaves an invalid resource.
"""

import base64
from typing import Any, Literal

import orjson

from espace_api.access import policy
from espace_api.fhir import patch as fhir_patch
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import ResourceType
from espace_api.resources import service
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import repository

PatchKind = Literal["json-patch", "merge-patch", "fhirpath"]


def apply(kind: PatchKind, content: dict[str, Any], body: Any) -> dict[str, Any]:
    """The patched resource dict (not yet validated)."""
    if kind == "json-patch":
        return fhir_patch.apply_json_patch(content, body)
    if kind == "merge-patch":
        return fhir_patch.apply_merge_patch(content, body)
    return fhir_patch.apply_fhirpath_patch(content, body)


async def patch(
    ctx: Context,
    rtype: ResourceType,
    id_: str,
    kind: PatchKind,
    body: Any,
    *,
    if_match: str | None = None,
) -> Result:
    """patch: the new version, validated and written like an update."""
    policy.require_scope(ctx.identity, rtype, "u")
    expected = service.parse_etag(if_match) if if_match else None
    current = await repository.get_current(
        ctx.conn, rtype.name, id_, ctx.policy(rtype), for_update=True
    )
    if current is None:
        raise FhirError.not_found(f"{rtype.name}/{id_} not found")
    if current.deleted:
        raise FhirError.gone(f"{rtype.name}/{id_} was deleted")
    if expected is not None and expected != current.version_id:
        raise FhirError.precondition(
            f"If-Match {if_match} does not match current version {current.version_id}",
            "VERSION_CONFLICT",
        )
    assert current.json is not None  # not deleted
    patched = apply(kind, orjson.loads(current.json), body)
    if patched.get("resourceType") != rtype.name or patched.get("id") != id_:
        raise FhirError.unprocessable(
            "A patch may not change resourceType or id",
            "INVALID_PATCH",
            expression=[f"{rtype.name}.id"],
        )
    try:
        return await service.write_update(ctx, rtype, current, patched, method="PATCH")
    except FhirError as exc:
        if exc.status == 400:  # the patch applied but left an invalid resource
            exc.status = 422
            exc.message = f"The patched resource is invalid: {exc.message}"
        raise


def from_bundle_resource(resource: Any) -> tuple[PatchKind, Any]:
    """A PATCH entry's patch: a Binary holding JSON Patch, or a FHIRPath Patch Parameters."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        return "fhirpath", resource
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        ctype = str(resource.get("contentType", "")).split(";")[0].strip().lower()
        if ctype != fhir_patch.JSON_PATCH:
            raise FhirError(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"Binary.contentType '{ctype}' is not a supported patch format",
                issue_type="not-supported",
            )
        try:
            return "json-patch", orjson.loads(
                base64.b64decode(resource.get("data", ""), validate=True)
            )
        except (ValueError, orjson.JSONDecodeError):
            raise FhirError.bad_request(
                "Binary.data must be base64 of a JSON Patch document", "INVALID_PATCH"
            ) from None
    raise FhirError.bad_request(
        "A PATCH entry needs a Binary (JSON Patch) or Parameters (FHIRPath Patch) resource",
        "INVALID_BUNDLE",
    )
