"""The one FastAPI dependency every protected route goes through."""

from typing import Protocol

from fastapi import Request

from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError


class Authenticator(Protocol):
    """Turns a request into a verified Identity or raises FhirError(401)."""

    async def authenticate(self, request: Request) -> Identity: ...


class DenyAll:
    """The default until a real authenticator is configured: nobody gets in."""

    async def authenticate(self, request: Request) -> Identity:
        raise FhirError.unauthorized("no authenticator configured")


async def current_identity(request: Request) -> Identity:
    """Authenticate the request with the application's authenticator."""
    authenticator: Authenticator = request.app.state.authenticator
    identity = await authenticator.authenticate(request)
    request.state.identity = identity  # who a refusal audit names (audit/refusals.py)
    limiter = getattr(request.app.state, "limiter", None)
    if limiter is not None:
        limiter.check(identity)  # machine clients: 429 past their rate (api/limits.py)
    return identity
