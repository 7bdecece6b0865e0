"""External OpenID Connect providers (FranceConnect-like for patients, Pro Santé Connect-like
for professionals): tokens verified against the provider's JWKS, fetched with httpx and cached,
re-fetched when a token names an unknown `kid` (key rotation) or the cache is old.
"""

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from jose.backends.base import Key
from pydantic import BaseModel, Field, TypeAdapter, field_validator

from espace_api.auth.identity import ScopeSet
from espace_api.auth.jwt import (
    TokenError,
    Unverified,
    check_algorithm,
    check_audience,
    check_times,
    key_for,
    normalise_url,
    parse_algorithms,
    verify_signature,
)
from espace_api.auth.scopes import narrow
from espace_api.auth.sources import VerifiedToken, scope_claim, text_claim
from espace_api.clock import Clock

log = logging.getLogger(__name__)

_DEFAULT_SCOPES = {"patient": "patient/*.cruds", "user": "user/*.rs"}


class OidcProvider(BaseModel):
    """One external provider, as configured in AUTH_OIDC_PROVIDERS (a JSON list of these)."""

    issuer: str
    audience: list[str]
    jwks_url: str
    kind: Literal["patient", "user"]
    algorithms: str = "RS256,ES256,RS384,ES384"
    scopes: str = ""
    ins_claim: str = "ins"
    ins_system: str | None = None
    subject_claim: str = "sub"
    practitioner_claim: str = "sub"
    profession_claim: str = "profession"  # the national profession code (profession matrix)
    client_id_claim: str = "azp"
    timeout_seconds: float = Field(default=5.0, gt=0)
    # For signing patients in when they authorise a SMART app (smart/login.py): this server
    # is a client of the provider (authorization code, client_secret_post).
    authorization_url: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def ceiling(self) -> ScopeSet:
        """The most this provider's tokens may be granted."""
        return ScopeSet.parse(self.scopes or _DEFAULT_SCOPES[self.kind])


def parse_providers(text: str) -> list[OidcProvider]:
    """The providers configured in a JSON setting (empty text: none)."""
    if not text.strip():
        return []
    return TypeAdapter(list[OidcProvider]).validate_python(json.loads(text))


class JwksFetcher:
    """A provider's keys by kid, fetched over HTTP, refreshed on unknown kid or old age."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        min_refresh_seconds: int,
        max_age_seconds: int,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.clock = clock
        self.min_refresh = timedelta(seconds=min_refresh_seconds)
        self.max_age = timedelta(seconds=max_age_seconds)
        self.timeout = timeout_seconds
        self.transport = transport
        self.fetches = 0
        self._jwks: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], Key] = {}
        self._fetched: datetime | None = None
        self._lock = asyncio.Lock()

    async def _refresh(self, now: datetime) -> None:
        self._fetched = now  # even on failure: do not hammer a provider that is down
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
                response = await http.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                keys = response.json().get("keys", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("JWKS fetch failed: %s %s", self.url, type(exc).__name__)
            return
        jwks = {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}
        if not jwks and len(keys) == 1 and isinstance(keys[0], dict):
            jwks = {"": keys[0]}  # a single key without kid
        self._jwks = jwks
        self._keys = {}

    def _needs_refresh(self, name: str, now: datetime) -> bool:
        if self._fetched is None or now - self._fetched >= self.max_age:
            return True
        return name not in self._jwks and now - self._fetched >= self.min_refresh

    async def key(self, kid: str | None, alg: str) -> Key | None:
        """The public key named `kid` for `alg`, fetching the JWKS if needed."""
        name = kid or ""
        if self._needs_refresh(name, self.clock.now()):
            async with self._lock:  # one fetch at a time; re-check after waiting
                now = self.clock.now()
                if self._needs_refresh(name, now):
                    await self._refresh(now)
        if name not in self._jwks:
            return None
        cached = self._keys.get((name, alg))
        if cached is None:
            cached = key_for(self._jwks[name], alg)
            self._keys[(name, alg)] = cached
        return cached


def ins_claim(value: Any, default_system: str | None) -> tuple[str | None, str]:
    """An INS claim: "system|value", a plain value, or {"system": ..., "value": ...}."""
    if isinstance(value, dict):
        system, code = value.get("system"), value.get("value")
    elif isinstance(value, str) and "|" in value:
        system, code = value.split("|", 1)
    else:
        system, code = default_system, value
    if not isinstance(code, str) or not code or not (system is None or isinstance(system, str)):
        raise TokenError("TOKEN_CLAIMS", "token has no usable INS claim")
    return system or default_system, code


class OidcSource:
    """Verifies the ID/access tokens of one external provider."""

    def __init__(
        self,
        provider: OidcProvider,
        fetcher: JwksFetcher,
        clock: Clock,
        *,
        allowed_algorithms: frozenset[str],
        leeway: int,
    ) -> None:
        self.provider = provider
        self.fetcher = fetcher
        self.clock = clock
        self.issuer = normalise_url(provider.issuer)
        self.audiences = frozenset(normalise_url(a) for a in provider.audience)
        self.algorithms = parse_algorithms(provider.algorithms) & allowed_algorithms
        self.leeway = leeway

    async def verify(self, token: str, unverified: Unverified) -> VerifiedToken:
        """Check the token against the provider's keys and settings."""
        check_algorithm(unverified.alg, self.algorithms)
        key = await self.fetcher.key(unverified.kid, unverified.alg)
        if key is None:
            raise TokenError("TOKEN_KID", "token signing key is unknown to its provider")
        verify_signature(token, key, unverified.alg)
        claims = unverified.claims
        check_audience(claims, self.audiences)
        check_times(claims, self.clock.now(), self.leeway)
        p = self.provider
        ceiling = p.ceiling()
        requested = scope_claim(claims)
        asked = ScopeSet.parse(requested)
        scope = narrow(requested, ceiling) if asked.scopes else " ".join(ceiling.raw)
        common: dict[str, Any] = {
            "source": self.issuer,
            "kind": p.kind,
            "subject": text_claim(claims, p.subject_claim, required=True),
            "scope": scope,
            "expires": float(claims["exp"]),
            "client_id": text_claim(claims, p.client_id_claim),
            "token_id": text_claim(claims, "jti"),
        }
        if p.kind == "patient":
            return VerifiedToken(**common, ins=ins_claim(claims.get(p.ins_claim), p.ins_system))
        return VerifiedToken(
            **common,
            practitioner=text_claim(claims, p.practitioner_claim, required=True),
            profession=text_claim(claims, p.profession_claim),
        )
