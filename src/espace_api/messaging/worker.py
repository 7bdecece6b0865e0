"""Delivering notifications: the outbox to each Subscription's rest-hook endpoint.

`NotificationWorker.run_once()` takes the due notifications (`FOR UPDATE SKIP LOCKED`, so
several workers share the outbox), POSTs each with httpx - an empty body: "something new",
no health data, as an R4 rest-hook without payload - with the Subscription's headers, and
records the outcome: a 2xx is delivered; anything else (status, timeout, refused
connection) is retried after `backoff * 2^(attempt-1)`; after `max_attempts` the
notification fails and the Subscription becomes `status = error` with the reason in
`Subscription.error` (a new version, written as the `notification-worker`). `run_forever`
calls it every `interval`; the application starts it in its lifespan
(`messaging.setup.start`) unless NOTIFICATION_INTERVAL_SECONDS is 0; tests call `run_once`
with their own clock and client.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.db.availability import unavailable
from espace_api.fhir.registry import REGISTRY
from espace_api.metrics.counters import NOTIFICATIONS
from espace_api.resources.behaviour import Behaviours
from espace_api.resources.service import Context
from espace_api.storage import message_repository as repo
from espace_api.storage import repository
from espace_api.storage.message_repository import Due

log = logging.getLogger(__name__)
WORKER = Identity(kind="operator", subject="notification-worker", client_id="notification-worker")
SUBSCRIPTION = REGISTRY["Subscription"]


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt gave: None for success, else why it failed."""

    error: str | None


class NotificationWorker:
    """Deliver due notifications, retry with exponential backoff, give up into `error`."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        clock: Clock,
        behaviours: Behaviours,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.engine, self.settings, self.clock, self.behaviours = (
            engine,
            settings,
            clock,
            behaviours,
        )
        self.client = client or httpx.AsyncClient(
            timeout=settings.notification_timeout_seconds, follow_redirects=False
        )
        self.backoff = timedelta(seconds=settings.notification_backoff_seconds)
        self.max_attempts = settings.notification_max_attempts
        self.batch = settings.notification_batch

    async def run_once(self) -> int:
        """Deliver what is due now; the number of notifications attempted."""
        now = self.clock.now()
        lease = now + timedelta(seconds=self.settings.notification_timeout_seconds * 2 + 30)
        async with self.engine.begin() as conn:
            due = await repo.claim_due(conn, now, lease, self.batch)
        if not due:
            return 0
        outcomes = await asyncio.gather(*(self._deliver(d) for d in due))
        async with self.engine.begin() as conn:
            for d, outcome in zip(due, outcomes, strict=True):
                await self._settle(conn, d, outcome)
        return len(due)

    async def _deliver(self, due: Due) -> Outcome | None:
        if due.endpoint is None:
            return None  # the Subscription is off, in error or gone: nothing to send
        headers = dict(h.split(":", 1) for h in due.headers)
        headers = {k.strip(): v.strip() for k, v in headers.items()}
        try:
            response = await self.client.post(due.endpoint, content=b"", headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(f"{type(exc).__name__}")
        if 200 <= response.status_code < 300:
            return Outcome(None)
        return Outcome(f"HTTP {response.status_code}")

    async def _settle(self, conn: AsyncConnection, due: Due, outcome: Outcome | None) -> None:
        now = self.clock.now()
        attempts = due.attempts + 1
        if outcome is None:
            NOTIFICATIONS.labels("cancelled").inc()
            await repo.settle(conn, due, "cancelled", now, attempts=due.attempts)
            return
        if outcome.error is None:
            NOTIFICATIONS.labels("delivered").inc()
            await repo.settle(conn, due, "delivered", now, attempts=attempts)
            return
        log.info(
            "notification delivery failed",
            extra={"subscription": due.subscription_id, "attempt": attempts, "why": outcome.error},
        )
        if attempts < self.max_attempts:
            NOTIFICATIONS.labels("retry").inc()
            wait = self.backoff * 2 ** (attempts - 1)
            await repo.settle(
                conn,
                due,
                "pending",
                now,
                attempts=attempts,
                error=outcome.error,
                next_attempt=now + wait,
            )
            return
        NOTIFICATIONS.labels("failed").inc()
        await repo.settle(conn, due, "failed", now, attempts=attempts, error=outcome.error)
        await self._mark_error(conn, due, f"{attempts} attempts failed, last: {outcome.error}")

    async def _mark_error(self, conn: AsyncConnection, due: Due, error: str) -> None:
        """Subscription.status = error, with the reason (a new version)."""
        ctx = Context(conn, WORKER, self.settings, self.clock, self.behaviours)
        current = await repository.get_current(
            conn, SUBSCRIPTION.name, due.subscription_id, ctx.policy(SUBSCRIPTION), for_update=True
        )
        if current is None or current.deleted or current.json is None:
            return
        content = orjson.loads(current.json)
        content["status"], content["error"] = "error", error
        await ctx.write_update(SUBSCRIPTION, current, content)

    async def run_forever(self, interval: timedelta) -> None:
        """`run_once` every `interval` until cancelled (errors are logged, not fatal)."""
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the next round tries again
                if unavailable(exc):
                    log.warning("notification worker: database unavailable, next round later")
                else:
                    log.exception("notification worker round failed")
            await asyncio.sleep(interval.total_seconds())

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
