"""JWT checks shared by every token source: algorithm allow-list, signature, claims.

python-jose verifies signatures only (`jws.verify`); time claims are checked here against the
injected clock (principle 6), never against the wall clock inside python-jose.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jose import jwk, jws
from jose.backends.base import Key
from jose.exceptions import JOSEError

# Only asymmetric algorithms can ever be allowed: "none" and HMAC (HS*) would let anyone who
# knows a public key forge tokens, whatever the settings say.
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
MAX_TOKEN_BYTES = 16 * 1024
# JWK members that only private (or symmetric) keys have.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class TokenError(Exception):
    """A token or assertion that must be refused; `code` is stable, `message` is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Unverified:
    """A token's header and claims, decoded but not yet trusted."""

    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def alg(self) -> str:
        return str(self.header.get("alg", ""))

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) and kid else None


def parse_algorithms(text: str) -> frozenset[str]:
    """An allow-list from a comma-separated setting, keeping only asymmetric algorithms."""
    return frozenset(a.strip() for a in text.split(",") if a.strip()) & ASYMMETRIC


def peek(token: str) -> Unverified:
    """Decode header and claims without verifying anything."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise TokenError("TOKEN_MALFORMED", "token is not a compact JWS")
    try:
        header, claims = (
            jws.get_unverified_header(token),
            json.loads(jws.get_unverified_claims(token)),
        )
    except (JOSEError, ValueError, TypeError) as exc:
        raise TokenError("TOKEN_MALFORMED", "token cannot be decoded") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("TOKEN_MALFORMED", "token header or claims are not JSON objects")
    return Unverified(header, claims)


def check_algorithm(alg: str, allowed: frozenset[str]) -> None:
    """Refuse any algorithm outside the allow-list (and always none/HS*)."""
    if alg not in allowed or alg not in ASYMMETRIC:
        raise TokenError("TOKEN_ALGORITHM", f"signing algorithm {alg or 'none'!r} is not allowed")


def key_for(jwk_dict: dict[str, Any], alg: str) -> Key:
    """Construct a public key for `alg`, refusing keys of another type or curve."""
    kty = jwk_dict.get("kty")
    if alg.startswith("RS") and kty != "RSA":
        raise TokenError("TOKEN_KEY", "key type does not match the algorithm")
    if alg.startswith("ES") and (kty != "EC" or jwk_dict.get("crv") != _CURVES[alg]):
        raise TokenError("TOKEN_KEY", "key type or curve does not match the algorithm")
    if jwk_dict.get("alg") not in (None, alg):
        raise TokenError("TOKEN_KEY", "key is registered for another algorithm")
    if jwk_dict.get("use") not in (None, "sig"):
        raise TokenError("TOKEN_KEY", "key is not a signature key")
    try:
        return jwk.construct(public_only(jwk_dict), algorithm=alg)
    except (JOSEError, ValueError, TypeError) as exc:
        raise TokenError("TOKEN_KEY", "key cannot be used") from exc


def public_only(jwk_dict: dict[str, Any]) -> dict[str, Any]:
    """The JWK without any private member."""
    return {k: v for k, v in jwk_dict.items() if k not in PRIVATE_MEMBERS}


def verify_signature(token: str, key: Key, alg: str) -> None:
    """Verify the token's signature with one key and one algorithm."""
    try:
        jws.verify(token, key, algorithms=[alg])
    except (JOSEError, ValueError, TypeError) as exc:
        raise TokenError("TOKEN_SIGNATURE", "token signature is invalid") from exc


def _numeric(claims: dict[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenError("TOKEN_CLAIMS", f"token has no {name!r} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("TOKEN_CLAIMS", f"token claim {name!r} is not a number")
    return float(value)


def check_times(
    claims: dict[str, Any], now: datetime, leeway: int, max_lifetime: int | None = None
) -> None:
    """exp (required), nbf and iat against the injected clock, with `leeway` seconds.

    `max_lifetime`, when given, bounds how far ahead of now `exp` may be (client assertions).
    """
    ts = now.timestamp()
    exp = _numeric(claims, "exp", required=True)
    assert exp is not None
    if exp <= ts - leeway:
        raise TokenError("TOKEN_EXPIRED", "token has expired")
    nbf = _numeric(claims, "nbf", required=False)
    if nbf is not None and nbf > ts + leeway:
        raise TokenError("TOKEN_NOT_YET_VALID", "token is not valid yet")
    iat = _numeric(claims, "iat", required=False)
    if iat is not None and iat > ts + leeway:
        raise TokenError("TOKEN_NOT_YET_VALID", "token was issued in the future")
    if max_lifetime is not None and exp > ts + max_lifetime + leeway:
        raise TokenError(
            "TOKEN_LIFETIME", f"token expires more than {max_lifetime} seconds from now"
        )


def check_audience(claims: dict[str, Any], audiences: frozenset[str]) -> None:
    """The `aud` claim (string or list) must name one of `audiences`."""
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(v, str) and v.rstrip("/") in audiences for v in values):
        raise TokenError("TOKEN_AUDIENCE", "token audience is not this server")


def normalise_url(url: str) -> str:
    """URLs compared without a trailing slash."""
    return url.rstrip("/")
