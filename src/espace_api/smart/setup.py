"""Wiring SMART App Launch into the application: the Consent behaviour and the server."""

from fastapi import FastAPI

from espace_api.auth.jwt import normalise_url
from espace_api.auth.oidc import OidcSource
from espace_api.auth.services import AuthServices
from espace_api.resources.behaviour import Behaviours
from espace_api.smart.consent import AppGrants
from espace_api.smart.login import PatientLogin
from espace_api.smart.server import SmartServer


def register(behaviours: Behaviours) -> None:
    """An app grant's Consent revokes the grant when made inactive or deleted."""
    behaviours.register(["Consent"], AppGrants())


def login_of(auth: AuthServices, issuer: str) -> PatientLogin | None:
    """The patient sign-in provider: the one named by SMART_LOGIN_ISSUER, else the first
    patient provider that can sign people in (has an authorization_url)."""
    wanted = normalise_url(issuer) if issuer else None
    for provider in auth.providers:
        if provider.kind != "patient" or not provider.authorization_url:
            continue
        if wanted is not None and normalise_url(provider.issuer) != wanted:
            continue
        source = auth.authenticator.sources.get(normalise_url(provider.issuer))
        if isinstance(source, OidcSource):
            return PatientLogin(
                provider, source, auth.repo, callback_url=f"{auth.base_url}/auth/callback"
            )
    return None


def start(app: FastAPI) -> None:
    """Set `app.state.smart` (needs `app.state.auth`, installed by auth.setup)."""
    auth: AuthServices = app.state.auth
    settings = app.state.settings
    app.state.smart = SmartServer(
        settings=settings,
        auth=auth,
        engine=app.state.engine,
        clock=app.state.clock,
        behaviours=app.state.behaviours,
        login=login_of(auth, settings.smart_login_issuer),
    )
