"""The hot reads, `GET /{Type}/{id}` and `GET /{Type}?...` (search), served without
FastAPI's routing and dependencies.

Patients' apps read far more than anything else is done (issue 14). The profile of a read
showed a third of a worker's time in route matching (about 70 paths), dependency solving and
the exception-handler layers. This pure ASGI middleware answers the plain read of a
registered type itself, with the same pieces the route uses: the application's
authenticator, the resource service (policy, audit), `to_response` (formats, conditional
read) and the refusal path of every FhirError (OperationOutcome, refusal audit). Anything
else, and every read it does not recognise, goes on to the application unchanged. The
access log still names the route template. Both run in autocommit: a read's only write is
its audit row (group-committed, storage/audit_writer.py).
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from espace_api.api.errors import refusal_response
from espace_api.api.http import run, strict_handling
from espace_api.auth.dependency import current_identity
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.resources import service
from espace_api.resources.results import Result
from espace_api.resources.service import Context

_PATH = re.compile(r"/([A-Z][A-Za-z]+)(?:/([A-Za-z0-9\-.]{1,64}))?")
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
_SEARCH_ROUTES = {
    name: _Route(f"/{name}") for name, rt in _TYPES.items() if "search-type" in rt.interactions
}


class FastRead:
    """Pure ASGI middleware answering `GET /{Type}/{id}` and `GET /{Type}?...`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _PATH.fullmatch(scope["path"])
            rtype = _TYPES.get(match[1]) if match else None
            if match and rtype is not None:
                if match[2] is not None:
                    scope["route"] = _ROUTES[rtype.name]
                    await self._read(scope, receive, send, rtype, match[2])
                    return
                if rtype.name in _SEARCH_ROUTES:
                    scope["route"] = _SEARCH_ROUTES[rtype.name]
                    await self._search(scope, receive, send, rtype)
                    return
        await self.app(scope, receive, send)

    async def _read(
        self, scope: Scope, receive: Receive, send: Send, rtype: ResourceType, id_: str
    ) -> None:
        await _answer(scope, receive, send, lambda ctx: service.read(ctx, rtype, id_))

    async def _search(
        self, scope: Scope, receive: Receive, send: Send, rtype: ResourceType
    ) -> None:
        request = Request(scope, receive)
        params = list(request.query_params.multi_items())
        strict = strict_handling(request)
        await _answer(
            scope, receive, send, lambda ctx: service.search(ctx, rtype, params, strict=strict)
        )


async def _answer(
    scope: Scope, receive: Receive, send: Send, call: Callable[[Context], Awaitable[Result]]
) -> None:
    """Authenticate, run `call` in autocommit, answer (or answer the refusal)."""
    request = Request(scope, receive)
    try:
        identity = await current_identity(request)
        response = await run(request, identity, call, autocommit=True)
    except FhirError as exc:
        response = await refusal_response(request, exc)
    await response(scope, receive, send)
