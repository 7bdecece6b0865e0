"""Signing the patient in at the configured patient OIDC provider (authorization code).

This server is a client of the provider: it sends the browser to the provider's
authorization endpoint, exchanges the code it gets back at the provider's token endpoint
(client_secret_post), verifies the ID token exactly as the bearer tokens of that provider are
verified (`auth.oidc.OidcSource`: keys, issuer, audience, times) plus the nonce, and finds the
patient's space by the INS claim.
"""

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from espace_api.auth.jwt import TokenError, peek
from espace_api.auth.oidc import OidcProvider, OidcSource
from espace_api.storage.auth_repository import AuthRepository

log = logging.getLogger(__name__)


class LoginError(Exception):
    """The patient could not be signed in; `message` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SignedIn:
    """Whom the provider signed in."""

    patient_id: str
    subject: str


class PatientLogin:
    """One patient OIDC provider, used for app authorisations."""

    def __init__(
        self,
        provider: OidcProvider,
        source: OidcSource,
        repo: AuthRepository,
        *,
        callback_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not (provider.authorization_url and provider.token_url and provider.client_id):
            raise ValueError("the login provider needs authorization_url, token_url, client_id")
        self.provider = provider
        self.source = source
        self.repo = repo
        self.callback_url = callback_url
        self.transport = transport

    def redirect(self, state: str, nonce: str) -> str:
        """The provider's authorization URL for one sign-in."""
        query = {
            "response_type": "code",
            "client_id": self.provider.client_id,
            "redirect_uri": self.callback_url,
            "scope": "openid",
            "state": state,
            "nonce": nonce,
        }
        return f"{self.provider.authorization_url}?{urlencode(query)}"

    async def sign_in(self, code: str, nonce: str) -> SignedIn:
        """Exchange the provider's code, verify its ID token, find the patient's space."""
        id_token = await self._exchange(code)
        try:
            unverified = peek(id_token)
            verified = await self.source.verify(id_token, unverified)
        except TokenError as exc:
            log.warning("patient sign-in refused: %s", exc.code)
            raise LoginError("the identity provider's answer could not be verified") from None
        if unverified.claims.get("nonce") != nonce:
            raise LoginError("the identity provider's answer is not for this sign-in")
        if verified.ins is None:
            raise LoginError("the identity provider gave no health identifier")
        system, value = verified.ins
        found = await self.repo.patients_by_identifier(system, value)
        if len(found) != 1:
            raise LoginError("no single health space matches this identity")
        return SignedIn(found[0], verified.subject)

    async def _exchange(self, code: str) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.callback_url,
            "client_id": self.provider.client_id or "",
            "client_secret": self.provider.client_secret or "",
        }
        assert self.provider.token_url is not None
        try:
            async with httpx.AsyncClient(
                timeout=self.provider.timeout_seconds, transport=self.transport
            ) as http:
                response = await http.post(self.provider.token_url, data=form)
                response.raise_for_status()
                token = response.json().get("id_token")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("patient sign-in: token exchange failed: %s", type(exc).__name__)
            raise LoginError("the identity provider did not answer") from None
        if not isinstance(token, str):
            raise LoginError("the identity provider gave no ID token")
        return token
