"""The bearer-token authenticator: pick the token's source by issuer, verify once, cache.

Verified identities are cached until the token expires in a bounded LRU keyed by the token's
SHA-256 (principle 5), so a token costs one signature check however often it is used.
A token issued under a SMART app grant (`Identity.grant_id`) is cached like any other, but its
grant is looked up on every request (one primary-key read): a revocation stops the very next
request in every process, whatever the cache holds.
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime

from fastapi import Request

from espace_api.auth.cache import ExpiringLRU, token_hash
from espace_api.auth.identity import Identity
from espace_api.auth.jwt import TokenError, normalise_url, peek
from espace_api.auth.kinds import IdentityKind
from espace_api.auth.sources import TokenSource
from espace_api.clock import Clock
from espace_api.fhir.errors import FhirError

REALM = "espace-api"


def token_refused(code: str, message: str, error: str = "invalid_token") -> FhirError:
    """401 with an RFC 6750 challenge naming the error."""
    description = message.replace('"', "'")
    challenge = f'Bearer realm="{REALM}", error="{error}", error_description="{description}"'
    return FhirError(
        401, code, message, issue_type="login", headers={"WWW-Authenticate": challenge}
    )


def bearer_token(request: Request) -> str:
    """The token of an `Authorization: Bearer` header; 401 if absent or malformed."""
    header = request.headers.get("authorization")
    if not header:
        # RFC 6750 section 3.1: no error code when the request carried no credentials.
        raise FhirError(
            401,
            "TOKEN_MISSING",
            "A bearer token is required",
            issue_type="login",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise token_refused("TOKEN_MALFORMED", "Authorization header is not 'Bearer <token>'")
    return token


class BearerAuthenticator:
    """Authenticates requests against the configured token sources."""

    def __init__(
        self,
        sources: Iterable[TokenSource],
        kinds: Mapping[str, IdentityKind],
        clock: Clock,
        *,
        cache_size: int,
        leeway: int,
    ) -> None:
        self.sources: dict[str, TokenSource] = {}
        for source in sources:
            issuer = normalise_url(source.issuer)
            if issuer in self.sources:
                raise ValueError(f"two token sources share the issuer {issuer}")
            self.sources[issuer] = source
        self.kinds = kinds
        self.clock = clock
        self.leeway = leeway
        self.cache: ExpiringLRU[Identity] = ExpiringLRU(cache_size)
        # Whether a SMART grant is still in force (set by `auth.services.build`).
        self.grant_active: Callable[[str, datetime], Awaitable[bool]] | None = None

    async def authenticate(self, request: Request) -> Identity:
        """The request's verified Identity."""
        return await self.identity_for(bearer_token(request))

    async def identity_for(self, token: str) -> Identity:
        """Verify `token` (or find it in the cache) and map it to an Identity."""
        key = token_hash(token)
        cached = self.cache.get(key, self.clock.now())
        if cached is not None:
            return await self._in_force(cached)
        try:
            unverified = peek(token)
            issuer = unverified.claims.get("iss")
            source = self.sources.get(normalise_url(issuer)) if isinstance(issuer, str) else None
            if source is None:
                raise TokenError("TOKEN_ISSUER", "token issuer is not trusted")
            verified = await source.verify(token, unverified)
            identity = await self.kinds[verified.kind].identity(verified)
        except TokenError as exc:
            raise token_refused(exc.code, exc.message) from None
        self.cache.put(key, identity, verified.expires + self.leeway)
        return await self._in_force(identity)

    async def _in_force(self, identity: Identity) -> Identity:
        """The identity, unless the app grant it was issued under was revoked (401)."""
        if identity.grant_id is None:
            return identity
        check = self.grant_active
        if check is None or not await check(identity.grant_id, self.clock.now()):
            raise token_refused("TOKEN_REVOKED", "the grant of this token was revoked")
        return identity
