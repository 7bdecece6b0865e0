"""The auth components wired from settings (used by the app, the CLI and tests)."""

from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.auth.authenticator import BearerAuthenticator
from espace_api.auth.issuer import BuiltinIssuer
from espace_api.auth.jwt import normalise_url, parse_algorithms
from espace_api.auth.keys import ServerKeys
from espace_api.auth.kinds import all_kinds
from espace_api.auth.oidc import JwksFetcher, OidcProvider, OidcSource, parse_providers
from espace_api.auth.sources import BuiltinSource, TokenSource
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.storage.auth_repository import AuthRepository
from espace_api.storage.smart_repository import SmartRepository


@dataclass
class AuthServices:
    """Everything the auth routes, CLI and tests need."""

    settings: Settings
    repo: AuthRepository
    authenticator: BearerAuthenticator
    keys: ServerKeys | None = None
    issuer: BuiltinIssuer | None = None
    providers: list[OidcProvider] = field(default_factory=list)
    smart: SmartRepository | None = None

    @property
    def base_url(self) -> str:
        return normalise_url(self.settings.base_url)

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def require_issuer(self) -> BuiltinIssuer:
        """The built-in issuer; RuntimeError when it is disabled."""
        if self.issuer is None:
            raise RuntimeError("the built-in token issuer is disabled (AUTH_BUILTIN_ENABLED)")
        return self.issuer


def build(
    settings: Settings,
    engine: AsyncEngine,
    clock: Clock,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AuthServices:
    """Wire repository, keys, issuer, token sources and authenticator from settings."""
    repo = AuthRepository(engine)
    leeway = settings.auth_clock_skew_seconds
    allowed = parse_algorithms(settings.auth_allowed_algorithms)
    audience = normalise_url(settings.auth_audience or settings.base_url)
    sources: list[TokenSource] = []
    keys = issuer = None
    if settings.auth_builtin_enabled:
        alg = settings.auth_signing_algorithm
        if alg not in allowed or alg not in ("ES384", "RS384", "ES256", "RS256"):
            raise ValueError("AUTH_SIGNING_ALGORITHM must be in AUTH_ALLOWED_ALGORITHMS")
        keys = ServerKeys(
            repo,
            clock,
            alg=alg,
            rotation_seconds=settings.auth_key_rotation_seconds,
            token_ttl_seconds=settings.auth_token_ttl_seconds,
            leeway_seconds=leeway,
            passphrase=settings.auth_key_passphrase,
        )
        issuer_url = normalise_url(settings.issuer)
        issuer = BuiltinIssuer(
            repo,
            keys,
            clock,
            issuer=issuer_url,
            audience=audience,
            token_url=f"{normalise_url(settings.base_url)}/auth/token",
            ttl_seconds=settings.auth_token_ttl_seconds,
            assertion_algorithms=parse_algorithms(settings.auth_assertion_algorithms),
            assertion_max_seconds=settings.auth_assertion_max_seconds,
            leeway=leeway,
        )
        sources.append(
            BuiltinSource(
                keys,
                clock,
                issuer=issuer_url,
                audiences=frozenset({audience}),
                algorithms=allowed,
                leeway=leeway,
            )
        )
    providers = parse_providers(settings.auth_oidc_providers)
    for provider in providers:
        fetcher = JwksFetcher(
            provider.jwks_url,
            clock,
            min_refresh_seconds=settings.auth_jwks_min_refresh_seconds,
            max_age_seconds=settings.auth_jwks_max_age_seconds,
            timeout_seconds=provider.timeout_seconds,
            transport=transport,
        )
        sources.append(
            OidcSource(provider, fetcher, clock, allowed_algorithms=allowed, leeway=leeway)
        )
    authenticator = BearerAuthenticator(
        sources,
        all_kinds(repo),
        clock,
        cache_size=settings.auth_token_cache_size,
        leeway=leeway,
    )
    smart = SmartRepository(engine)
    authenticator.grant_active = smart.grant_active
    return AuthServices(settings, repo, authenticator, keys, issuer, providers, smart)
