"""Measurement operations over HTTP (thin): `$lastn`, `$daily-summary`."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from espace_api.api.fhir_routes import SECURED
from espace_api.api.http import run
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity
from espace_api.profile import operations

router = APIRouter()
Caller = Annotated[Identity, Depends(current_identity)]


@router.get(
    "/Observation/$lastn",
    tags=["Observation"],
    summary="the latest measurement(s) per code of one patient (patient, code, max)",
    dependencies=SECURED,
    response_class=Response,
)
async def lastn(request: Request, identity: Caller) -> Response:
    params = list(request.query_params.multi_items())
    return await run(request, identity, lambda ctx: operations.lastn(ctx, params))


@router.get(
    "/Observation/$daily-summary",
    tags=["Observation"],
    summary="count, min, max and mean per code and day (patient, code, date=ge&date=lt, tz)",
    dependencies=SECURED,
    response_class=Response,
)
async def daily_summary(request: Request, identity: Caller) -> Response:
    params = list(request.query_params.multi_items())
    return await run(request, identity, lambda ctx: operations.daily_summary(ctx, params))
