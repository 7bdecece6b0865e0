"""The sweeper: deletes blobs that no committed metadata references, after a grace period.

A blob is written before the metadata that points at it is committed (principle 4). If the
process dies in between, or the metadata transaction fails, the blob is left unreferenced.
The sweeper removes such a blob once it has not been touched (stored or re-stored) for
`grace`; the grace period must exceed the longest upload-to-commit time.

Safety, per blob, in one transaction: the catalogue row is locked (`FOR UPDATE SKIP LOCKED`,
so a blob whose reference is being committed, or which is being re-stored, is skipped), an
optional extra reference check runs, the row is deleted (its `blob_refs` foreign key refuses
if a reference was committed meanwhile: the blob is then kept), then the bytes are removed.
A metadata transaction can therefore never commit a reference to a swept blob.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from espace_api.blobs.base import BlobKey, BlobStore
from espace_api.clock import Clock
from espace_api.storage import blob_repository as repo

if TYPE_CHECKING:
    from espace_api.config import Settings

log = logging.getLogger(__name__)

ReferencedCheck = Callable[[AsyncConnection, list[BlobKey]], Awaitable[set[BlobKey]]]
"""Extra check: given candidate keys, return those that are referenced after all."""


@dataclass
class SweepResult:
    """What one sweep did."""

    deleted: int = 0
    kept: int = 0
    """Candidates found referenced (extra check or a reference committed meanwhile)."""
    failed: int = 0
    """Candidates whose bytes could not be removed (left for the next sweep)."""
    incomplete: int = 0
    """Leftovers of dead uploads removed (temp files, multipart uploads)."""


class BlobSweeper:
    """Removes unreferenced blobs older than `grace` from `store` (time from `clock`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        store: BlobStore,
        clock: Clock,
        grace: timedelta,
        *,
        referenced: ReferencedCheck | None = None,
        batch_size: int = 200,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.grace = grace
        self.referenced = referenced
        self.batch_size = batch_size

    async def sweep(self) -> SweepResult:
        """Sweep until no candidate is left; return the counts."""
        result = SweepResult()
        cutoff = self.clock.now() - self.grace
        while True:
            before = result.deleted
            batch = await self._sweep_batch(cutoff, result)
            # Stop on a short batch, or when a full batch deleted nothing (all kept or failed:
            # they would come back first again).
            if batch < self.batch_size or result.deleted == before:
                break
        result.incomplete = await self.store.sweep_incomplete(cutoff)
        return result

    async def _sweep_batch(self, cutoff: datetime, result: SweepResult) -> int:
        async with self.engine.begin() as conn:
            keys = await repo.lock_unreferenced(conn, cutoff, self.batch_size)
            if not keys:
                return 0
            keep = await self.referenced(conn, keys) if self.referenced else set()
            for key in keys:
                if key in keep:
                    result.kept += 1
                    continue
                try:
                    async with conn.begin_nested():
                        await repo.delete_blob(conn, key)
                        await self.store.remove_content(key)
                except IntegrityError:
                    result.kept += 1  # a reference was committed since the candidate query
                except Exception:
                    log.exception("blob sweep: could not remove %s/%s", *key)
                    result.failed += 1
                else:
                    result.deleted += 1
        return len(keys)

    async def run_forever(self, interval: timedelta) -> None:
        """Sweep every `interval` until cancelled (a background task of the app or CLI)."""
        while True:
            try:
                result = await self.sweep()
                if result.deleted or result.failed or result.incomplete:
                    log.info("blob sweep: %s", result)
            except Exception:
                log.exception("blob sweep failed")
            await asyncio.sleep(interval.total_seconds())


async def sweep_once(settings: "Settings", clock: Clock | None = None) -> SweepResult:
    """One sweep of the configured store (for a CLI command or a cron job)."""
    from espace_api.blobs import open_blob_store
    from espace_api.db.embedded import ensure_database_url
    from espace_api.db.engine import make_engine

    url = await asyncio.to_thread(ensure_database_url, settings.database_url, settings.data_dir)
    resolved = settings.model_copy(update={"database_url": url})
    engine = make_engine(resolved)
    clock = clock or Clock()
    store = await open_blob_store(resolved, engine, clock)
    try:
        grace = timedelta(seconds=settings.blob_sweep_grace_seconds)
        return await BlobSweeper(engine, store, clock, grace).sweep()
    finally:
        await store.aclose()
        await engine.dispose()
