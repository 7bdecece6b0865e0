"""FHIR REST routes, one set per registered type (so the OpenAPI spec names each type)."""

from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from espace_api.api import calls
from espace_api.api.http import (
    check_accept,
    read_body,
    read_resource,
    run,
    strict_handling,
)
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity
from espace_api.fhir import formats
from espace_api.fhir.capability import capability_statement
from espace_api.fhir.errors import FhirError
from espace_api.fhir.patch import JSON_MERGE_PATCH, JSON_PATCH
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.validation import parse_json
from espace_api.fhir.values import format_instant
from espace_api.resources import conditional, service
from espace_api.resources import history as histories
from espace_api.resources import patch as patching

bearer = HTTPBearer(auto_error=False, description="SMART on FHIR access token")
Caller = Annotated[Identity, Depends(current_identity)]
SECURED = [Security(bearer)]  # documents bearer auth in OpenAPI; current_identity enforces it
FHIR_RESPONSE = {"content": {"application/fhir+json": {}}, "description": "FHIR resource"}

router = APIRouter()


@router.get("/metadata", tags=["system"], summary="CapabilityStatement")
async def metadata(request: Request) -> Response:
    """The server's CapabilityStatement, generated from the registry."""
    fmt = check_accept(request)
    settings = request.app.state.settings
    auth = getattr(request.app.state, "auth", None)
    token_url = auth.token_url if auth is not None and auth.issuer is not None else None
    body = capability_statement(
        settings.base_url, format_instant(request.app.state.started), token_url
    )
    pretty = formats.is_pretty(request.query_params.get("_pretty"))
    rendered = formats.render(orjson.dumps(body), fmt, pretty)
    return Response(rendered, media_type=formats.MEDIA_TYPES[fmt])


@router.post("/", tags=["system"], summary="batch or transaction Bundle", dependencies=SECURED)
async def batch_or_transaction(request: Request, identity: Caller) -> Response:
    """Process a batch or transaction Bundle (served by api/fast_path.py)."""
    return await run(request, identity, await calls.bundle(request))


@router.get("/_history", tags=["system"], summary="system history", dependencies=SECURED)
async def system_history(request: Request, identity: Caller) -> Response:
    """Every version the caller may read, newest first (`_since`, `_count`)."""
    params = list(request.query_params.multi_items())
    return await run(request, identity, lambda ctx: histories.history(ctx, None, params))


async def _patch_body(request: Request) -> tuple[patching.PatchKind, object]:
    """JSON Patch, JSON Merge Patch or a FHIRPath Patch Parameters body; 415 for any other
    content type. A plain `application/json` object that is not a Parameters resource is a
    merge patch (fhirpy's `patch()` sends a partial resource that way)."""
    body = await read_body(request, json_only=False)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == JSON_PATCH:
        return "json-patch", parse_json(body)
    if ctype == JSON_MERGE_PATCH:
        return "merge-patch", parse_json(body)
    if ctype in formats.JSON_TYPES:
        parsed = parse_json(body)
        if (
            ctype == "application/json"
            and isinstance(parsed, dict)
            and parsed.get("resourceType") != "Parameters"
        ):
            return "merge-patch", parsed
        return "fhirpath", parsed
    raise FhirError(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        f"PATCH Content-Type '{ctype or 'none'}' is not supported; use {JSON_PATCH}, "
        f"{JSON_MERGE_PATCH} or application/fhir+json (FHIRPath Patch Parameters)",
        issue_type="not-supported",
    )


def _add_type_routes(rtype: ResourceType) -> None:
    name = rtype.name
    path = f"/{name}"
    tags: list[str | Enum] = [name]

    async def search_get(request: Request, identity: Caller) -> Response:
        # Served by api/fast_path.py (same call, autocommit); kept for the OpenAPI document.
        return await run(request, identity, await calls.search(request, rtype), autocommit=True)

    async def search_post(request: Request, identity: Caller) -> Response:
        body = await read_body(request, json_only=False)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise FhirError(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "_search expects application/x-www-form-urlencoded",
                issue_type="not-supported",
            )
        params = list(request.query_params.multi_items()) + parse_qsl(
            body.decode(), keep_blank_values=True
        )
        return await run(
            request,
            identity,
            lambda ctx: service.search(ctx, rtype, params, strict=strict_handling(request)),
        )

    async def create(request: Request, identity: Caller) -> Response:
        # Served by api/fast_path.py (same call); kept for the OpenAPI document.
        return await run(request, identity, await calls.create(request, rtype))

    async def read(id: str, request: Request, identity: Caller) -> Response:
        # Served by api/fast_path.py (same call, autocommit); kept for the OpenAPI document.
        return await run(request, identity, await calls.read(request, rtype, id), autocommit=True)

    async def update(id: str, request: Request, identity: Caller) -> Response:
        body = await read_resource(request)
        if_match = request.headers.get("if-match")
        return await run(
            request, identity, lambda ctx: service.update(ctx, rtype, id, body, if_match=if_match)
        )

    async def delete(id: str, request: Request, identity: Caller) -> Response:
        return await run(request, identity, lambda ctx: service.delete(ctx, rtype, id))

    async def history(id: str, request: Request, identity: Caller) -> Response:
        params = list(request.query_params.multi_items())
        return await run(
            request, identity, lambda ctx: histories.history(ctx, rtype, params, id_=id)
        )

    async def type_history(request: Request, identity: Caller) -> Response:
        params = list(request.query_params.multi_items())
        return await run(request, identity, lambda ctx: histories.history(ctx, rtype, params))

    async def patch(id: str, request: Request, identity: Caller) -> Response:
        kind, body = await _patch_body(request)
        if_match = request.headers.get("if-match")
        return await run(
            request,
            identity,
            lambda ctx: patching.patch(ctx, rtype, id, kind, body, if_match=if_match),
        )

    async def conditional_update(request: Request, identity: Caller) -> Response:
        body = await read_resource(request)
        query = request.url.query
        if_match = request.headers.get("if-match")
        return await run(
            request,
            identity,
            lambda ctx: conditional.update(ctx, rtype, query, body, if_match=if_match),
        )

    async def conditional_patch(request: Request, identity: Caller) -> Response:
        kind, body = await _patch_body(request)
        query = request.url.query
        if_match = request.headers.get("if-match")
        return await run(
            request,
            identity,
            lambda ctx: conditional.patch(ctx, rtype, query, kind, body, if_match=if_match),
        )

    async def conditional_delete(request: Request, identity: Caller) -> Response:
        query = request.url.query
        return await run(request, identity, lambda ctx: conditional.delete(ctx, rtype, query))

    async def vread(id: str, vid: str, request: Request, identity: Caller) -> Response:
        return await run(request, identity, lambda ctx: service.vread(ctx, rtype, id, vid))

    allowed = rtype.interactions
    routes: list[tuple[str, str, Callable[..., Any], str]] = [
        ("GET", path, search_get, f"search {name}"),
        ("POST", f"{path}/_search", search_post, f"search {name} (form body)"),
        ("POST", path, create, f"create {name}"),
        ("PUT", path, conditional_update, f"conditional update {name} (?search)"),
        ("PATCH", path, conditional_patch, f"conditional patch {name} (?search)"),
        ("DELETE", path, conditional_delete, f"conditional delete {name} (?search)"),
        ("GET", f"{path}/_history", type_history, f"history of all {name}"),
        ("GET", f"{path}/{{id}}", read, f"read {name}"),
        ("PUT", f"{path}/{{id}}", update, f"update {name}"),
        ("PATCH", f"{path}/{{id}}", patch, f"patch {name} (JSON Patch or FHIRPath Patch)"),
        ("DELETE", f"{path}/{{id}}", delete, f"delete {name}"),
        ("GET", f"{path}/{{id}}/_history", history, f"history of a {name}"),
        ("GET", f"{path}/{{id}}/_history/{{vid}}", vread, f"vread {name}"),
    ]
    gated = {
        conditional_update: "update",
        conditional_patch: "patch",
        conditional_delete: "delete",
        type_history: "history-type",
        patch: "patch",
    }
    for method, route_path, endpoint, summary in routes:
        if endpoint in gated and gated[endpoint] not in allowed:
            continue
        router.add_api_route(
            route_path,
            endpoint,
            methods=[method],
            tags=tags,
            summary=summary,
            name=f"{name}.{endpoint.__name__}",
            operation_id=f"{name}_{endpoint.__name__}",
            response_class=Response,
            responses={200: FHIR_RESPONSE},
            dependencies=SECURED,
        )


for _rtype in REGISTRY.values():
    _add_type_routes(_rtype)
