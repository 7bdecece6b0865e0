"""Per-patient data keys: created on a patient's first content, unwrapped through the KMS,
re-wrapped by KEK rotation, destroyed by purge (docs/encryption.md).

Unwrapped keys are cached in memory (bounded LRU) by their wrapped form: a reader always
fetches the wrapped key with the blob's catalogue row (one query), so a key destroyed by a
purge in any process is refused at once, whatever this cache holds.
"""

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.blobs.encryption import ContentErased
from espace_api.blobs.kms import KEY_BYTES, KeyService, KeyUnavailable
from espace_api.clock import Clock
from espace_api.db.engine import autocommit_connection
from espace_api.storage import data_key_repository as repo
from espace_api.storage.data_key_repository import WrappedKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataKey:
    """A patient's data key, ready to encrypt and decrypt."""

    patient_id: str
    generation: int
    aead: AESGCM


def context(patient_id: str, generation: int) -> bytes:
    """What a wrapped key is bound to (the KMS `context`)."""
    return f"espace-data-key\0{patient_id}\0{generation}".encode()


@dataclass
class RotationResult:
    """What one `rotate` did."""

    rewrapped: int = 0
    failed: int = 0
    """Keys whose KEK is not configured (they stay as they are; see the log)."""
    remaining: dict[str, int] = field(default_factory=dict)
    """Live keys per KEK id after the run."""


class DataKeys:
    """The data keys of all patients, wrapped by `kms`."""

    def __init__(
        self,
        engine: AsyncEngine,
        kms: KeyService,
        clock: Clock | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.engine = engine
        self.kms = kms
        self.clock = clock or Clock()
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, bytes], AESGCM] = OrderedDict()

    async def current(self, patient_id: str) -> DataKey:
        """The key new content of the patient is encrypted with (created on first use).

        One autocommit query (no BEGIN/ROLLBACK round trips) on the deposit path."""
        async with autocommit_connection(self.engine) as conn:
            row = await repo.current_key(conn, patient_id)
        if row is None:
            async with self.engine.begin() as conn:
                generation = await repo.next_generation(conn, patient_id)
                raw = os.urandom(KEY_BYTES)
                wrapped = await self.kms.wrap(raw, context(patient_id, generation))
                new = WrappedKey(patient_id, generation, self.kms.current_kek_id, wrapped)
                await repo.insert_key(conn, new, self.clock.now())
            async with self.engine.connect() as conn:  # a concurrent first put may have won
                row = await repo.current_key(conn, patient_id)
            assert row is not None
        return await self.unwrap(row)

    async def unwrap(self, row: WrappedKey) -> DataKey:
        """The usable key of a stored row; `ContentErased` once destroyed."""
        if row.wrapped_key is None:
            raise ContentErased()
        cache_key = (row.kek_id, row.wrapped_key)
        aead = self._cache.get(cache_key)
        if aead is None:
            raw = await self.kms.unwrap(
                row.kek_id, row.wrapped_key, context(row.patient_id, row.generation)
            )
            aead = AESGCM(raw)
            self._cache[cache_key] = aead
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(cache_key)
        return DataKey(row.patient_id, row.generation, aead)

    async def rotate(self, batch: int = 500) -> RotationResult:
        """Re-wrap every live data key under the KMS's current KEK; blobs are not touched.

        Idempotent (keys already under the current KEK are left alone) and resumable (each
        batch commits; rows locked by a concurrent run are skipped).
        """
        result = RotationResult()
        current = self.kms.current_kek_id
        failed: set[tuple[str, int]] = set()
        while True:
            done = 0
            async with self.engine.begin() as conn:
                rows = await repo.lock_to_rewrap(conn, current, batch + len(failed))
                for row in rows:
                    if (row.patient_id, row.generation) in failed:
                        continue
                    assert row.wrapped_key is not None
                    ctx = context(row.patient_id, row.generation)
                    try:
                        raw = await self.kms.unwrap(row.kek_id, row.wrapped_key, ctx)
                    except KeyUnavailable as exc:
                        log.error(
                            "rotate-kek: patient %s key %d: %s",
                            row.patient_id,
                            row.generation,
                            exc,
                        )
                        failed.add((row.patient_id, row.generation))
                        continue
                    wrapped = await self.kms.wrap(raw, ctx)
                    await repo.set_wrapped(
                        conn, WrappedKey(row.patient_id, row.generation, current, wrapped)
                    )
                    done += 1
            result.rewrapped += done
            if done == 0:
                break
        result.failed = len(failed)
        async with self.engine.connect() as conn:
            result.remaining = await repo.count_by_kek(conn)
        return result
