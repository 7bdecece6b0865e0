"""Measurement operations over HTTP (thin): `$lastn`, `$daily-summary`."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from espace_api.api.fhir_routes import SECURED
from espace_api.api.http import run
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity
from espace_api.profile import operations
from espace_api.resources.results import Result
from espace_api.resources.service import Context

router = APIRouter()
Caller = Annotated[Identity, Depends(current_identity)]
Operation = Callable[[Context, list[tuple[str, str]]], Awaitable[Result]]


def _add(name: str, operation: Operation, summary: str) -> None:
    async def endpoint(request: Request, identity: Caller) -> Response:
        params = list(request.query_params.multi_items())
        return await run(request, identity, lambda ctx: operation(ctx, params))

    router.add_api_route(
        f"/Observation/${name}",
        endpoint,
        methods=["GET"],
        tags=["Observation"],
        summary=summary,
        name=f"Observation.{name}",
        operation_id=f"Observation_{name.replace('-', '_')}",
        response_class=Response,
        dependencies=SECURED,
    )


_add(
    "lastn",
    operations.lastn,
    "the latest measurement(s) per code of one patient (patient, code, max)",
)
_add(
    "daily-summary",
    operations.daily_summary,
    "count, min, max and mean per code and day (patient, code, date=ge&date=lt, tz)",
)
