"""The built-in issuer: SMART Backend Services client_credentials with private_key_jwt.

A registered client signs an assertion (iss = sub = client_id, aud = token URL, exp at most
five minutes ahead, a never reused jti) with its private key; the issuer checks it against the
client's registered JWKS and returns a short-lived access token signed with the server key.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from espace_api.auth.identity import IdentityKind, ScopeSet
from espace_api.auth.jwt import (
    TokenError,
    check_algorithm,
    check_audience,
    check_times,
    key_for,
    peek,
    verify_signature,
)
from espace_api.auth.keys import ServerKeys
from espace_api.auth.scopes import narrow
from espace_api.clock import Clock
from espace_api.storage.auth_repository import AuthRepository, ClientRow

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_PRACTITIONER = re.compile(r"^[A-Za-z0-9.:-]{1,64}$")
_PROFESSION = re.compile(r"^[A-Za-z0-9]{1,16}$")  # a national profession code (TRE_G15)
_JTI = re.compile(r"^[\x21-\x7e]{1,255}$")


class OAuthError(Exception):
    """An RFC 6749 section 5.2 token-endpoint error."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        """The JSON error body."""
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class IssuedToken:
    """An access token and what the token response says about it."""

    access_token: str
    expires_in: int
    scope: str
    claims: dict[str, Any]

    def response(self) -> dict[str, Any]:
        """The OAuth token response body."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class BuiltinIssuer:
    """Mints access tokens; exchanges client assertions for them."""

    def __init__(
        self,
        repo: AuthRepository,
        keys: ServerKeys,
        clock: Clock,
        *,
        issuer: str,
        audience: str,
        token_url: str,
        ttl_seconds: int,
        assertion_algorithms: frozenset[str],
        assertion_max_seconds: int,
        leeway: int,
    ) -> None:
        self.repo = repo
        self.keys = keys
        self.clock = clock
        self.issuer = issuer
        self.audience = audience
        self.token_url = token_url
        self.ttl = ttl_seconds
        self.assertion_algorithms = assertion_algorithms
        self.assertion_max = assertion_max_seconds
        self.leeway = leeway
        self._last_purge: datetime | None = None

    async def mint(
        self,
        *,
        kind: IdentityKind,
        subject: str,
        scope: str,
        client_id: str | None = None,
        patient_id: str | None = None,
        organization: str | None = None,
        practitioner: str | None = None,
        purpose: str | None = None,
        profession: str | None = None,
        ttl_seconds: int | None = None,
        grant_id: str | None = None,
    ) -> IssuedToken:
        """Sign an access token. Used by the token endpoint, the dev CLI and tests."""
        now = int(self.clock.now().timestamp())
        ttl = ttl_seconds or self.ttl
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": self.clock.ids(),
            "kind": kind,
            "scope": scope,
        }
        optional = {
            "client_id": client_id,
            "patient": patient_id,
            "organization": organization,
            "practitioner": practitioner,
            "purpose": purpose,
            "profession": profession,
            "grant": grant_id,
        }
        claims.update({k: v for k, v in optional.items() if v})
        token = await self.keys.sign(claims)
        return IssuedToken(token, ttl, scope, claims)

    async def client_credentials(self, form: Mapping[str, str]) -> IssuedToken:
        """The token endpoint: check the grant and the client assertion, mint a token."""
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError(
                400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}"
            )
        assertion = form.get("client_assertion")
        if not assertion:
            raise OAuthError(400, "invalid_request", "client_assertion is required")
        try:
            client, claims = await self.check_assertion(assertion, form.get("client_id"))
        except TokenError as exc:
            raise OAuthError(401, "invalid_client", exc.message) from None
        if client.kind not in ("system", "operator"):
            raise OAuthError(
                400, "unauthorized_client", "this client may not use client_credentials"
            )
        requested = form.get("scope") or client.scopes
        scope = narrow(requested, ScopeSet.parse(client.scopes))
        if not scope:
            raise OAuthError(400, "invalid_scope", "none of the requested scopes may be granted")
        practitioner = claims.get("practitioner")
        if practitioner is not None and (
            not isinstance(practitioner, str) or not _PRACTITIONER.match(practitioner)
        ):
            raise OAuthError(400, "invalid_request", "practitioner claim is not an RPPS number")
        profession = claims.get("profession") if practitioner else None
        if profession is not None and (
            not isinstance(profession, str) or not _PROFESSION.match(profession)
        ):
            raise OAuthError(400, "invalid_request", "profession claim is not a profession code")
        return await self.mint(
            kind="operator" if client.kind == "operator" else "system",
            subject=client.client_id,
            scope=scope,
            client_id=client.client_id,
            organization=client.organization,
            practitioner=practitioner,
            profession=profession,
        )

    async def check_assertion(
        self, assertion: str, form_client: str | None
    ) -> tuple[ClientRow, dict[str, Any]]:
        """The registered client and the assertion's claims, once every rule is checked."""
        unverified = peek(assertion)
        claims = unverified.claims
        client_id = claims.get("iss")
        if not isinstance(client_id, str) or claims.get("sub") != client_id:
            raise TokenError("ASSERTION_CLAIMS", "assertion iss and sub must be the client_id")
        if form_client and form_client != client_id:
            raise TokenError("ASSERTION_CLAIMS", "client_id does not match the assertion")
        check_algorithm(unverified.alg, self.assertion_algorithms)
        client = await self.repo.get_client(client_id)
        if client is None or client.disabled:
            raise TokenError("CLIENT_UNKNOWN", "client is not registered or is disabled")
        candidates = [
            k
            for k in client.jwks.get("keys", [])
            if unverified.kid is None or k.get("kid") == unverified.kid
        ]
        if not candidates:
            raise TokenError("TOKEN_KID", "assertion key id is not registered for this client")
        for jwk_dict in candidates:
            try:
                verify_signature(assertion, key_for(jwk_dict, unverified.alg), unverified.alg)
                break
            except TokenError:
                continue
        else:
            raise TokenError("TOKEN_SIGNATURE", "assertion signature is invalid")
        check_audience(claims, frozenset({self.token_url}))
        now = self.clock.now()
        check_times(claims, now, self.leeway, max_lifetime=self.assertion_max)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not _JTI.match(jti):
            raise TokenError("ASSERTION_CLAIMS", "assertion needs a jti")
        expires = datetime.fromtimestamp(float(claims["exp"]), UTC) + timedelta(seconds=self.leeway)
        await self._purge(now)
        if not await self.repo.use_jti(client_id, jti, expires):
            raise TokenError("ASSERTION_REPLAY", "assertion jti was already used")
        return client, claims

    async def _purge(self, now: datetime) -> None:
        """Forget expired assertion ids, at most once a minute per process."""
        if self._last_purge is None or now - self._last_purge > timedelta(minutes=1):
            self._last_purge = now
            await self.repo.purge_jti(now)
