"""Proof Key for Code Exchange (RFC 7636), S256 only, and the server's random handles."""

import base64
import hashlib
import hmac
import re
import secrets

from espace_api.auth.cache import token_hash

_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def challenge_of(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def valid_challenge(challenge: str) -> bool:
    """Whether `challenge` has the shape of an S256 challenge."""
    return bool(_CHALLENGE.match(challenge))


def verifier_matches(verifier: str, challenge: str) -> bool:
    """Whether `verifier` is well formed and hashes to `challenge` (constant-time compare)."""
    if not _VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(challenge_of(verifier), challenge)


def new_handle() -> str:
    """A fresh unguessable handle (codes, refresh tokens, request and consent handles)."""
    return secrets.token_urlsafe(32)


def digest(handle: str) -> bytes:
    """What the database keeps of a handle: its SHA-256."""
    return token_hash(handle)
