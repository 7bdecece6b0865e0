"""Test identities as real access tokens minted by the built-in issuer.

Each method returns `{"Authorization": "Bearer <jwt>"}`. Tokens go through the same
verification as production tokens (signature, issuer, audience, expiry, kind mapping).
Machine clients are registered in the database on first use (with a throwaway key: the
token is minted directly; the full client_credentials flow is tested in test_auth_issuer).
"""

from typing import Any

from espace_api.auth.issuer import BuiltinIssuer
from espace_api.auth.keys import generate_private_key, public_jwk
from espace_api.auth.services import AuthServices

_PUBLIC_KEY = public_jwk(generate_private_key("ES384"), "ES384")


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

    @staticmethod
    def _headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def patient(self, patient_id: str, scopes: str = "patient/*.cruds") -> dict[str, str]:
        issued = await self.issuer.mint(
            kind="patient", subject=f"ins-{patient_id}", scope=scopes, patient_id=patient_id
        )
        return self._headers(issued.access_token)

    async def system(
        self,
        client_id: str = "lgc-test",
        scopes: str = "system/DocumentReference.c system/Binary.c system/Patient.s system/List.c",
        organization: str = "finess:123456789",
        practitioner: str | None = None,
    ) -> dict[str, str]:
        await self.register(client_id, "system", scopes, organization)
        issued = await self.issuer.mint(
            kind="system",
            subject=client_id,
            scope=scopes,
            client_id=client_id,
            organization=organization,
            practitioner=practitioner,
        )
        return self._headers(issued.access_token)

    async def user(self, subject: str = "rpps-10001", scopes: str = "user/*.rs") -> dict[str, str]:
        issued = await self.issuer.mint(
            kind="user", subject=subject, scope=scopes, practitioner=subject
        )
        return self._headers(issued.access_token)

    async def operator(self) -> dict[str, str]:
        scopes = "system/*.cruds operator"
        await self.register("ops-test", "operator", scopes, None)
        issued = await self.issuer.mint(
            kind="operator", subject="ops-test", scope=scopes, client_id="ops-test"
        )
        return self._headers(issued.access_token)
