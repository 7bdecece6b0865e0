"""Interim test identities (replaced by real tokens from the built-in issuer).

Installs, in the test app only, an authenticator that accepts `Bearer test.<json>` and
hands anything else to the configured one. Never used outside tests.
"""

import json
from typing import Any

from fastapi import Request

from espace_api.auth.identity import Identity, ScopeSet


class _TestAuthenticator:
    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    async def authenticate(self, request: Request) -> Identity:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer test."):
            data = json.loads(header.removeprefix("Bearer test."))
            data["scopes"] = ScopeSet.parse(data["scopes"])
            return Identity(**data)
        return await self.fallback.authenticate(request)


class AuthFactory:
    """Headers for each kind of caller."""

    def __init__(self, app: Any) -> None:
        self.app = app
        current = app.state.authenticator
        if not isinstance(current, _TestAuthenticator):
            app.state.authenticator = _TestAuthenticator(current)

    @staticmethod
    def _headers(**identity: Any) -> dict[str, str]:
        return {"Authorization": "Bearer test." + json.dumps(identity)}

    async def patient(self, patient_id: str, scopes: str = "patient/*.cruds") -> dict[str, str]:
        return self._headers(
            kind="patient", subject=f"ins-{patient_id}", patient_id=patient_id, scopes=scopes
        )

    async def system(
        self,
        client_id: str = "lgc-test",
        scopes: str = "system/DocumentReference.c system/Binary.c system/Patient.s system/List.c",
        organization: str = "finess:123456789",
    ) -> dict[str, str]:
        return self._headers(
            kind="system",
            subject=client_id,
            client_id=client_id,
            scopes=scopes,
            organization=organization,
        )

    async def user(self, subject: str = "rpps-10001", scopes: str = "user/*.rs") -> dict[str, str]:
        return self._headers(kind="user", subject=subject, scopes=scopes)

    async def operator(self) -> dict[str, str]:
        return self._headers(kind="operator", subject="ops", scopes="system/*.cruds operator")
