"""Server signing keys: generated, stored in Postgres, rotated by age, published as a JWKS.

Several processes share the keys through the `auth_signing_keys` table. The newest key signs;
when it is older than `auth_key_rotation_seconds` the next signer creates a new one (under an
advisory lock) and retires the old one, which stays published until every token it signed has
expired (token TTL plus clock skew).
"""

import base64
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jws
from jose.backends.base import Key

from espace_api.auth.jwt import public_only
from espace_api.clock import Clock
from espace_api.storage.auth_repository import AuthRepository, SigningKeyRow

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_CURVE: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


def generate_private_key(alg: str) -> PrivateKey:
    """A fresh private key for `alg` (ES256/384/512 or RS256/384/512)."""
    if alg in _CURVE:
        return ec.generate_private_key(_CURVE[alg]())
    if alg.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def private_pem(key: PrivateKey, passphrase: str | None = None) -> str:
    """PKCS#8 PEM, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def load_private_pem(pem: str, passphrase: str | None = None) -> PrivateKey:
    """Read a private key written by `private_pem`."""
    key = serialization.load_pem_private_key(
        pem.encode(), password=passphrase.encode() if passphrase else None
    )
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("unsupported private key type")
    return key


def signer(key: PrivateKey, alg: str) -> Key:
    """A python-jose signing key."""
    return jwk.construct(private_pem(key).encode(), algorithm=alg)


def thumbprint(public: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url), used as `kid`."""
    members = ("crv", "kty", "x", "y") if public["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: public[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(key: PrivateKey, alg: str, kid: str | None = None) -> dict[str, Any]:
    """The public JWK of `key` with alg, use=sig and kid (thumbprint unless given)."""
    public = public_only(signer(key, alg).public_key().to_dict())
    public.update(use="sig", alg=alg)
    public["kid"] = kid or thumbprint(public)
    return public


def sign(claims: dict[str, Any], key: Key, alg: str, kid: str) -> str:
    """A compact JWS of `claims`."""
    token: str = jws.sign(claims, key, headers={"kid": kid, "typ": "JWT"}, algorithm=alg)
    return token


class ServerKeys:
    """The built-in issuer's keys: sign with the current one, verify with any published one."""

    def __init__(
        self,
        repo: AuthRepository,
        clock: Clock,
        *,
        alg: str,
        rotation_seconds: int,
        token_ttl_seconds: int,
        leeway_seconds: int,
        passphrase: str | None = None,
    ) -> None:
        self.repo = repo
        self.clock = clock
        self.alg = alg
        self.rotation = timedelta(seconds=rotation_seconds)
        self.publish_after_retire = timedelta(seconds=token_ttl_seconds + leeway_seconds)
        self.passphrase = passphrase
        self._current: tuple[SigningKeyRow, Key] | None = None
        self._public: dict[str, tuple[SigningKeyRow, Key]] = {}

    def _new_row(self, now: datetime) -> SigningKeyRow:
        key = generate_private_key(self.alg)
        public = public_jwk(key, self.alg)
        return SigningKeyRow(
            kid=public["kid"],
            alg=self.alg,
            private_pem=private_pem(key, self.passphrase),
            public_jwk=public,
            created=now,
            retired=None,
        )

    def _remember(self, row: SigningKeyRow) -> Key:
        key = jwk.construct(row.public_jwk, algorithm=row.alg)
        self._public[row.kid] = (row, key)
        return key

    def _published(self, row: SigningKeyRow, now: datetime) -> bool:
        return row.retired is None or row.retired > now - self.publish_after_retire

    async def current(self) -> tuple[str, Key]:
        """(kid, private signing key), rotating when the current key is too old."""
        now = self.clock.now()
        if self._current and self._current[0].created > now - self.rotation:
            return self._current[0].kid, self._current[1]
        row = await self.repo.current_or_rotate(
            created_after=now - self.rotation, now=now, new_key=self._new_row
        )
        # Private keys nobody can need any more (all their tokens expired) are destroyed.
        await self.repo.delete_keys_retired_before(now - self.publish_after_retire)
        private = signer(load_private_pem(row.private_pem, self.passphrase), row.alg)
        self._current = (row, private)
        self._remember(row)
        return row.kid, private

    async def sign(self, claims: dict[str, Any]) -> str:
        """Sign `claims` with the current key."""
        kid, key = await self.current()
        return sign(claims, key, self.alg, kid)

    async def public_key(self, kid: str) -> tuple[str, Key] | None:
        """(alg, public key) for a published kid, or None (unknown or long retired)."""
        now = self.clock.now()
        cached = self._public.get(kid)
        if cached is None:
            # Possibly a key created by another process: one primary-key lookup.
            row = await self.repo.get_key(kid) if len(kid) <= 128 else None
            if row is None:
                return None
            self._remember(row)
            cached = self._public[kid]
        row, key = cached
        if not self._published(row, now):
            # Another process may have retired it since we cached it: re-read once.
            fresh = await self.repo.get_key(kid)
            if fresh is None or not self._published(fresh, now):
                return None
            key = self._remember(fresh)
            row = fresh
        return row.alg, key

    async def jwks(self) -> dict[str, Any]:
        """The public JWKS: the current key plus retired keys whose tokens may still be valid."""
        await self.current()
        now = self.clock.now()
        rows = await self.repo.published_keys(now - self.publish_after_retire)
        for row in rows:
            self._remember(row)
        return {"keys": [row.public_jwk for row in rows]}
