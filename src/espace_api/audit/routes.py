"""The access history over HTTP: read-only `GET /AuditEvent` and `GET /AuditEvent/{id}`."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from espace_api.api.fhir_routes import SECURED
from espace_api.api.http import run
from espace_api.audit import service
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity

router = APIRouter()
Caller = Annotated[Identity, Depends(current_identity)]


@router.get(
    "/AuditEvent",
    tags=["AuditEvent"],
    summary="search the access history (patient: own space; operator)",
    dependencies=SECURED,
    response_class=Response,
)
async def search_audit(request: Request, identity: Caller) -> Response:
    """Who accessed the space, when, how and why (newest first)."""
    params = list(request.query_params.multi_items())
    return await run(request, identity, lambda ctx: service.search(ctx, params))


@router.get(
    "/AuditEvent/{id}",
    tags=["AuditEvent"],
    summary="read one access-history event",
    dependencies=SECURED,
    response_class=Response,
)
async def read_audit(id: str, request: Request, identity: Caller) -> Response:
    """One event of the access history."""
    return await run(request, identity, lambda ctx: service.read(ctx, id))
