"""Access log and request metrics without health data; the request id.

Query strings and concrete paths can carry identifiers (an INS in `?identifier=`), so the
log and the metrics name the matched route (`/Patient/{id}`) and never the URL the client
sent. Every request has an id: the client's `X-Request-ID` when it is a plain token (at most
128 letters, digits and `._:-`), else a new one; it is returned in `X-Request-ID` and set in
`REQUEST_ID` for every log line written while the request runs (logs.JsonFormatter).
"""

import logging
import re
import secrets
import time
from contextvars import ContextVar
from typing import Any

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("espace_api.access")
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUESTS = Histogram(
    "espace_http_request_duration_seconds",
    "HTTP requests by method, route template and status (no identifier in any label)",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def request_id(scope: Scope) -> str:
    """The client's X-Request-ID when it is a plain token, else a new id."""
    for key, value in scope.get("headers") or ():
        if key == b"x-request-id":
            text = str(value.decode("latin-1")).strip()
            if _VALID_ID.fullmatch(text):
                return text
            break
    return secrets.token_hex(16)


class AccessLog:
    """Pure ASGI middleware (no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        rid = request_id(scope)
        token = REQUEST_ID.set(rid)
        header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            elapsed = time.perf_counter() - start
            REQUESTS.labels(scope["method"], template, str(status)).observe(elapsed)
            log.info("%s %s %d %.1fms", scope["method"], template, status, elapsed * 1000)
            REQUEST_ID.reset(token)
