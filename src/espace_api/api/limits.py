"""Limits: per-client rate of machine tokens (429 with Retry-After); request deadline (503).

A token bucket per registered client (`system` tokens: LGC software and its professionals),
in each worker: `MACHINE_RATE_PER_SECOND` requests a second on average, `MACHINE_RATE_BURST`
at once. People (patients, professionals at a screen) and operators are not limited here.
The limit is per worker process: a deployment with N workers lets a client make N times the
rate; a limit shared across hosts belongs to the gateway in front.
"""

import asyncio
import logging
import math
import time

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError, operation_outcome

log = logging.getLogger("espace_api.limits")


class RateLimiter:
    """Token buckets by client id."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def check(self, identity: Identity) -> None:
        """Take one token for a machine client, or 429 `RATE_LIMITED` with Retry-After."""
        if self.rate <= 0 or identity.kind != "system":
            return
        key = identity.client_id or identity.subject
        now = time.monotonic()
        tokens, at = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise FhirError(
                429,
                "RATE_LIMITED",
                f"Too many requests from this client: at most {self.rate:g} a second",
                issue_type="throttled",
                headers={"Retry-After": str(max(1, wait))},
            )
        if key not in self.buckets and len(self.buckets) >= self.max_clients:
            self.buckets.pop(next(iter(self.buckets)))
        self.buckets[key] = (tokens - 1.0, now)


class Deadline:
    """Pure ASGI middleware: a request still running after `seconds` is cancelled (its
    transaction rolls back) and answered 503 `REQUEST_TIMEOUT` with Retry-After, when no
    response has started yet. Uploads and downloads count too: size the timeout for the
    largest document over the slowest link you accept."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, send_wrapper)
        except TimeoutError:
            log.warning("request stopped after %.1fs", self.seconds)
            if not started:
                outcome = operation_outcome(
                    "timeout", "The request took too long and was stopped", "REQUEST_TIMEOUT"
                )
                response = Response(
                    orjson.dumps(outcome),
                    503,
                    headers={"Retry-After": "1"},
                    media_type="application/fhir+json; charset=utf-8",
                )
                await response(scope, receive, send)
