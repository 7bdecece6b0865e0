"""Test identities as real access tokens minted by the built-in issuer.

Each method returns `{"Authorization": "Bearer <jwt>"}`. Tokens go through the same
verification as production tokens (signature, issuer, audience, expiry, kind mapping).
Machine clients are registered in the database on first use (with a throwaway key: the
token is minted directly; the full client_credentials flow is tested in test_auth_issuer).
"""

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from espace_api.auth.issuer import ASSERTION_TYPE, BuiltinIssuer
from espace_api.auth.keys import generate_private_key, public_jwk, sign, signer
from espace_api.auth.services import AuthServices

_PUBLIC_KEY = public_jwk(generate_private_key("ES384"), "ES384")


DOCTOR = "10"  # national profession codes (TRE_G15), as the profession matrix reads them
PHYSIOTHERAPIST = "70"


class AuthFactory:
    """Headers for each kind of caller."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._registered: set[str] = set()

    @property
    def services(self) -> AuthServices:
        return self.app.state.auth

    @property
    def issuer(self) -> BuiltinIssuer:
        return self.services.require_issuer()

    async def register(
        self, client_id: str, kind: str, scopes: str, organization: str | None
    ) -> None:
        """Register a client once per test session (if it is not registered already)."""
        if client_id in self._registered:
            return
        repo = self.services.repo
        if await repo.get_client(client_id) is None:
            await repo.upsert_client(
                client_id=client_id,
                kind=kind,
                name=f"test client {client_id}",
                jwks={"keys": [_PUBLIC_KEY]},
                scopes=scopes,
                organization=organization,
                now=self.app.state.clock.now(),
            )
        self._registered.add(client_id)

    async def patient(self, patient_id: str, scopes: str = "patient/*.cruds") -> dict[str, str]:
        issued = await self.issuer.mint(
            kind="patient", subject=f"ins-{patient_id}", scope=scopes, patient_id=patient_id
        )
        return bearer(issued.access_token)

    async def system(
        self,
        client_id: str = "lgc-test",
        scopes: str = "system/DocumentReference.c system/Binary.c system/Patient.s system/List.c",
        organization: str = "finess:123456789",
        practitioner: str | None = None,
        profession: str | None = DOCTOR,
    ) -> dict[str, str]:
        await self.register(client_id, "system", scopes, organization)
        issued = await self.issuer.mint(
            kind="system",
            subject=client_id,
            scope=scopes,
            client_id=client_id,
            organization=organization,
            practitioner=practitioner,
            profession=profession if practitioner else None,
        )
        return bearer(issued.access_token)

    async def user(
        self,
        subject: str = "rpps-10001",
        scopes: str = "user/*.rs",
        profession: str | None = DOCTOR,
        organization: str | None = None,
    ) -> dict[str, str]:
        """A professional at a screen (a doctor unless `profession` says otherwise), working
        for `organization` (finess:<n>) when given."""
        issued = await self.issuer.mint(
            kind="user",
            subject=subject,
            scope=scopes,
            practitioner=subject,
            profession=profession,
            organization=organization,
        )
        return bearer(issued.access_token)

    async def operator(self) -> dict[str, str]:
        scopes = "system/*.cruds operator"
        await self.register("ops-test", "operator", scopes, None)
        issued = await self.issuer.mint(
            kind="operator", subject="ops-test", scope=scopes, client_id="ops-test"
        )
        return bearer(issued.access_token)


# Helpers for the auth tests: vendor keys, client assertions, forged tokens. ----------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bearer(token: str) -> dict[str, str]:
    """Authorization header for a raw token."""
    return {"Authorization": f"Bearer {token}"}


def code_of(response: Any) -> str:
    """The stable error code of an OperationOutcome response."""
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]["details"]["coding"][0]["code"]


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand (for `none` and HMAC forgeries)."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signature)}"


class VendorKey:
    """A key pair as a vendor (LGC) holds it: private key here, public JWKS registered."""

    def __init__(self, alg: str = "ES384", kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid or f"k-{uuid.uuid4().hex[:8]}"
        self.private = generate_private_key(alg)
        self.public = public_jwk(self.private, alg, kid=self.kid)
        self._signer = signer(self.private, alg)

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public]}

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return sign(claims, self._signer, self.alg, kid or self.kid)

    def assertion(self, client_id: str, token_url: str, now: datetime, **overrides: Any) -> str:
        """A client assertion valid for five minutes from `now`; overrides replace claims
        (a value of None removes the claim)."""
        ts = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "iat": ts,
            "exp": ts + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return self.sign({k: v for k, v in claims.items() if v is not None})


def token_form(assertion: str, scope: str | None = None, **extra: str) -> dict[str, str]:
    """The x-www-form-urlencoded fields of a client_credentials request."""
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }
    if scope is not None:
        form["scope"] = scope
    return form


async def server_claims(app: Any, **overrides: Any) -> dict[str, Any]:
    """Claims of a valid built-in patient token, with overrides (None removes a claim)."""
    services: AuthServices = app.state.auth
    issuer = services.require_issuer()
    ts = int(app.state.clock.now().timestamp())
    claims: dict[str, Any] = {
        "iss": issuer.issuer,
        "sub": "forged",
        "aud": issuer.audience,
        "iat": ts,
        "exp": ts + 300,
        "jti": uuid.uuid4().hex,
        "kind": "patient",
        "patient": "p-forged",
        "scope": "patient/*.rs",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def server_signed(app: Any, **overrides: Any) -> str:
    """A token signed with the server's current key (to test claim checks)."""
    keys = app.state.auth.keys
    kid, key = await keys.current()
    return sign(await server_claims(app, **overrides), key, keys.alg, kid)
