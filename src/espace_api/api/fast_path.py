"""The hot interactions served without FastAPI's routing and dependencies (issue 14):
`GET /{Type}/{id}` (read), `GET /{Type}?...` (search), `POST /{Type}` (create) and `POST /`
(batch or transaction Bundle: the ITI-65 deposits).

Patients' apps read far more than anything else is done, and vendors deposit all day. The
profile of a read showed a third of a worker's time in route matching (about 70 paths),
dependency solving and the exception-handler layers; a create, 17 %. This pure ASGI
middleware answers these requests itself, with the same pieces the routes use: the
application's authenticator, the service calls the routes build (api/calls.py),
`to_response` (formats, conditional read, Prefer) and the answers of the application's
exception handlers
(`errors.handled`: OperationOutcome, refusal audit). Anything else goes on to the
application unchanged. The access log still names the route template. Reads and searches
run in autocommit: a read's only write is its audit row (group-committed after the
connection is back in the pool, api/http.py). The routes stay for the OpenAPI document.
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from espace_api.api import calls, errors
from espace_api.api.http import run
from espace_api.auth.dependency import current_identity
from espace_api.fhir.registry import REGISTRY

_PATH = re.compile(r"/([A-Z][A-Za-z]+)(?:/([A-Za-z0-9\-.]{1,64}))?")
# Types whose read and create have their own routes (raw content).
_OWN_ROUTES = frozenset({"Binary"})


@dataclass(frozen=True)
class _Route:
    """What the access log reads of a matched route (`scope["route"].path`)."""

    path: str


def _served(name: str, interaction: str) -> bool:
    rtype = REGISTRY.get(name)
    return rtype is not None and name not in _OWN_ROUTES and interaction in rtype.interactions


_READ = {name: _Route(f"/{name}/{{id}}") for name in REGISTRY if _served(name, "read")}
_SEARCH = {name: _Route(f"/{name}") for name in _READ if _served(name, "search-type")}
_CREATE = {name: _Route(f"/{name}") for name in REGISTRY if _served(name, "create")}
_ROOT = _Route("/")

Prepare = Callable[[Request], Awaitable[calls.Call]]


class FastPath:
    """Pure ASGI middleware answering the hot interactions (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        prepare = _served_call(scope) if scope["type"] == "http" else None
        if prepare is None:
            await self.app(scope, receive, send)
            return
        await _answer(scope, receive, send, *prepare)


def _served_call(scope: Scope) -> tuple[Prepare, bool] | None:
    """How to build the service call of a request the fast path serves, and whether it runs
    in autocommit; None for any other request. Sets the route the access log names."""
    method, path = scope["method"], scope["path"]
    if method == "POST" and path == "/":
        scope["route"] = _ROOT
        return calls.bundle, False
    match = _PATH.fullmatch(path) if method in ("GET", "POST") else None
    if match is None:
        return None
    name, id_ = match[1], match[2]
    if method == "GET" and id_ is not None and name in _READ:
        scope["route"] = _READ[name]
        return (lambda r: calls.read(r, REGISTRY[name], id_)), True
    if method == "GET" and id_ is None and name in _SEARCH:
        scope["route"] = _SEARCH[name]
        return (lambda r: calls.search(r, REGISTRY[name])), True
    if method == "POST" and id_ is None and name in _CREATE:
        scope["route"] = _CREATE[name]
        return (lambda r: calls.create(r, REGISTRY[name])), False
    return None


async def _answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    prepare: Prepare,
    autocommit: bool,
) -> None:
    """Authenticate, read what the call needs of the request, run it (in autocommit for
    reads), answer; an error gets the answer the application's handlers would give."""
    request = Request(scope, receive)
    try:
        identity = await current_identity(request)
        call = await prepare(request)
        response = await run(request, identity, call, autocommit=autocommit)
    except Exception as exc:
        handled = await errors.handled(request, exc)
        if handled is None:
            raise  # the 500 guard (errors.CatchAll) answers
        response = handled
    await response(scope, receive, send)
