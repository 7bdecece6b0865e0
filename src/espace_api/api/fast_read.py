"""The hot read, `GET /{Type}/{id}`, served without FastAPI's routing and dependencies.

Patients' apps read far more than anything else is done (issue 14). The profile of a read
showed a third of a worker's time in route matching (about 70 paths), dependency solving and
the exception-handler layers. This pure ASGI middleware answers the plain read of a
registered type itself, with the same pieces the route uses: the application's
authenticator, the resource service (policy, audit), `to_response` (formats, conditional
read) and the refusal path of every FhirError (OperationOutcome, refusal audit). Anything
else, and every read it does not recognise, goes on to the application unchanged. The
access log still names the route template.
"""

import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from espace_api.api.errors import refusal_response
from espace_api.api.http import run
from espace_api.auth.dependency import current_identity
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.resources import service

_PATH = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")
# Types whose read has its own route (raw content).
_OWN_ROUTES = frozenset({"Binary"})


@dataclass(frozen=True)
class _Route:
    """What the access log reads of a matched route (`scope["route"].path`)."""

    path: str


def _readable(name: str) -> ResourceType | None:
    rtype = REGISTRY.get(name)
    if rtype is None or name in _OWN_ROUTES or "read" not in rtype.interactions:
        return None
    return rtype


_TYPES = {name: rt for name in REGISTRY if (rt := _readable(name)) is not None}
_ROUTES = {name: _Route(f"/{name}/{{id}}") for name in _TYPES}


class FastRead:
    """Pure ASGI middleware answering `GET /{Type}/{id}` (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _PATH.fullmatch(scope["path"])
            rtype = _TYPES.get(match[1]) if match else None
            if match and rtype is not None:
                scope["route"] = _ROUTES[rtype.name]
                await self._read(scope, receive, send, rtype, match[2])
                return
        await self.app(scope, receive, send)

    async def _read(
        self, scope: Scope, receive: Receive, send: Send, rtype: ResourceType, id_: str
    ) -> None:
        request = Request(scope, receive)
        try:
            identity = await current_identity(request)
            response = await run(
                request, identity, lambda ctx: service.read(ctx, rtype, id_), autocommit=True
            )
        except FhirError as exc:
            response = await refusal_response(request, exc)
        await response(scope, receive, send)
