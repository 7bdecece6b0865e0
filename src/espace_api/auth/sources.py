"""Token sources: who may issue the access tokens this server accepts.

A source verifies a token it issued (algorithm, key, signature, issuer, audience, times) and
normalises its claims into a `VerifiedToken`; the identity kinds (`auth.kinds`) then turn
that into an `Identity`. The built-in issuer is one source; each external OpenID Connect
provider is another (`auth.oidc`).
"""

from dataclasses import dataclass
from typing import Any, Protocol

from espace_api.auth.identity import IdentityKind
from espace_api.auth.jwt import (
    TokenError,
    Unverified,
    check_algorithm,
    check_audience,
    check_times,
    verify_signature,
)
from espace_api.auth.keys import ServerKeys
from espace_api.clock import Clock

KINDS: tuple[IdentityKind, ...] = ("patient", "system", "user", "operator")


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose signature and claims were checked, in this server's terms."""

    source: str
    kind: IdentityKind
    subject: str
    scope: str
    expires: float
    client_id: str | None = None
    patient_id: str | None = None
    ins: tuple[str | None, str] | None = None
    organization: str | None = None
    practitioner: str | None = None
    token_id: str | None = None
    purpose: str | None = None
    profession: str | None = None
    grant_id: str | None = None


class TokenSource(Protocol):
    """Verifies the tokens of one issuer."""

    issuer: str

    async def verify(self, token: str, unverified: Unverified) -> VerifiedToken: ...


def text_claim(claims: dict[str, Any], name: str, required: bool = False) -> str | None:
    """A string claim, or None; TokenError if required and missing or not a string."""
    value = claims.get(name)
    if value is None or value == "":
        if required:
            raise TokenError("TOKEN_CLAIMS", f"token has no {name!r} claim")
        return None
    if not isinstance(value, str):
        raise TokenError("TOKEN_CLAIMS", f"token claim {name!r} is not a string")
    return value


def scope_claim(claims: dict[str, Any]) -> str:
    """`scope` (space-separated string) or `scp` (list), as one string."""
    scope = claims.get("scope", claims.get("scp", ""))
    if isinstance(scope, list):
        scope = " ".join(s for s in scope if isinstance(s, str))
    if not isinstance(scope, str):
        raise TokenError("TOKEN_CLAIMS", "token scope is not a string")
    return scope


class BuiltinSource:
    """Access tokens signed by this server's own keys (`auth.issuer`)."""

    def __init__(
        self,
        keys: ServerKeys,
        clock: Clock,
        *,
        issuer: str,
        audiences: frozenset[str],
        algorithms: frozenset[str],
        leeway: int,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.issuer = issuer
        self.audiences = audiences
        self.algorithms = algorithms
        self.leeway = leeway

    async def verify(self, token: str, unverified: Unverified) -> VerifiedToken:
        """Check a built-in token and read its claims."""
        check_algorithm(unverified.alg, self.algorithms)
        kid = unverified.kid
        found = await self.keys.public_key(kid) if kid else None
        if found is None:
            raise TokenError("TOKEN_KID", "token signing key is unknown")
        alg, key = found
        if alg != unverified.alg:
            raise TokenError("TOKEN_ALGORITHM", "token algorithm does not match its key")
        verify_signature(token, key, alg)
        claims = unverified.claims
        check_audience(claims, self.audiences)
        check_times(claims, self.clock.now(), self.leeway)
        kind = claims.get("kind")
        if kind not in KINDS:
            raise TokenError("TOKEN_CLAIMS", "token has no valid 'kind' claim")
        return VerifiedToken(
            source="builtin",
            kind=kind,
            subject=text_claim(claims, "sub", required=True) or "",
            scope=scope_claim(claims),
            expires=float(claims["exp"]),
            client_id=text_claim(claims, "client_id"),
            patient_id=text_claim(claims, "patient"),
            organization=text_claim(claims, "organization"),
            practitioner=text_claim(claims, "practitioner"),
            token_id=text_claim(claims, "jti"),
            purpose=text_claim(claims, "purpose"),
            profession=text_claim(claims, "profession"),
            grant_id=text_claim(claims, "grant"),
        )
