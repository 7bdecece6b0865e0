"""SMART App Launch over HTTP (thin): authorize, sign-in callback, consent form, $revoke."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from espace_api.api.fhir_routes import SECURED
from espace_api.api.http import run
from espace_api.auth.dependency import current_identity
from espace_api.auth.forms import form_pairs
from espace_api.auth.identity import Identity
from espace_api.auth.issuer import OAuthError
from espace_api.fhir.errors import FhirError
from espace_api.smart import consent
from espace_api.smart.page import HEADERS
from espace_api.smart.server import Page, Redirect, SmartServer

router = APIRouter(tags=["auth"])
Caller = Annotated[Identity, Depends(current_identity)]


def _server(request: Request) -> SmartServer:
    server: SmartServer = request.app.state.smart
    return server


def _single(request: Request) -> dict[str, str]:
    """Query parameters; 400 if one repeats (RFC 6749 section 3.1)."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            raise FhirError.bad_request(f"Parameter {name!r} is repeated", "INVALID_REQUEST")
        params[name] = value
    return params


def _answer(outcome: Redirect | Page, status: int = 302) -> Response:
    if isinstance(outcome, Redirect):
        return RedirectResponse(outcome.url, status_code=status, headers=HEADERS)
    return HTMLResponse(outcome.html, headers=HEADERS)


@router.get(
    "/auth/authorize",
    summary="SMART App Launch authorization endpoint (authorization code with PKCE S256)",
    response_class=Response,
    responses={302: {"description": "to the patient sign-in, or back to the app with an error"}},
)
async def authorize(request: Request) -> Response:
    """Check the app's request, then send the patient to sign in at their OIDC provider."""
    return _answer(await _server(request).authorize(_single(request)))


@router.get(
    "/auth/callback",
    summary="Patient sign-in callback from the OIDC provider: shows the consent page",
    response_class=HTMLResponse,
)
async def callback(request: Request) -> Response:
    """The provider's answer: the consent page (HTML), or back to the app with an error."""
    return _answer(await _server(request).callback(_single(request)))


@router.post(
    "/auth/consent",
    summary="The patient's answer to the consent page (form post)",
    response_class=Response,
    responses={303: {"description": "back to the app with a code, or an error"}},
)
async def consent_form(request: Request) -> Response:
    """Record what the patient granted (fewer scopes than asked if they unticked some)."""
    try:
        pairs = await form_pairs(request)
    except OAuthError as exc:
        raise FhirError.bad_request(exc.description, "INVALID_REQUEST") from None
    handle = next((v for k, v in pairs if k == "request"), "")
    decision = next((v for k, v in pairs if k == "decision"), "")
    ticked = {v for k, v in pairs if k == "scope"}
    return _answer(await _server(request).consent(handle, decision, ticked), status=303)


@router.post(
    "/Consent/{id}/$revoke",
    tags=["Consent"],
    summary="the patient revokes an app's access (its grant Consent becomes inactive)",
    dependencies=SECURED,
    response_class=Response,
)
async def revoke(id: str, request: Request, identity: Caller) -> Response:
    """End the grant: the app's tokens stop working at its next request."""
    return await run(request, identity, lambda ctx: consent.revoke(ctx, id))
