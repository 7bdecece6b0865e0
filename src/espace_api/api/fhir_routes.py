"""FHIR REST routes, one set per registered type (so the OpenAPI spec names each type)."""

from typing import Annotated
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from espace_api.api.http import FHIR_JSON, check_accept, prefer, read_body, read_resource, run
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity
from espace_api.fhir.capability import capability_statement
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.values import format_instant
from espace_api.resources import service, transaction

bearer = HTTPBearer(auto_error=False, description="SMART on FHIR access token")
Caller = Annotated[Identity, Depends(current_identity)]
SECURED = [Security(bearer)]  # documents bearer auth in OpenAPI; current_identity enforces it
FHIR_RESPONSE = {"content": {"application/fhir+json": {}}, "description": "FHIR resource"}

router = APIRouter()


@router.get("/metadata", tags=["system"], summary="CapabilityStatement")
async def metadata(request: Request) -> Response:
    """The server's CapabilityStatement, generated from the registry."""
    check_accept(request)
    settings = request.app.state.settings
    body = capability_statement(settings.base_url, format_instant(request.app.state.started))
    return Response(orjson.dumps(body), media_type=FHIR_JSON)


@router.post("/", tags=["system"], summary="batch or transaction Bundle", dependencies=SECURED)
async def batch_or_transaction(request: Request, identity: Caller) -> Response:
    """Process a batch or transaction Bundle."""
    body = await read_resource(request)
    return await run(request, identity, lambda ctx: transaction.process(ctx, body))


def _strict(request: Request) -> bool:
    return prefer(request, "handling") == "strict"


def _add_type_routes(rtype: ResourceType) -> None:
    name = rtype.name
    path = f"/{name}"
    tags = [name]

    async def search_get(request: Request, identity: Caller) -> Response:
        params = list(request.query_params.multi_items())
        return await run(
            request,
            identity,
            lambda ctx: service.search(ctx, rtype, params, strict=_strict(request)),
        )

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
            lambda ctx: service.search(ctx, rtype, params, strict=_strict(request)),
        )

    async def create(request: Request, identity: Caller) -> Response:
        body = await read_resource(request)
        cond = request.headers.get("if-none-exist")
        return await run(
            request, identity, lambda ctx: service.create(ctx, rtype, body, if_none_exist=cond)
        )

    async def read(id: str, request: Request, identity: Caller) -> Response:
        return await run(request, identity, lambda ctx: service.read(ctx, rtype, id))

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
        return await run(request, identity, lambda ctx: service.history(ctx, rtype, id, params))

    async def vread(id: str, vid: str, request: Request, identity: Caller) -> Response:
        return await run(request, identity, lambda ctx: service.vread(ctx, rtype, id, vid))

    routes = [
        ("GET", path, search_get, f"search {name}"),
        ("POST", f"{path}/_search", search_post, f"search {name} (form body)"),
        ("POST", path, create, f"create {name}"),
        ("GET", f"{path}/{{id}}", read, f"read {name}"),
        ("PUT", f"{path}/{{id}}", update, f"update {name}"),
        ("DELETE", f"{path}/{{id}}", delete, f"delete {name}"),
        ("GET", f"{path}/{{id}}/_history", history, f"history of a {name}"),
        ("GET", f"{path}/{{id}}/_history/{{vid}}", vread, f"vread {name}"),
    ]
    for method, route_path, endpoint, summary in routes:
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
