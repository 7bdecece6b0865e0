"""Public auth endpoints: token, JWKS, SMART discovery; operator client registration."""

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from espace_api.auth.clients import ClientRegistration, client_view
from espace_api.auth.dependency import current_identity
from espace_api.auth.forms import form_pairs
from espace_api.auth.identity import Identity
from espace_api.auth.issuer import OAuthError
from espace_api.auth.scopes import SCOPES_SUPPORTED
from espace_api.auth.services import AuthServices
from espace_api.fhir.errors import FhirError

router = APIRouter(tags=["auth"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Grants of patient-authorised apps, answered by the SMART server (smart/server.py).
APP_GRANTS = ("authorization_code", "refresh_token")
APP_CAPABILITIES = [
    "launch-standalone",
    "client-public",
    "context-standalone-patient",
    "permission-patient",
    "permission-offline",
    "permission-online",
    "sso-openid-connect",
]


def app_launch(base: str, alg: str) -> dict[str, Any]:
    """The SMART App Launch members of the discovery document."""
    return {
        "authorization_endpoint": f"{base}/auth/authorize",
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": [alg],
    }


def _services(request: Request) -> AuthServices:
    services: AuthServices = request.app.state.auth
    return services


def require_operator(identity: Identity = Depends(current_identity)) -> Identity:
    """403 unless the caller is an operator holding the `operator` scope."""
    if identity.kind != "operator" or not identity.scopes.has("operator"):
        raise FhirError.forbidden("Operator rights are required", "OPERATOR_ONLY")
    return identity


def _oauth_error(exc: OAuthError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    """An x-www-form-urlencoded body; OAuthError if not one, or if a parameter repeats."""
    form: dict[str, str] = {}
    for name, value in await form_pairs(request):
        if name in form:
            raise OAuthError(400, "invalid_request", f"parameter {name!r} is repeated")
        form[name] = value
    return form


@router.post(
    "/auth/token",
    summary="OAuth2 token endpoint: client_credentials (private_key_jwt), authorization_code "
    "(PKCE) and refresh_token",
)
async def token(request: Request) -> JSONResponse:
    """SMART Backend Services and SMART App Launch token endpoint."""
    issuer = _services(request).issuer
    if issuer is None:
        raise FhirError.not_found("The built-in token issuer is disabled")
    try:
        form = await _form(request)
        if form.get("grant_type") in APP_GRANTS:
            body = await request.app.state.smart.token(form)
        else:
            body = (await issuer.client_credentials(form)).response()
    except OAuthError as exc:
        return _oauth_error(exc)
    return JSONResponse(body, headers=NO_STORE)


@router.get("/.well-known/jwks.json", summary="Public keys of the built-in issuer")
async def jwks(request: Request) -> JSONResponse:
    """The JWKS of the built-in issuer (current key and recently retired ones)."""
    keys = _services(request).keys
    body = await keys.jwks() if keys is not None else {"keys": []}
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})


@router.get("/.well-known/smart-configuration", summary="SMART on FHIR discovery")
async def smart_configuration(request: Request) -> JSONResponse:
    """SMART App Launch 2.0 / Backend Services discovery document."""
    services = _services(request)
    settings = services.settings
    body: dict[str, Any] = {
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "token_endpoint_auth_methods_supported": [],
        "grant_types_supported": [],
        "token_endpoint_auth_signing_alg_values_supported": [],
        "access_token_signing_alg_values_supported": sorted(
            a.strip() for a in settings.auth_allowed_algorithms.split(",") if a.strip()
        ),
        "external_issuers": [
            {"issuer": p.issuer, "kind": p.kind, "jwks_uri": p.jwks_url} for p in services.providers
        ],
    }
    if services.issuer is not None:
        body.update(
            issuer=services.issuer.issuer,
            jwks_uri=services.jwks_url,
            token_endpoint=services.token_url,
            token_endpoint_auth_methods_supported=["private_key_jwt"],
            grant_types_supported=["client_credentials"],
            token_endpoint_auth_signing_alg_values_supported=sorted(
                services.issuer.assertion_algorithms
            ),
            client_registration_endpoint=f"{services.base_url}/auth/clients",
        )
        body.update(app_launch(services.base_url, settings.auth_signing_algorithm))
        body["grant_types_supported"] += list(APP_GRANTS)
        body["token_endpoint_auth_methods_supported"] += ["none"]
        body["capabilities"] += APP_CAPABILITIES
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})


@router.post("/auth/clients", summary="Register or replace a client (operator)")
async def register_client(
    request: Request, identity: Identity = Depends(require_operator)
) -> JSONResponse:
    """Create (201) or replace (200) a client from its registration."""
    services = _services(request)
    try:
        registration = ClientRegistration.model_validate(json.loads(await request.body()))
    except (ValueError, ValidationError) as exc:
        raise FhirError.bad_request(
            f"Invalid client registration: {exc}", "INVALID_CLIENT"
        ) from None
    created = await services.repo.upsert_client(
        **registration.stored(), now=request.app.state.clock.now()
    )
    row = await services.repo.get_client(registration.client_id)
    assert row is not None
    return JSONResponse(client_view(row), status_code=201 if created else 200)


@router.get("/auth/clients", summary="List registered clients (operator)")
async def list_clients(request: Request, identity: Identity = Depends(require_operator)) -> Any:
    """Every registered client."""
    return [client_view(row) for row in await _services(request).repo.list_clients()]


@router.get("/auth/clients/{client_id}", summary="One registered client (operator)")
async def get_client(
    client_id: str, request: Request, identity: Identity = Depends(require_operator)
) -> Any:
    """One client, or 404."""
    row = await _services(request).repo.get_client(client_id)
    if row is None:
        raise FhirError.not_found("Unknown client", "CLIENT_NOT_FOUND")
    return client_view(row)


@router.delete("/auth/clients/{client_id}", status_code=204, summary="Disable a client")
async def disable_client(
    client_id: str, request: Request, identity: Identity = Depends(require_operator)
) -> Response:
    """Disable a client: it gets no new tokens (issued ones expire within the token TTL)."""
    if not await _services(request).repo.disable_client(client_id, request.app.state.clock.now()):
        raise FhirError.not_found("Unknown client", "CLIENT_NOT_FOUND")
    return Response(status_code=204)
