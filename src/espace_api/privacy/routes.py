"""Privacy operations over HTTP (thin): break-the-glass, $everything, $explain."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from espace_api.api.fhir_routes import SECURED
from espace_api.api.http import operation_parameters, run
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity
from espace_api.fhir.registry import REGISTRY
from espace_api.privacy import operations

router = APIRouter()
Caller = Annotated[Identity, Depends(current_identity)]


@router.post(
    "/Patient/{id}/$break-the-glass",
    tags=["Patient"],
    summary="emergency access to a patient's space (professionals; justified, traced)",
    dependencies=SECURED,
    response_class=Response,
)
async def break_the_glass(id: str, request: Request, identity: Caller) -> Response:
    """Reason in a Parameters body (`reason`) or the `X-BTG-Reason` header."""
    reason = (await operation_parameters(request)).get("reason", {}).get("valueString")
    reason = (reason if isinstance(reason, str) else None) or request.headers.get("x-btg-reason")
    return await run(request, identity, lambda ctx: operations.break_the_glass(ctx, id, reason))


@router.get(
    "/Patient/{id}/$everything",
    tags=["Patient"],
    summary="everything in a patient's space that the caller may see (right of access)",
    dependencies=SECURED,
    response_class=Response,
)
async def everything(id: str, request: Request, identity: Caller) -> Response:
    params = list(request.query_params.multi_items())
    return await run(request, identity, lambda ctx: operations.everything(ctx, id, params))


def _add_explain(type_name: str) -> None:
    async def explain(id: str, request: Request, identity: Caller) -> Response:
        params = dict(request.query_params)
        return await run(
            request, identity, lambda ctx: operations.explain(ctx, type_name, id, params)
        )

    router.add_api_route(
        f"/{type_name}/{{id}}/$explain",
        explain,
        methods=["GET"],
        tags=[type_name],
        summary=f"why an actor can or cannot see a {type_name} (patient, operator)",
        name=f"{type_name}.explain",
        operation_id=f"{type_name}_explain",
        response_class=Response,
        dependencies=SECURED,
    )


for _rtype in REGISTRY.values():
    if _rtype.in_patient_compartment:
        _add_explain(_rtype.name)
