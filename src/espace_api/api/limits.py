"""Limits: per-client rate of machine tokens (429 with Retry-After); request deadline (503);
draining on SIGTERM (503 for new requests while the running ones finish).

A token bucket per registered client (`system` tokens: LGC software and its professionals),
in each worker: `MACHINE_RATE_PER_SECOND` requests a second on average, `MACHINE_RATE_BURST`
at once. People (patients, professionals at a screen) and operators are not limited here.
The limit is per worker process: a deployment with N workers lets a client make N times the
rate; a limit shared across hosts belongs to the gateway in front.
"""

import asyncio
import logging
import math
import signal
import threading
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from espace_api.api.errors import outcome_response
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

        deadline = asyncio.timeout(self.seconds)
        try:
            async with deadline:
                await self.app(scope, receive, send_wrapper)
        except TimeoutError:
            if not deadline.expired():
                raise  # not ours (e.g. a database connect that timed out): errors.py
            log.warning("request stopped after %.1fs", self.seconds)
            if not started:
                outcome = operation_outcome(
                    "timeout", "The request took too long and was stopped", "REQUEST_TIMEOUT"
                )
                await outcome_response(503, outcome, {"Retry-After": "1"})(scope, receive, send)


class Draining:
    """Pure ASGI middleware: once the process is draining (`app.state.draining`, set by
    `install_drain` on SIGTERM), new requests get 503 `DRAINING` with Retry-After so that a
    load balancer moves them elsewhere; `/healthz` (liveness) still answers. Requests already
    running are not touched: they finish before the server stops."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope.get("app")
        if (
            scope["type"] == "http"
            and getattr(getattr(app, "state", None), "draining", False)
            and scope["path"] != "/healthz"
        ):
            outcome = operation_outcome(
                "transient", "This instance is shutting down: retry", "DRAINING"
            )
            headers = {"Retry-After": "1", "Connection": "close"}
            await outcome_response(503, outcome, headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_drain(state: Any, seconds: float) -> None:
    """On SIGTERM, mark `state.draining` (new requests: 503) and hand the signal to the
    server's own handler `seconds` later (it then stops accepting and lets the running
    requests finish). A second SIGTERM goes to the server at once. Only in the main thread,
    and only when the server installed a handler (uvicorn does)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    loop = asyncio.get_running_loop()

    def on_term(sig: int, frame: Any) -> None:
        if getattr(state, "draining", False):
            previous(sig, frame)
            return
        state.draining = True
        log.warning("SIGTERM: draining for %.1fs before shutdown", seconds)
        loop.call_soon_threadsafe(loop.call_later, seconds, previous, sig, frame)

    signal.signal(signal.SIGTERM, on_term)
