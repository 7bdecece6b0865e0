"""Messaging over HTTP: `GET /Communication/$threads` (messaging/threads.py). Messages
themselves and Subscriptions go through the generic FHIR routes."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from espace_api.api.fhir_routes import SECURED
from espace_api.api.http import run
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity
from espace_api.messaging import threads

router = APIRouter()
Caller = Annotated[Identity, Depends(current_identity)]


@router.get(
    "/Communication/$threads",
    tags=["Communication"],
    summary="a patient's conversations: latest message, message and unread counts per thread",
    dependencies=SECURED,
    response_class=Response,
    operation_id="Communication_threads",
)
async def list_threads(request: Request, identity: Caller) -> Response:
    """`patient` (a patient's own space by default), `_count`, `_offset`."""
    params = list(request.query_params.multi_items())
    return await run(request, identity, lambda ctx: threads.list_threads(ctx, params))
