"""Parse and validate incoming resources with fhir.resources R4B models."""

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import ResourceType

MAX_ISSUES = 20
# Large base64 payloads skip the model pass (it would copy, check and re-encode megabytes):
# the write path decodes them strictly and moves them to the blob store
# (documents.binary.decode_data), so they are never stored in resource JSON.
PAYLOAD_FIELDS = {"Binary": "data"}


def parse_json(body: bytes) -> Any:
    """Decode a JSON body or raise 400."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError.bad_request(f"Body is not valid JSON: {exc}", "INVALID_JSON") from None
    if b"\\u0000" in body:  # Postgres text and jsonb cannot hold NUL (it was a 500)
        raise FhirError.bad_request("Strings cannot contain NUL (\\u0000)", "INVALID_JSON")
    return parsed


def _expression(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _empty_required(model: BaseModel, path: str) -> str | None:
    """The first required element given as `[]` (the models accept it; the canonical JSON
    would then drop it and store a resource missing a required element)."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        where = f"{path}.{field.alias or name}"
        if isinstance(value, list):
            if not value and field.is_required():
                return where
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found = _empty_required(item, f"{where}[{i}]")
                    if found:
                        return found
        elif isinstance(value, BaseModel):
            found = _empty_required(value, where)
            if found:
                return found
    return None


def validate(rtype: ResourceType, content: Any) -> dict[str, Any]:
    """Validate a resource dict; return its canonical FHIR JSON form as a dict.

    Structural errors (unknown element, wrong datatype, bad format) -> 400 OperationOutcome
    with one issue per problem, each naming the element (FHIRPath-like expression).
    """
    if not isinstance(content, dict):
        raise FhirError.bad_request("A resource must be a JSON object", "INVALID_RESOURCE")
    if content.get("resourceType") != rtype.name:
        raise FhirError.bad_request(
            f"resourceType must be '{rtype.name}'",
            "WRONG_RESOURCE_TYPE",
            expression=["resourceType"],
        )
    payload_field = PAYLOAD_FIELDS.get(rtype.name)
    payload = content.get(payload_field) if payload_field else None
    if payload is not None:
        if not isinstance(payload, str):
            raise FhirError.bad_request(
                f"{rtype.name}.{payload_field} must be a base64 string",
                "INVALID_RESOURCE",
                expression=[f"{rtype.name}.{payload_field}"],
            )
        content = {k: v for k, v in content.items() if k != payload_field}
    try:
        model = rtype.model.model_validate(content)
    except ValidationError as exc:
        errors = exc.errors()[:MAX_ISSUES]
        issues: list[dict[str, Any]] = [
            {
                "severity": "error",
                "code": "structure" if e["type"] == "extra_forbidden" else "value",
                "diagnostics": f"{_expression(rtype.name, e['loc'])}: {e['msg']}",
                "expression": [_expression(rtype.name, e["loc"])],
            }
            for e in errors
        ]
        first = issues[0]
        raise FhirError(
            400,
            "INVALID_RESOURCE",
            first["diagnostics"],
            issue_type=first["code"],
            expression=first["expression"],
            extra_issues=issues[1:],
        ) from None
    except (ValueError, TypeError) as exc:
        raise FhirError.bad_request(f"Invalid {rtype.name}: {exc}", "INVALID_RESOURCE") from None
    empty = _empty_required(model, rtype.name)
    if empty is not None:
        raise FhirError.bad_request(
            f"{empty}: a required element cannot be an empty array",
            "INVALID_RESOURCE",
            expression=[empty],
        )
    canonical: dict[str, Any] = orjson.loads(model.model_dump_json())
    if payload is not None and payload_field:
        canonical[payload_field] = payload
    return canonical
