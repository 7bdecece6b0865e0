"""Wiring messaging into the application: type behaviours, the notification worker.

`create_app` calls `register(behaviours)` and includes `messaging.routes.router` before the
generic FHIR routes; `start(app)` / `stop(app)` (in the lifespan) run the notification worker
as a background task every NOTIFICATION_INTERVAL_SECONDS (0: not started; tests run
`NotificationWorker.run_once` themselves).
"""

import asyncio
import contextlib
from datetime import timedelta

from fastapi import FastAPI

from espace_api.messaging.behaviour import MessageRules, NewDocumentNotice, SubscriptionRules
from espace_api.messaging.worker import NotificationWorker
from espace_api.resources.behaviour import Behaviours


def register(behaviours: Behaviours) -> None:
    """The messaging package's rules for Communication, Subscription and DocumentReference."""
    behaviours.register(["Communication"], MessageRules())
    behaviours.register(["Subscription"], SubscriptionRules())
    behaviours.register(["DocumentReference"], NewDocumentNotice())


def worker_for(app: FastAPI) -> NotificationWorker:
    """A notification worker on the application's engine, settings, clock and rules."""
    state = app.state
    return NotificationWorker(state.engine, state.settings, state.clock, state.behaviours)


async def start(app: FastAPI) -> None:
    """Start the notification worker (unless the interval is 0)."""
    seconds = app.state.settings.notification_interval_seconds
    if seconds <= 0:
        return
    worker = worker_for(app)
    app.state.notification_worker = worker
    app.state.notification_task = asyncio.create_task(
        worker.run_forever(timedelta(seconds=seconds))
    )


async def stop(app: FastAPI) -> None:
    """Stop the notification worker."""
    task = getattr(app.state, "notification_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app.state.notification_worker.aclose()
