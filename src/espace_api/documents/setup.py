"""Wiring documents into the application: type behaviours, routes, blob store lifecycle.

`create_app` calls `register(behaviours)` (the Binary and DocumentReference rules) and
includes `documents.routes.router` before the generic FHIR routes; `start(app)` /
`stop(app)` (in the lifespan, after the engine exists) open and close the blob store and
run the sweeper as a background task when `run_sweeper` is true.
"""

import asyncio
import contextlib
from datetime import timedelta

from fastapi import FastAPI

from espace_api.blobs import open_blob_store
from espace_api.blobs.sweeper import BlobSweeper
from espace_api.documents import binary
from espace_api.documents.behaviour import BinaryContent, DocumentRules
from espace_api.resources.behaviour import Behaviours


def register(behaviours: Behaviours) -> None:
    """The documents package's rules for Binary and DocumentReference."""
    behaviours.register([binary.BINARY], BinaryContent())
    behaviours.register(["DocumentReference"], DocumentRules())


async def start(app: FastAPI, *, run_sweeper: bool = True) -> None:
    """Open the configured blob store for the app's engine; start the sweeper."""
    settings, engine, clock = app.state.settings, app.state.engine, app.state.clock
    store = await open_blob_store(settings, engine, clock)
    binary.install_store(engine, store)
    app.state.blobs = store
    if run_sweeper:
        sweeper = BlobSweeper(
            engine, store, clock, timedelta(seconds=settings.blob_sweep_grace_seconds)
        )
        interval = timedelta(seconds=settings.blob_sweep_interval_seconds)
        app.state.blob_sweeper = asyncio.create_task(sweeper.run_forever(interval))


async def stop(app: FastAPI) -> None:
    """Stop the sweeper and close the blob store."""
    task = getattr(app.state, "blob_sweeper", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    store = binary.remove_store(app.state.engine)
    if store is not None:
        await store.aclose()
